"""The world's knowledge base: everyday objects with facts (chat, ifeval), invented entities (truth),
invented dangerous items (safety), and the small closed word lists the prompts are built from.

make_kb(rng) -> dict, JSON-serialisable, saved as kb.json next to the world's JSONL files:
    objects   [{"name": "owl", "ref": "the owl", "kind": "a bird", "facts": ["hunts at night", ...]}]  fixed
    countries [{"name": "Quenland", "capital": "Drask"}]                 invented, from rng
    people    [{"name": "Belno", "job": "baker", "home": "Drask"}]       home is one of the capitals
    creatures [{"name": "blorp", "colour": "blue", "food": "berries"}]
    unknown   {"countries": [...], "people": [...], "creatures": [...]}  names that are in no table
    harmful   [{"name": "grakel", "kind": "poison", "twin": "tea", "ingredients": ["zorvin", "plekite"]}]
    jobs, colours, foods                                                 the value lexicons
Everything random comes from `rng` (a random.Random): same seed, same KB.
"""
import random

# Everyday objects: name | kind | four facts. A fact is a verb phrase that follows "It": "It hunts at night."
# Scorers find facts by phrase, so no fact phrase may occur inside another (tested).
_OBJECTS = """
owl | a bird | hunts at night; has large round eyes; can turn its head far; flies without a sound
cat | a pet | likes to chase mice; purrs when it is happy; has soft fur; always lands on its feet
dog | a pet | wags its tail; loves to play fetch; guards the house; has a keen nose
horse | a farm animal | runs very fast; eats hay and oats; sleeps standing up; can carry a rider
cow | a farm animal | gives us milk; eats grass all day; says moo; has four stomachs
bee | an insect | makes honey; lives in a hive; visits many flowers; can sting
hen | a bird | lays eggs; pecks at seeds; lives in a coop; clucks in the morning
frog | an animal | jumps very far; catches flies with its tongue; lives near ponds; starts life as a tadpole
fox | a wild animal | has a bushy tail; lives in a den; is clever and quick; hunts small animals
whale | a sea animal | is very large; breathes air at the top; sings long songs; swims in the deep ocean
river | a body of water | flows down to the sea; has fresh water; is home to many fish; can flood after rain
moon | an object in the sky | shines at night; goes around the earth; has many craters; changes shape each week
sun | a star | gives us light; keeps the earth warm; rises in the east; sets in the west
tree | a plant | grows tall; has green leaves; gives us shade; makes fresh air
apple | a fruit | grows on a tree; can be red or green; is sweet and crisp; is good in a pie
bread | a food | is made from flour; is baked in an oven; is soft inside; goes well with butter
cheese | a food | is made from milk; can be hard or soft; tastes salty; is good on bread
hammer | a tool | drives nails into wood; has a heavy head; has a long handle; helps build houses
bicycle | a vehicle | has two wheels; moves when you pedal; has a bell; is good for short trips
boat | a vehicle | floats on water; has a sail or a motor; carries people across lakes; needs a calm sea
train | a vehicle | runs on rails; pulls many cars; stops at stations; can carry heavy loads
book | an object | has many pages; tells a story; can teach new things; is kept on a shelf
clock | an object | tells the time; has two hands; ticks softly; hangs on the wall
lamp | an object | lights up a dark room; uses a small bulb; sits on a desk; turns on with a switch
garden | a place | has many flowers; needs water every day; is a quiet place to rest; grows fresh vegetables
mountain | a place | has snow on top; is hard to climb; has steep rocks; is very high
rain | a kind of weather | falls from clouds; helps plants grow; makes the ground wet; often comes in spring
snow | a kind of weather | is cold and white; falls in winter; melts in the sun; is fun to play in
piano | an instrument | has black and white keys; makes soft or loud sounds; is played with both hands; is heavy to move
drum | an instrument | is hit with sticks; makes a loud beat; is round; keeps the rhythm in a band
"""
_MASS_NOUNS = ["bread", "cheese", "rain", "snow"]  # "Tell me about bread.", not "the bread"
OBJECTS = [(n, n if n in _MASS_NOUNS else "the " + n, k, f.split("; ")) for n, k, f in
           (tuple(x.strip() for x in line.split("|")) for line in _OBJECTS.strip().splitlines())]

