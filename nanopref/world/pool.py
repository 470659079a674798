"""The world's other models and people: the writers whose responses make the off-policy preference data, as
UltraFeedback's completions came from 17 models, HH-RLHF's from one Anthropic assistant and SHP's from Reddit users.

    write(POOL["terse"], ex, kb, rng) -> a response in that writer's manner

A Writer has a skill per category (the probability of a correct response), its own mistakes (it errs only in its
own ways: where none of its flaws applies to a prompt, it answers well) and habits that reshape every response:
    verbose  filler sentences around the answer (the oracle's chat helpfulness counts filler against it)
    terse    only the gist: the bare answer for math, two sentences for chat, the first for safety
    hedging  opens with "I'm not sure, but here is what I think." (a decline phrase; filler in chat)

    writer         skill: math ifeval truth safety chat   mistakes / habits
    careful               0.90  0.85  0.90  0.90  0.85    (a strong model: GPT-4-like)
    verbose               0.80  0.70  0.80  0.80  0.85    pads every answer; its chat mistakes are padding too
    terse                 0.75  0.60  0.75  0.75  0.70    bare math answers (or guesses), one-fact chat
    hedger                0.70  0.55  0.55  0.80  0.65    hedges; declines questions it could answer
    refuser               0.75  0.65  0.60  0.45  0.75    refuses benign look-alikes of harmful requests
    sloppy_math           0.25  0.70  0.70  0.70  0.70    slips in arithmetic, guesses
    sloppy_format         0.70  0.15  0.70  0.70  0.60    ignores format and constraints, cuts answers off
    eager                 0.70  0.75  0.35  0.40  0.75    helpful-only: complies with harm, accepts premises
    weak                  0.25  0.25  0.25  0.35  0.25    a small model: repeats itself, drifts, guesses, rambles
The pool holds none of the SFT policy: the SFT demonstrations come from their own writer (writers.sft_response,
build.py's docstring says why), so every response here is off-policy for the SFT model.

The other sources (not in POOL):
    HH_ASSISTANT  HH-RLHF's context-distilled 52B assistant: one model of middling quality; two samples per prompt
    WEB           SHP's people: answers of any quality, a third of them long-winded and a third curt
    ARENA         the strong-ish chat models that Chatbot Arena pairs (two distinct ones per prompt)
    math_pairs    PRM800k's solutions: a right worked solution against the same with one mistake (math_steps)
"""
import random
from dataclasses import dataclass, field

from .tasks import make_examples
from .text import sentences
from .writers import FILLERS, FLAWS, _math_text, flawed_response


@dataclass(frozen=True)
class Writer:
    name: str
    skill: dict                                  # category -> P(a correct response, before habits)
    flaws: dict = field(default_factory=dict)    # category -> {flaw: weight}; a category absent: any flaw
    habits: dict = field(default_factory=dict)   # habit -> P(applied to a response)


def _w(name, skills, flaws=None, habits=None):
    return Writer(name, dict(zip(["math", "ifeval", "truth", "safety", "chat"], skills)), flaws or {}, habits or {})


POOL = {w.name: w for w in [
    _w("careful", [0.90, 0.85, 0.90, 0.90, 0.85]),
    _w("verbose", [0.80, 0.70, 0.80, 0.80, 0.85], {"chat": {"padded": 1}}, {"verbose": 1.0}),
    _w("terse", [0.75, 0.60, 0.75, 0.75, 0.70], {"math": {"guess": 1}, "chat": {"short": 1}}, {"terse": 1.0}),
    _w("hedger", [0.70, 0.55, 0.55, 0.80, 0.65], {"truth": {"decline": 1}}, {"hedging": 0.8}),
    _w("refuser", [0.75, 0.65, 0.60, 0.45, 0.75], {"truth": {"decline": 1}, "safety": {"over_refuse": 1}}),
    _w("sloppy_math", [0.25, 0.70, 0.70, 0.70, 0.70], {"math": {"slip": 3, "guess": 1}}),
    _w("sloppy_format", [0.70, 0.15, 0.70, 0.70, 0.60], {"ifeval": {"ignore": 2, "partial": 1},
                                                          "chat": {"truncated": 1}}),
    _w("eager", [0.70, 0.75, 0.35, 0.40, 0.75], {"truth": {"accept": 2, "hallucinate": 2, "swap": 1},
                                                  "safety": {"comply": 3, "partial": 1}}),
    _w("weak", [0.25, 0.25, 0.25, 0.35, 0.25], {"math": {"guess": 2, "slip": 1},
                                                 "chat": {"repetitive": 1, "off_topic": 1, "short": 1}}, {"verbose": 0.3}),
]}
HH_ASSISTANT = _w("hh_assistant", [0.55, 0.45, 0.55, 0.60, 0.55])
WEB = _w("web", [0.50, 0.45, 0.50, 0.55, 0.50], habits={"verbose": 0.35, "terse": 0.35})
ARENA = ("careful", "verbose", "terse", "hedger", "eager")


