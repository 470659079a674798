import pytest

from evalkit import FakeLM, need
from nanopref.evals import ifeval
from nanopref.ifeval_checks import CHECKERS, count_sentences, detect_language, split_sentences, word_tokens

P4 = "First paragraph.\n\nSecond one.\n\nThird one.\n\nFourth one."

# (instruction_id, kwargs, response, strict result): hand-written right and wrong responses per type
CASES = [
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "An Apple PIE recipe.", True),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "An apple tart.", False),
    ("keywords:existence", {"keywords": ["c.t"]}, "the cat", True),  # keywords are regexes (official quirk)
    ("keywords:frequency", {"keyword": "yes", "frequency": 3, "relation": "at least"}, "Yes yes YES", True),
    ("keywords:frequency", {"keyword": "yes", "frequency": 3, "relation": "at least"}, "yes, yes", False),
    ("keywords:frequency", {"keyword": "yes", "frequency": 3, "relation": "less than"}, "yes, yes", True),
    ("keywords:frequency", {"keyword": "yes", "frequency": 2, "relation": "less than"}, "yes eyes", False),
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "evil"]}, "A badge is good.", True),  # \\b..\\b
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "evil"]}, "Not BAD at all.", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zig zag", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "zero", False),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 2, "let_relation": "less than"}, "zero", True),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"}, "#a #b", True),
    ("language:response_language", {"language": "de"}, "Ich glaube, dass das Wetter heute nicht gut ist und wir "
     "zu Hause bleiben.", True),
    ("language:response_language", {"language": "de"}, "I think the weather is not good today, we stay home.", False),
    ("language:response_language", {"language": "hi"}, "मुझे लगता है कि आज मौसम अच्छा है और हम बाहर जाएंगे।", True),
    ("language:response_language", {"language": "ko"}, "오늘 날씨가 좋습니다.", True),
    ("language:response_language", {"language": "ko"}, "今日はいい天気です。", False),
    ("language:response_language", {"language": "fi"}, "12345 !!!", True),  # undetectable counts as followed
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two!", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two! Three?", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "Dr. Smith left.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "It is 3.5 m. Wow.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb\n***\nc", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "***\na\n***\nb\n***\nc\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\n\n***\nc", False),  # empty middle
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two-three four", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one, two, three!", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 4, "nth_paragraph": 2, "first_word": "second"},
     P4, True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
     "Intro.\n\n\"So, yes,\" he said.", True),  # quotes and punctuation around the word are ignored
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 4, "nth_paragraph": 2, "first_word": "third"},
     P4, False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "second"},
     P4, False),  # wrong paragraph count
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], hello.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nP.S. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\n\nPS see you", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\np. p. s. more", True),
    ("detectable_content:postscript", {"postscript_marker": "Note:"}, "Body.\nnote: hi", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro\n* one\n- two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**bold** line\n* one", True),  # ** is not a bullet
    ("detectable_format:constrained_response", {}, "After thinking: My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "My answer is yes", False),  # the period is required
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and * * and **", False),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nabc\nSection 2\ndef", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3},
     "SECTION 1\nabc\nSECTION 2\ndef", False),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '{"a": 1} trailing words', False),
    ("detectable_format:title", {}, "<<My Poem>>\nRoses are red", True),
    ("detectable_format:title", {}, "<< >>\nNo title\n<<broken\ntitle>>", False),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A\n******\n\n******\nB", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Here it is: ...", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. any other questions?\"", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "The USA and NASA DON'T agree.", True),  # DO + N'T count separately, like nltk
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "The USA and NASA agree.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "A well-known FAQ page.", False),  # "A" and "FAQ"
    ("change_case:english_capital", {}, "THIS IS ALL IN CAPITAL LETTERS, AND IT IS ENGLISH.", True),
    ("change_case:english_capital", {}, "THIS IS Mostly CAPITAL.", False),
    ("change_case:english_capital", {}, "DAS IST NICHT ENGLISCH UND ICH BIN SICHER, DASS ES DEUTSCH IST.", False),
    ("change_case:english_lowercase", {}, "this is all lowercase and it is english.", True),
    ("change_case:english_lowercase", {}, "this is not All lowercase.", False),
    ("punctuation:no_comma", {}, "No commas here. None at all!", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("startend:quotation", {}, '  "Wrapped in quotes."  ', True),
    ("startend:quotation", {}, '"Not closed.', False),
    ("startend:quotation", {}, '"', False),
]


