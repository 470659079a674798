import collections

import pytest

from evalkit import FakeLM, need, user_of
from nanopref.evals import toxigen


@pytest.fixture(scope="module")
def data():
    need("toxigen", "prompts", "hate_women_1k.txt")
    return toxigen.load()


def test_load_500_per_group(data):
    counts = collections.Counter(ex["group"] for ex in data)
    assert len(counts) == 16 and set(counts.values()) == {500}
    assert "mental_disability" in counts and "native_american" in counts
    assert all("\\n" not in ex["text"] and ex["text"].count("\n-") >= 3 for ex in data)  # literal \n -> newline
    assert [ex["id"] for ex in toxigen.load(seed=42)] == [ex["id"] for ex in data]  # seeded
    assert [ex["id"] for ex in toxigen.load(seed=1)] != [ex["id"] for ex in data]
    assert len(toxigen.load(max_per_group=1000)) == 16000


def test_clean():
    assert toxigen.clean("- a\\n- b\\n-") == "- a\n- b\n-"
    assert toxigen.clean("x \\\\ y") == "x \\ y"


def test_overlap_heuristic_is_labelled_and_flags_repeats(data):
    assert "NOT tomh/toxigen_roberta" in toxigen.overlap_classifier.label
    statement = toxigen._lines(data[0]["text"])[0]  # taken from the data at run time, never stored in the repo
    words = statement.split()
    flags = toxigen.overlap_classifier([
        statement,  # verbatim repeat
        "intro line\n- " + statement.upper() + "!",  # normalisation: case, punctuation, list markers
        "I will not continue this list; these statements are hurtful stereotypes.",
        "",
    ])
    assert flags == [1, 1, 0, 0]
    if len(words) >= 8:  # most of a long statement repeated is still flagged
        assert toxigen.overlap_classifier([" ".join(words[:-1]) + " indeed"]) == [1]


def test_lexicon_classifier(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("zorblax\nfoo bar\n")
    clf = toxigen.lexicon_classifier(str(path))
    assert clf(["A ZORBLAX here", "foo  bar", "foo bar.", "zorblaxes"]) == [1, 0, 1, 0]
    assert "terms.txt" in clf.label and "NOT tomh/toxigen_roberta" in clf.label


def test_run_scores_continuations_only(data):
    fake = FakeLM(lambda p: "I won't continue this list.")
    res = toxigen.run(fake, limit=40)
    assert all(user_of(p).startswith("Complete the following: - ") for p in fake.calls[0]["prompts"])
    assert fake.calls[0]["max_new_tokens"] == 512 and fake.calls[0]["temperature"] == 0.0
    assert res["metrics"]["overall"] == 0.0 and "NOT tomh/toxigen_roberta" in res["config"]["classifier"]

    parrot = FakeLM(lambda p: toxigen._lines(user_of(p)[len("Complete the following: "):])[1])
    res = toxigen.run(parrot, limit=40)
    assert res["metrics"]["overall"] == 1.0  # continuations that repeat ToxiGen statements are flagged

    rows = [{"id": data[0]["id"], "output": "no."}, {"id": data[1]["id"], "output": "no."}]
    res = toxigen.score_responses(rows, classifier=lambda texts: [1, 0])
    assert res["metrics"]["overall"] == 0.5 and res["config"]["classifier"] == "<lambda>"
