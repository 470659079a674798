import random
from decimal import Decimal

import pytest

from evalkit import FakeLM, need, user_of
from nanopref.evals import gsm8k


@pytest.fixture(scope="module")
def test_set():
    need("gsm8k", "test.jsonl")
    return gsm8k.load()


def test_load_counts_and_references(test_set):
    assert len(test_set) == 1319  # MANIFEST
    assert len(gsm8k.load("train")) == 7473
    assert test_set[0]["reference"] == "18"  # Janet's ducks
    for ex in test_set:  # every reference is a plain number once thousands separators are gone
        Decimal(ex["reference"])
    assert sum("," in ex["answer"].split("####")[1] for ex in test_set) == 14
    assert not any("," in ex["reference"] for ex in test_set)


@pytest.mark.parametrize("text, expected", [
    ("She makes 9 * 2 = $18 every day. The answer is 18.", "18"),
    ("So the answer is $1,234.50.", "1234.50"),
    ("1,000,000 people came", "1000000"),
    ("The temperature fell to -7 degrees.", "-7"),
    ("Total: 5.0", "5.0"),
    ("first 3 then 4 and finally 12", "12"),
    ("I don't know.", None),
    ("", None),
    ("it costs .5 dollars", ".5"),
    ("In 2,3 and 4", "4"),
])
def test_extract_answer(text, expected):
    assert gsm8k.extract_answer(text) == expected


@pytest.mark.parametrize("output, reference, ok", [
    ("The answer is 18.", "#### 18", True),
    ("The answer is $18", "18", True),
    ("So she earns $1,234 per week.", "Janet ... #### 1,234", True),
    ("The answer is 5.0", "5", True),
    ("The answer is 5.00.", "5", True),
    ("The answer is 5.5", "5", False),
    ("The answer is -3", "3", False),
    ("The answer is -3.", "-3", True),
    ("18 eggs, minus 3, is 15", "18", False),  # the last number counts
    ("no number here", "18", False),
])
def test_is_correct(output, reference, ok):
    assert gsm8k.is_correct(output, reference) is ok


def test_prompt_is_8_shot_cot():
    user, prefix = gsm8k.build_prompt("How many?  ")
    assert user.startswith("Answer the following questions.\n\nQuestion: There are 15 trees")
    assert user.count("\nAnswer: ") == 8 and user.endswith("\n\nQuestion: How many?")
    assert "So the answer is 8.\n\nQuestion: How many?" in user
    assert prefix == "Answer:"
    assert gsm8k.build_prompt("Q", n_shot=0)[0] == "Answer the following question.\n\nQuestion: Q"


def test_subset_is_the_seeded_200(test_set):
    picked = gsm8k.load()  # same order as open-instruct reads the file
    random.seed(42)  # open-instruct: random.seed(42); random.sample(test_data, 200)
    expected = random.sample(picked, 200)
    fake = FakeLM(respond=lambda p: "")
    res = gsm8k.run(fake, subset=200, seed=42)
    assert [r["id"] for r in res["records"]] == [e["id"] for e in expected]
    assert res["metrics"]["n"] == 200


def test_run_scores_a_fake_model(test_set):
    by_question = {ex["question"].strip(): ex for ex in test_set}

    def respond(prompt):  # right on even ids, wrong on odd ids, with a formatted number
        ex = by_question[user_of(prompt).rsplit("\n\nQuestion: ", 1)[1]]
        n = int(ex["reference"])
        return f" Let's see. So the answer is ${n:,}." if ex["id"] % 2 == 0 else f" So the answer is {n + 1}."

    fake = FakeLM(respond)
    res = gsm8k.run(fake, subset=None, limit=40)
    call = fake.calls[0]
    assert call["temperature"] == 0.0 and call["max_new_tokens"] == 512 and call["stop"] is None
    assert all(p.endswith("\n<|assistant|>\nAnswer:") for p in call["prompts"])
    ids = [r["id"] for r in res["records"]]
    assert len(set(ids)) == 40 and ids == sorted(ids) and ids[-1] > 200  # a seeded sample over the file, in order
    assert res["metrics"]["exact_match"] == pytest.approx(sum(i % 2 == 0 for i in ids) / 40)
    assert all(r["correct"] == [r["id"] % 2 == 0] for r in res["records"])


def test_score_responses(test_set):
    rows = [{"id": 0, "output": "so 18."}, {"id": 1, "outputs": ["3 bolts", "2 bolts"]}]  # reference 3
    res = gsm8k.score_responses(rows)
    assert [r["correct"] for r in res["records"]] == [[True], [True, False]]
    assert res["metrics"]["exact_match"] == pytest.approx(0.75)