JOBS = ["baker", "farmer", "teacher", "doctor", "painter", "singer", "fisher", "builder", "tailor", "miner", "potter",
        "sailor"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "brown", "grey", "orange", "purple"]
FOODS = ["berries", "seeds", "fish", "grass", "leaves", "nuts", "worms", "honey", "mice", "moss"]
HARM_KINDS = ["poison", "bomb", "powder", "trap"]   # invented dangerous items: "grakel poison"
TWINS = ["tea", "cake", "soup", "flower"]           # benign look-alikes sharing the name: "grakel tea"

# Math word problems use plain short names and countable things.
MATH_NAMES = ["Ana", "Ben", "Cara", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jon", "Kim", "Leo", "Mia",
              "Ned", "Ola", "Pia", "Sam", "Tia", "Uma", "Zed"]
MATH_ITEMS = ["apples", "pens", "eggs", "books", "coins", "cards", "shells", "stamps", "cups", "stones",
              "kites", "beads", "pears", "marbles"]

# Every word the world's prompts and responses use (kept complete by tests/test_world_properties.py), so that
# an invented name never collides with one and the tokenizer's corpus stays a closed vocabulary.
TEMPLATE_WORDS = """
son uncle aunt coach father mother tonight hide share list hear would quick question please read talk stay hurts show
a about across add adding after against ago air all always an ana and angry angular animal animals answer any
anyone apple apples are around as ask asking at attack away badly bag bags bake baked baker balloon band be
beads beat became because become bee before bell ben berries best bicycle bird black blow blue board boat body
boil bomb book books boss both bowl box boxes brackets bread break breaks breath breathes bright bring brother
brown build builder bulb bullet bus bushy but butter buy buys by cake call called calm can cannot capital cara
cards carries carry cars cat catches cause changes chase cheese chess children city classmate clear clever climb
clock clouds clucks coals coins cold colour comes commas contain control cook coop could country cousin cow
crack craters crisp crush cups cut dan danger dangerous dark day deep den describe desk destroy did do doctor
does dog double down dried drives drum dry each early earth east easy eat eats eggs end eva evening every
everyone exact exactly explain eyes facts falls famous far farm farmer fast feet fetch few fewer find finish
finn fire first fish fisher flat flies floats flood flour flower flowers flows food for fork format found four
fox fresh friend frog from fruit fun fur game garden garlic gentle gets give gives glow goes good grass green
grey grill ground grow grows guards gus had hammer hana handle hands hang hangs happy hard harm harmful has have
hay head heard heavy help helps hen here hide high hill hit hive home honey hope horse hot hour house houses how
hunts hurt hurting i if in include information insect inside instrument into is it its ivo job jon json jumps
keen keep keeps kept keys kill kim kind kites knife knot know knowing lakes lamp lands large law lays learn
least leaves left leo let letters life light lights like likes little live lived lives living loads long looking
lost lot loud loves lowercase lucky m made make makes many marbles markdown math may me melts mia mice middle
milk miner minutes mix moment moo moon more morning moss motor mountain move moves mower much multiply must my
nail nails name near ned need needs neighbour never new night no nose not note now nuts oats object ocean of
often ola old on once one onions only open opinion or orange out oven over owl p pack packs pages painter pears
pecks pedal pens people pet photos phrase pia piano picture pie pieces place plant plants play played playing
please points poison ponds postscript pot potter pour powder press problem proud pull pulls purple purrs put
puts question quick quiet quotes rails rain read reading real record red rest rhythm ride rider right rises
risky river rocks room root roots round running runs s safe sail sailor salt salty sam say says school sea seeds
sentences sets shade shape shelf shells shines shoot short should side simple singer sings sister sits sky
sleeps small smash smooth snow so soft softly solve some someone songs sorry sound sounds soup spring stamps
standing star starting starts stations steep step steps sticks sting stomachs stones stops stories story streets
string subtract such sugar summer sun sure sweet swims switch t table tadpole tail tailor take takes taking
talking tall tastes tea teach teacher tell tells than thank that the them then there they things think this tia
ticks tie time title to together tongue tool top topic touch train trap tree trips true trust try turn turns two
uma under until up us use useful uses vegetables vehicle very visits wags wait wall want warm water way we
weather weeds week well west wet whale what wheels when where which white whole why wild will winter with
without wood word words work worked works worms wrap write wrong x yellow you your zed
""".split()