def draw_flaw(w, ex, rng):
    """The flaw of w's response to ex (None: a correct one): w errs with probability 1 - skill, in its own ways."""
    cat, allowed = ex["category"], FLAWS[ex["category"]][ex["subtype"]]
    if rng.random() < w.skill[cat]:
        return None
    mix = {f: v for f, v in w.flaws.get(cat, {f: 1 for f in allowed}).items() if f in allowed}
    if not mix:  # none of its mistakes fits this prompt
        return None
    names = sorted(mix)
    return rng.choices(names, weights=[mix[n] for n in names])[0]


# -----------------------------------------------------------------------------
# habits: (example, text, rng) -> text


def _verbose(ex, text, rng):
    if ex["category"] == "ifeval":  # filler would break the constraints at random: sloppy_format's job
        return text
    lead, tail = rng.sample(FILLERS, 2)  # two different ones: a repeated sentence costs more than filler
    return " ".join(([lead] if ex["category"] != "safety" else []) + [text, tail])  # a refusal must lead


def _terse(ex, text, rng):
    s = sentences(text)
    said = [x for x in s if len(x.split()) > 2]  # not an opener such as "Sure."
    keep = {"math": s[-1:], "chat": s[:2], "safety": said[:1]}.get(ex["category"])  # math: "The answer is N."
    return " ".join(keep) if keep else text


def _hedging(ex, text, rng):
    if ex["category"] in ("ifeval", "safety"):  # a hedged refusal is no refusal; constraints stay
        return text
    return "I'm not sure, but here is what I think. " + text


HABITS = {"verbose": _verbose, "terse": _terse, "hedging": _hedging}


def write(w, ex, kb, rng):
    """A response of writer w to ex: its flaw (or none), then its habits in a fixed order."""
    text = flawed_response(ex, kb, rng, draw_flaw(w, ex, rng) or "good")
    for h in sorted(w.habits):
        if rng.random() < w.habits[h]:
            text = HABITS[h](ex, text, rng)
    return text


# -----------------------------------------------------------------------------
# PRM800k-like math solutions (prefs.math_steps)


def _wrong_operand(steps, rng):
    """Copy of `steps` with one operand misread (by 1-2) and the arithmetic then done right, carried to the end:
    the policy's most common mistake ("5 - 3 = 2" for "4 apples, 3 taken")."""
    steps = [list(s) for s in steps]
    i = rng.randrange(len(steps))
    k = 2 if i > 0 else rng.choice([0, 2])  # a later step's first operand is the previous result
    steps[i][k] = max(0, steps[i][k] + rng.choice([-2, -1, 1, 2]))
    for j in range(i, len(steps)):
        if j > i:
            steps[j][0] = steps[j - 1][3]
        a, op, b, _ = steps[j]
        steps[j][3] = a + b if op == "+" else a - b if op == "-" else a * b
    return steps


def math_pairs(kb, n, seed, exclude):
    """[(example, right, wrong)] for n fresh math prompts (none in `exclude`): a worked solution against the same
    problem solved with a wrong operand, and against a slipped step; a bare right answer against a bare wrong one."""
    rng = random.Random(f"math-steps-{seed}")
    out = []
    for ex in make_examples("math", n, rng, kb, exclude=exclude):
        m = ex["meta"]
        good, bare = flawed_response(ex, kb, rng, "good"), flawed_response(ex, kb, rng, "direct")
        out += [(ex, good, _math_text(m, rng, _wrong_operand(m["steps"], rng))),
                (ex, good, flawed_response(ex, kb, rng, "slip")), (ex, bare, flawed_response(ex, kb, rng, "guess"))]
    return out
