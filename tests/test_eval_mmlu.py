import pytest

from evalkit import FakeLM, need
from nanopref.evals import mmlu


@pytest.fixture(scope="module", autouse=True)
def data():
    need("mmlu", "test", "abstract_algebra_test.csv")


def test_load_counts():
    subjects = mmlu.subjects()
    assert len(subjects) == 57
    assert sum(len(mmlu.load(s)) for s in subjects) == 14042  # MANIFEST
    assert all(len(mmlu.load(s, "dev")) == 5 for s in subjects)  # 285 dev rows
    first = mmlu.load("abstract_algebra")[0]
    assert first["question"].startswith("Find the degree for the given field extension")
    assert first["choices"] == ["0", "4", "2", "6"] and first["answer"] == "B"  # 0-based index 1 -> B


def test_prompt_format_0_and_5_shot():
    ex = mmlu.load("abstract_algebra")[0]
    user, prefix = mmlu.build_prompt("abstract_algebra", ex, [], 0)
    assert user == ("The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
                    "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
                    "\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert prefix == "The answer is:"
    dev = mmlu.load("abstract_algebra", "dev")
    user5, _ = mmlu.build_prompt("abstract_algebra", ex, dev, 5)
    assert user5.count("\nAnswer: ") == 5 and user5.endswith("D. 6\nAnswer:")
    assert user5.split("\n\n")[1].startswith(dev[0]["question"])
    assert f"\nAnswer: {dev[4]['answer']}\n\nFind the degree" in user5


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), (" B", "B"), ("B.", "B"), ("(B)", "B"), ("B) 4", "B"), ("  C: because", "C"),
    ("The answer is (D).", "D"), ("the answer is: A", "A"), ("I think (C) is right", "C"),
    ("Bob", None), ("E", None), ("", None), ("answer is Banana", None),
])
def test_extract_letter(text, letter):
    assert mmlu.extract_letter(text) == letter


def test_run_uses_letter_continuations_and_micro_average():
    subjects = ["abstract_algebra", "anatomy"]
    answers = {}
    for s in subjects:
        for ex in mmlu.load(s):
            answers[FakeLM().chat(*mmlu.build_prompt(s, ex, [], 0))] = ex["answer"]

    def loglik(context, continuation):  # right on abstract_algebra, always "A" on anatomy
        if "abstract algebra" in context:
            return 0.0 if continuation == " " + answers[context] else -1.0
        return 0.0 if continuation == " A" else -1.0

    fake = FakeLM(loglik=loglik)
    res = mmlu.run(fake, subject_list=subjects)
    reqs = fake.calls[0]["requests"]
    assert [c for _, c in reqs[:4]] == [" A", " B", " C", " D"]
    assert reqs[0][0].endswith("\nAnswer:\n<|assistant|>\nThe answer is:")
    m = res["metrics"]
    anatomy = [ex["answer"] == "A" for ex in mmlu.load("anatomy")]
    assert m["subject_acc/abstract_algebra"] == 1.0
    assert m["subject_acc/anatomy"] == pytest.approx(sum(anatomy) / len(anatomy))
    assert m["average_acc"] == pytest.approx((100 + sum(anatomy)) / (100 + 135))  # micro, not macro
    assert res["records"][0]["id"] == "abstract_algebra/0"


def test_ties_go_to_first_letter_and_limit():
    res = mmlu.run(FakeLM(loglik=lambda c, x: -1.0), limit=7)
    assert len(res["records"]) == 7 and all(r["prediction"] == "A" for r in res["records"])


def test_score_responses():
    wrong = "A" if mmlu.load("abstract_algebra")[1]["answer"] != "A" else "B"
    rows = [{"id": "abstract_algebra/0", "output": " B"}, {"id": "abstract_algebra/1", "output": f"({wrong})"}]
    res = mmlu.score_responses(rows)
    assert [r["correct"] for r in res["records"]] == [True, False]
    assert res["metrics"]["average_acc"] == 0.5