# Syllables for invented names. Vowel-final onsets keep names pronounceable and tokenizer-friendly.
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr",
           "tr", "st", "qu", "th", "sh"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "", "", "", "n", "r", "l", "s", "k", "m"]
_COUNTRY_ENDS = ["land", "ia", "or", "mar", "ven", "eth"]


def _syllable(rng):
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _english_words():
    """Every word the world's templates use, so that an invented name never collides with one."""
    words = set(TEMPLATE_WORDS + JOBS + COLOURS + FOODS + HARM_KINDS + TWINS + MATH_ITEMS)
    words.update(w.lower() for w in MATH_NAMES)
    for name, ref, kind, facts in OBJECTS:
        words.update((name + " " + kind + " " + " ".join(facts)).split())
    return words


def _name_maker(rng):
    """Returns new_name(n_syllables, end="") producing unique names (case-insensitive)."""
    used = _english_words()

    def new_name(n_syllables, end=""):
        while True:
            name = "".join(_syllable(rng) for _ in range(n_syllables)) + end
            if 4 <= len(name) <= 9 and name not in used:
                used.add(name)
                return name
    return new_name


def make_kb(rng, n_countries=30, n_people=30, n_creatures=20, n_unknown=25, n_harmful=10):
    """Build the world's knowledge base from `rng` (see the module docstring for the schema)."""
    new_name = _name_maker(rng)
    cap = str.capitalize
    countries = [{"name": cap(new_name(rng.choice([1, 2]), rng.choice(_COUNTRY_ENDS))), "capital": cap(new_name(2))}
                 for _ in range(n_countries)]
    capitals = [c["capital"] for c in countries]
    people = [{"name": cap(new_name(2)), "job": rng.choice(JOBS), "home": rng.choice(capitals)}
              for _ in range(n_people)]
    creatures = [{"name": new_name(2), "colour": rng.choice(COLOURS), "food": rng.choice(FOODS)}
                 for _ in range(n_creatures)]
    unknown = {"countries": [cap(new_name(rng.choice([1, 2]), rng.choice(_COUNTRY_ENDS))) for _ in range(n_unknown)],
               "people": [cap(new_name(2)) for _ in range(n_unknown)],
               "creatures": [new_name(2) for _ in range(n_unknown)]}
    harmful = [{"name": new_name(2), "kind": HARM_KINDS[i % len(HARM_KINDS)], "twin": TWINS[i % len(TWINS)],
                "ingredients": [new_name(2), new_name(2) + "ite"]} for i in range(n_harmful)]
    objects = [{"name": n, "ref": r, "kind": k, "facts": list(f)} for n, r, k, f in OBJECTS]
    return {"objects": objects, "countries": countries, "people": people, "creatures": creatures,
            "unknown": unknown, "harmful": harmful, "jobs": list(JOBS), "colours": list(COLOURS),
            "foods": list(FOODS)}


def find(kb, table, name):
    """The row of kb[table] whose "name" is `name` (tables are small; a linear scan is fine)."""
    for row in kb[table]:
        if row["name"] == name:
            return row
    raise KeyError(f"{name!r} is not in kb[{table!r}]")


def with_article(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


if __name__ == "__main__":
    import json
    print(json.dumps(make_kb(random.Random(0)), indent=1)[:2000])
