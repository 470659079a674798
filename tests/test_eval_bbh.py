import pytest

from evalkit import FakeLM, need, user_of
from nanopref.evals import bbh


@pytest.fixture(scope="module")
def tasks():
    need("bbh", "bbh", "date_understanding.json")
    return bbh.load_tasks()


def test_load_counts(tasks):
    assert len(tasks) == 27
    assert sum(len(v) for v in tasks.values()) == 6511  # MANIFEST
    assert len(tasks["penguins_in_a_table"]) == 146 and len(tasks["snarks"]) == 178
    prompts = bbh.load_prompts()
    assert set(prompts) == set(tasks)
    for name, p in prompts.items():
        assert "canary" not in p and not p.startswith("-----"), name
        assert p.count("\nA: Let's think step by step.") == 3, name


def test_prompt_format(tasks):
    prompts = bbh.load_prompts()
    user, prefix = bbh.build_prompt(prompts["date_understanding"], tasks["date_understanding"][0]["input"])
    assert user.startswith("Infer the date from context.\n\nQ: Today is Christmas Eve of 1937.")
    assert user.endswith("So the answer is (B).\n\nQ: " + tasks["date_understanding"][0]["input"])
    assert prefix == "A:"


@pytest.mark.parametrize("output, target, ok", [
    (" Let's think step by step. ... So the answer is (B).", "(B)", True),
    (" So the answer is (b).", "(B)", True),  # case is ignored
    (" So the answer is B.", "(B)", True),  # punctuation is ignored (HF exact_match)
    (" So the answer is (C). So the answer is (B).", "(B)", False),  # the first one counts
    (" So the answer is True.", "True", True),
    (" So the answer is -5.", "5", True),  # open-instruct quirk: '-' is punctuation
    (" So the answer is 12.5.", "12", True),  # quirk kept: the answer ends at the first '.'
    ("valid\n\nSo the answer is invalid.", "valid", False),
    ("valid\n\nblah", "valid", True),  # no phrase: the first paragraph
    ("", "valid", False),
])
def test_is_correct(output, target, ok):
    assert bbh.is_correct(output, target) is ok


def test_select_40_per_task(tasks):
    items = bbh.select(tasks, 40, seed=42)
    assert len(items) == 27 * 40
    assert items == bbh.select(tasks, 40, seed=42)  # deterministic
    assert len({(t, i) for t, i, _ in items}) == len(items)
    assert len(bbh.select(tasks, None)) == 6511


def test_run_and_score_responses(tasks):
    prompts = bbh.load_prompts()

    def respond(prompt):  # right, then keeps talking past a blank line (cut by the stop string)
        q = user_of(prompt).rsplit("\n\nQ: ", 1)[1]
        target = next(ex["target"] for exs in tasks.values() for ex in exs if ex["input"] == q)
        return f" Let's think step by step.\nSo the answer is {target}.\n\nQ: next question"

    fake = FakeLM(respond)
    res = bbh.run(fake, limit=60)
    call = fake.calls[0]
    assert call["stop"] == ["\n\n"] and call["max_new_tokens"] == 512 and call["temperature"] == 0.0
    assert all(p.endswith("<|assistant|>\nA:") for p in call["prompts"])
    assert res["metrics"]["average_exact_match"] == 1.0 and len(res["records"]) == 60
    assert all(o[0].endswith(".") for o in [r["outputs"] for r in res["records"]])
    assert prompts["boolean_expressions"].strip() in user_of(call["prompts"][0])

    rows = [{"id": "web_of_lies/0", "output": "So the answer is " + tasks["web_of_lies"][0]["target"] + "."},
            {"id": "navigate/3", "output": "So the answer is maybe."}]
    res = bbh.score_responses(rows)
    assert res["metrics"]["exact_match/web_of_lies"] == 1.0 and res["metrics"]["exact_match/navigate"] == 0.0
    assert res["metrics"]["average_exact_match"] == 0.5