def test_all_25_types_have_cases():
    assert len(CHECKERS) == 25
    assert {c[0] for c in CASES} == set(CHECKERS)
    for iid in CHECKERS:  # every type has a passing and a failing case
        assert {c[3] for c in CASES if c[0] == iid} == {True, False}, iid


@pytest.mark.parametrize("iid, kwargs, response, ok", CASES)
def test_checker_strict(iid, kwargs, response, ok):
    assert ifeval.check(response, [iid], [kwargs])["strict"] == [ok]


def test_empty_response_fails_even_if_vacuous():
    res = ifeval.check("   \n", ["punctuation:no_comma"], [{}])
    assert res == {"strict": [False], "loose": [False], "strict_all": False, "loose_all": False}


def test_loose_variants():
    r = "Sure, here you go:\nline two\nlast line"
    v = ifeval.loose_variants(r)
    assert v[:4] == [r, "line two\nlast line", "Sure, here you go:\nline two", "line two"]
    assert len(v) == 8 and v[4] == r
    # a chatty first line breaks the comma rule strictly, not loosely
    res = ifeval.check("Sure, here it is:\nNo commas in this part.", ["punctuation:no_comma"], [{}])
    assert res["strict"] == [False] and res["loose"] == [True]
    # markdown bold around the closing phrase: only the '*'-stripped variant ends with it
    res = ifeval.check("Answer.\n**Is there anything else I can help with?**", ["startend:end_checker"],
                       [{"end_phrase": "Is there anything else I can help with?"}])
    assert res["strict"] == [False] and res["loose"] == [True]
    # a trailing sign-off breaks the quotation rule strictly, not loosely (last line removed)
    res = ifeval.check('"Quoted answer."\n-- signed', ["startend:quotation"], [{}])
    assert res["strict"] == [False] and res["loose"] == [True]
    # loose never hurts; prompt-level needs all instructions
    res = ifeval.check("hello, world", ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    assert res["strict"] == [False, True] and not res["strict_all"] and not res["loose_all"]


def test_text_utilities():
    assert count_sentences("Hello there. How are you? I am fine!") == 3
    assert count_sentences("Mr. Smith met Dr. Jones at 3.30 p.m. today.") == 1
    assert count_sentences("A list\n- item one\n- item two") == 1  # no terminal punctuation, no split
    assert count_sentences("") == 0
    assert word_tokens("DON'T stop, U.S. well-known") == ["DO", "N'T", "stop", ",", "U.S.", "well-known"]


@pytest.mark.parametrize("text, sentences", [  # worked out by punkt's rules (see ifeval_checks' docstring)
    ("Hello", ["Hello"]),
    ("1. Apples\n2. Pears", ["1.", "Apples\n2.", "Pears"]),  # a number before a capital: a boundary
    ("1. Apples.\n2. Pears.", ["1.", "Apples.", "2.", "Pears."]),
    ("1. apples 2. pears", ["1. apples 2. pears"]),  # ... not before a lowercase word
    ("1. apples; 2. pears", ["1. apples; 2. pears"]),
    ("option a. then b.", ["option a. then b."]),  # a single letter likewise
    ("In 2023. The year.", ["In 2023.", "The year."]),
    ("Use e.g. apples. Then go.", ["Use e.g. apples.", "Then go."]),  # known abbreviation
    ("It costs 3.50 dollars. Cheap.", ["It costs 3.50 dollars.", "Cheap."]),  # a decimal is no boundary
    ("J. Smith wrote it.", ["J. Smith wrote it."]),
    ("I like it. and then", ["I like it.", "and then"]),  # an ordinary word ends a sentence before lowercase too
    ("Wait... what? No... Fine.", ["Wait... what?", "No...", "Fine."]),  # ellipsis: before a capital (deviation c)
    ("What? no way", ["What?", "no way"]),  # ? always ends one
    ('He said "Go." Then left.', ['He said "Go."', "Then left."]),
    ("- a\n- b", ["- a\n- b"]),  # newlines never end one
])
def test_split_sentences_degenerate_answers(text, sentences):
    assert split_sentences(text) == sentences


def test_language_detection_like_langdetect_on_degenerate_answers():
    assert detect_language("https://de.wikipedia.org/wiki/Berlin") is None  # URLs removed: nothing left
    assert detect_language("ich@example.de https://x.org/the/and/of") is None  # e-mail addresses too
    german = "Ich glaube, dass das Wetter heute nicht gut ist und wir zu Hause bleiben."
    assert detect_language(german) == "de" and detect_language("1 " * 5000 + german) is None  # first 10,000 only
    assert detect_language("Hello") == "en" and detect_language("OK") == "en"  # no cue: en (langdetect: fi, pt)
    assert ifeval.check("12345 !!!", ["change_case:english_lowercase"], [{}])["strict"] == [False]  # islower first


@pytest.mark.parametrize("lang, text", [
    ("en", "The quick brown fox jumps over the lazy dog and runs into the forest."),
    ("de", "Der schnelle braune Fuchs springt über den faulen Hund und es ist nicht schlimm."),
    ("pt", "O rápido cachorro marrom pulou sobre a cerca e não voltou para casa."),
    ("it", "Il cane è molto felice e non vuole tornare a casa per la cena."),
    ("fi", "Hän on kotona ja se on hyvä, mutta minä en ole vielä valmis."),
    ("sw", "Watu wengi wanapenda kula chakula cha jioni pamoja na familia yao kwa furaha."),
    ("vi", "Tôi rất thích ăn phở và uống cà phê vào buổi sáng với những người bạn."),
    ("ru", "Я думаю, что это очень хорошая идея, и мы это сделаем."),
    ("uk", "Я думаю, що це дуже гарна ідея, і ми її зробимо."),
    ("bg", "Мисля, че това е много добра идея и ще я направим заедно."),
    ("ar", "أعتقد أن هذه فكرة جيدة جدا وسوف نفعلها معا."),
    ("fa", "من فکر می کنم این یک ایده خیلی خوب است و ما آن را انجام می دهیم."),
    ("ur", "میں سوچتا ہوں کہ یہ ایک بہت اچھا خیال ہے اور ہم اسے کریں گے۔"),
    ("hi", "मुझे लगता है कि यह एक बहुत अच्छा विचार है और हम इसे करेंगे।"),
    ("mr", "मला वाटते की ही एक खूप चांगली कल्पना आहे आणि आपण ती करू."),
    ("ne", "मलाई लाग्छ कि यो धेरै राम्रो विचार हो र हामी यो गर्न सक्छौं।"),
    ("bn", "আমি মনে করি এটি একটি খুব ভাল ধারণা।"), ("pa", "ਮੈਨੂੰ ਲੱਗਦਾ ਹੈ ਕਿ ਇਹ ਵਧੀਆ ਹੈ।"),
    ("gu", "મને લાગે છે કે આ સારો વિચાર છે."), ("ta", "இது ஒரு நல்ல யோசனை என்று நினைக்கிறேன்."),
    ("te", "ఇది మంచి ఆలోచన అని నేను అనుకుంటున్నాను."), ("kn", "ಇದು ಒಳ್ಳೆಯ ಆಲೋಚನೆ ಎಂದು ನಾನು ಭಾವಿಸುತ್ತೇನೆ."),
    ("ko", "이것은 아주 좋은 생각이라고 생각합니다."), ("th", "ฉันคิดว่านี่เป็นความคิดที่ดีมาก"),
    ("ja", "これはとても良い考えだと思います。"),
])
def test_detect_language(lang, text):
    assert detect_language(text) == lang


def test_load_and_run_and_score_responses():
    need("ifeval", "input_data.jsonl")
    data = ifeval.load()
    assert len(data) == 541 and {i for ex in data for i in ex["instruction_id_list"]} == set(CHECKERS)
    assert data[0]["key"] == 1000

    fake = FakeLM(respond=lambda p: "no commas here at all")
    res = ifeval.run(fake, limit=20)
    keys = [r["key"] for r in res["records"]]
    picked = [ex for ex in data if ex["key"] in keys]
    assert len(picked) == 20 and keys == [ex["key"] for ex in picked] and keys != [ex["key"] for ex in data[:20]]
    assert fake.calls[0]["max_new_tokens"] == 2048
    assert fake.calls[0]["prompts"] == [fake.chat(ex["prompt"]) for ex in picked]
    m = res["metrics"]
    assert 0 <= m["strict_prompt_acc"] <= m["loose_prompt_acc"] <= 1
    assert m["strict_instruction_acc/punctuation:no_comma"] == 1.0
    rows = [{"key": data[0]["key"], "output": "x"}, {"prompt": data[1]["prompt"], "output": "y"}]
    assert [r["key"] for r in ifeval.score_responses(rows)["records"]] == [data[0]["key"], data[1]["key"]]
