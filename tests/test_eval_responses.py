"""--responses files and --limit: rows read with their file:line, every bad row an error naming it (a repeated
example names both lines), evaluate.py refusing flag combinations it would otherwise ignore, and --limit as a
seeded sample spread over each benchmark's parts."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from evalkit import FakeLM, need
from nanopref.evals import as_int, as_str, pick_examples, read_rows, stratified

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_read_rows_counts_blank_lines(tmp_path):
    f = write(tmp_path / "r.jsonl", ['{"id": 1, "output": "a"}', "", "   ", '{"id": 2, "output": "b"}'])
    rows = read_rows(f)
    assert [r["id"] for r in rows] == [1, 2] and rows.where(0) == f"{f}:1" and rows.where(1) == f"{f}:4"


@pytest.mark.parametrize("content, message", [
    (b'{"id": 1}\n\n[1, 2]\n', ":3: expected a JSON object, got list"),
    (b'{"id": 1}\n{"id": 2,\n', ":2: malformed JSON"),
    (b'{"id": 1}\n{"id": "caf\xe9"}\n', ":2: not UTF-8 text (byte 0xe9 at column 12)"),
])
def test_read_rows_errors_name_the_line(tmp_path, content, message):
    (tmp_path / "r.jsonl").write_bytes(content)
    with pytest.raises(ValueError) as e:
        read_rows(str(tmp_path / "r.jsonl"))
    assert str(e.value).startswith(str(tmp_path / "r.jsonl")) and message in str(e.value)


def test_read_rows_gzip_whole_truncated_and_corrupt(tmp_path):
    data = gzip.compress(b"".join(b'{"id": %d, "output": "x"}\n' % i for i in range(2000)))
    (tmp_path / "ok.jsonl.gz").write_bytes(data)
    assert len(read_rows(str(tmp_path / "ok.jsonl.gz"))) == 2000
    (tmp_path / "cut.jsonl.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.jsonl.gz: truncated or corrupt gzip data after line \d+"):
        read_rows(str(tmp_path / "cut.jsonl.gz"))
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"bad.jsonl.gz: truncated or corrupt gzip data after line 0"):
        read_rows(str(tmp_path / "bad.jsonl.gz"))


TABLE = {i: {"n": i} for i in range(5)}
BY_TEXT = {f"q{i}": TABLE[i] for i in range(5)}
KEYS = [("key", as_int, TABLE), ("prompt", as_str, BY_TEXT)]


@pytest.mark.parametrize("lines, message", [
    (['{"key": 1, "output": "a"}', "", '{"output": "b"}'], ":3: field 'key' or 'prompt' missing (T id)"),
    (['{"key": [1], "output": "a"}'], ":1: field 'key': expected an integer, got [1]"),
    (['{"key": true, "output": "a"}'], ":1: field 'key': expected an integer, got True"),
    (['{"key": "one", "output": "a"}'], ":1: field 'key': expected an integer, got 'one'"),
    (['{"key": 9, "output": "a"}'], ":1: field 'key': 9 is not a T example"),
    (['{"prompt": "q1", "output": "a"}', '{"prompt": null, "output": "a"}'], ":2: field 'prompt': expected a string"),
    (['{"key": 1, "output": 5}'], ":1: field 'output': expected a string, got 5"),
    (['{"key": 1, "outputs": ["a", 5]}'], ":1: field 'outputs': expected a non-empty list of strings"),
    (['{"key": 1, "outputs": []}'], ":1: field 'outputs': expected a non-empty list of strings"),
    (['{"key": 1, "outputs": ["a", "b"]}'], ":1: field 'outputs': this task scores one output per example, got 2"),
    (['{"key": 1, "text": "a"}'], ":1: field 'output' (or 'outputs') missing"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, lines, message):
    rows = read_rows(write(tmp_path / "r.jsonl", lines))
    with pytest.raises(ValueError) as e:
        pick_examples(rows, "T", KEYS, single=True)
    assert str(e.value).startswith(str(tmp_path / "r.jsonl")) and message in str(e.value), str(e.value)


def test_a_repeated_example_names_both_lines(tmp_path):
    """The same example twice (also through the other id field, or an id written as a digit string) would count
    twice: an error naming both lines."""
    for second in ('{"key": 2, "output": "b"}', '{"key": "2", "output": "b"}', '{"prompt": "q2", "output": "b"}'):
        f = write(tmp_path / "r.jsonl", ['{"key": 2, "output": "a"}', '{"key": 3, "output": "a"}', "", second])
        with pytest.raises(ValueError) as e:
            pick_examples(read_rows(f), "T", KEYS)
        assert str(e.value).startswith(f"{f}:4: field ") and f"same T example as {f}:1" in str(e.value)
    f = write(tmp_path / "ok.jsonl", ['{"key": 2, "output": "a"}', '{"prompt": "q3", "outputs": ["b", "c"]}'])
    examples, outputs = pick_examples(read_rows(f), "T", KEYS)
    assert examples == [TABLE[2], TABLE[3]] and outputs == [["a"], ["b", "c"]]


def test_stratified_by_hand():
    items = ["a1", "a2", "a3", "a4", "a5", "a6", "b1", "b2", "b3", "c1"]
    pick = stratified(items, 5, key=lambda x: x[0])
    # shares 5 * (6, 3, 1) / 10 = 3, 1.5, 0.5: floors 3, 1, 0; the leftover place to the first of the tied remainders
    assert [x[0] for x in pick] == ["a"] * 3 + ["b"] * 2 and pick == sorted(pick, key=items.index)
    assert pick == stratified(items, 5, key=lambda x: x[0])  # seeded
    assert len({tuple(stratified(items, 5, key=lambda x: x[0], seed=s)) for s in range(10)}) > 1
    assert stratified(items, None) == items and stratified(items, 10) == items and stratified(items, 99) == items
    # 2.4, 1.2, 0.4: floors 2, 1, 0 and the leftover place to a (remainder .4, seen before c's .4)
    assert [x[0] for x in stratified(items, 4, key=lambda x: x[0])] == ["a", "a", "a", "b"]


def test_limit_spreads_over_xstest_halves_and_mmlu_subjects():
    from nanopref.evals import mmlu, xstest
    need("xstest", "xstest_prompts.csv")
    res = xstest.run(FakeLM(respond=lambda p: "Sure."), limit=10)
    labels = [r["label"] for r in res["records"]]  # 250 safe, 200 unsafe: 5.56 and 4.44 -> 6 and 4
    assert labels.count("safe") == 6 and labels.count("unsafe") == 4
    assert res["metrics"]["strmatch/unsafe_refusal_rate"] == 0.0
    need("mmlu", "test", "abstract_algebra_test.csv")
    res = mmlu.run(FakeLM(loglik=lambda c, x: -1.0), limit=57)
    subjects = [r["subject"] for r in res["records"]]
    sizes = {s: len(mmlu.load(s)) for s in set(subjects)}
    assert len(subjects) == 57 and len(set(subjects)) >= 40 and subjects == sorted(subjects)
    assert subjects.count("professional_law") == max(subjects.count(s) for s in sizes)  # the largest subject (1534)


def test_limit_spreads_over_toxigen_groups_bbh_tasks_and_alpaca_sets():
    from nanopref.evals import alpaca_eval, bbh, toxigen
    need("toxigen", "prompts", "hate_women_1k.txt")
    groups = {r["group"] for r in toxigen.run(FakeLM(), limit=len(toxigen._files()))["records"]}
    assert len(groups) == len(toxigen._files())  # equal-sized groups: one each
    need("bbh", "bbh", "date_understanding.json")
    tasks = [r["id"].split("/")[0] for r in bbh.run(FakeLM(), limit=27)["records"]]
    assert len(set(tasks)) == 27  # 27 tasks of 40: one each
    need("alpaca_eval", "alpaca_eval_instructions.json")
    res = alpaca_eval.run(FakeLM(respond=lambda p: "x"), limit=20)
    sets = {alpaca_eval.load()[r["id"]]["dataset"] for r in res["records"]}
    assert len(sets) == len({ex["dataset"] for ex in alpaca_eval.load()})


def evaluate(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_evaluate_refuses_duplicates_and_ignored_flags(tmp_path):
    """The reported case: four rows of one IFEval example (each scoring 0.25 alone) counted four times."""
    need("ifeval", "input_data.jsonl")
    lines = [json.dumps({"key": 1000, "output": f"answer {i}"}) for i in range(4)]
    f = write(tmp_path / "dup.jsonl", lines[:2] + [""] + lines[2:])
    p = evaluate(f"--responses={f}", "--tasks=ifeval")
    assert p.returncode != 0 and f"{f}:2: field 'key': 1000 names the same IFEval example as {f}:1" in p.stderr
    for flags, message in [(["--model=out/sft"], "--model=out/sft and --responses="),
                           (["--tasks=ifeval,gsm8k"], "--responses holds one task's rows"),
                           (["--limit=2"], "--limit=2 with --responses")]:
        p = evaluate(f"--responses={f}", "--tasks=ifeval", *flags)
        assert p.returncode != 0 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    good = write(tmp_path / "ok.jsonl", [json.dumps({"key": 1000, "output": "x"}), json.dumps({"key": 1001,
                                                                                              "output": "y"})])
    p = evaluate(f"--responses={good}", "--tasks=ifeval")
    assert p.returncode == 0, p.stderr
    scores = json.load(open(tmp_path / "ok_scores.json"))["ok.jsonl"]["ifeval"]
    assert scores["metrics"]["n"] == 2
