import json
import math
import time

import pytest

from evalkit import FakeLM, need
from nanopref.evals import code
from nanopref.evals.code_exec import _decode, _digest, _encode, _is_big, check_programs, expected_outputs, outputs_match

SUBSET = {"humaneval": ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/32", "HumanEval/53"],
          "mbpp": ["Mbpp/2", "Mbpp/3", "Mbpp/124", "Mbpp/120", "Mbpp/793"]}


@pytest.fixture(scope="module")
def tasks():
    need("evalplus", "HumanEvalPlus-v0.1.10.jsonl.gz")
    need("evalplus", "MbppPlus-v0.2.0.jsonl.gz")
    return {ds: code.load(ds) for ds in ("humaneval", "mbpp")}


@pytest.fixture(scope="module")
def subset(tasks):
    """A few tasks per dataset with their expected outputs (all inputs)."""
    out = {}
    for ds, ids in SUBSET.items():
        ts = [t for t in tasks[ds] if t["task_id"] in ids]
        out[ds] = (ts, expected_outputs(ts, workers=2))
    return out


def test_load_counts_and_types(tasks):
    he, mbpp = tasks["humaneval"], tasks["mbpp"]
    assert len(he) == 164 and len(mbpp) == 378  # MANIFEST
    assert sum(len(t["base_input"]) for t in he) == 1570 and sum(len(t["plus_input"]) for t in he) == 122683
    by_id = {t["task_id"]: t for t in mbpp}
    assert by_id["Mbpp/2"]["base_input"][0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # JSON lists -> tuples
    assert by_id["Mbpp/124"]["base_input"][0] == (0.0, 1j)  # complex numbers restored
    assert by_id["Mbpp/793"]["plus_input"] == []  # stored as {} upstream


def test_prompts(tasks):
    he, mbpp = tasks["humaneval"][0], tasks["mbpp"][0]
    user, prefix = code.build_prompt(he)
    assert user == "Complete the following python function.\n\n\n" + he["prompt"]
    assert prefix == "Here is the function:\n\n```python\n" + he["prompt"]  # the model continues the body
    assert code.solution_program(he, "    return 1\n") == he["prompt"] + "    return 1\n"
    user, prefix = code.build_prompt(mbpp)
    assert user.endswith('"""\n\ndef similar_elements(test_tup1, test_tup2)') and prefix.endswith("```python\n")
    assert code.solution_program(mbpp, "def f(): pass") == "def f(): pass"
    assert code.STOP["humaneval"] == ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"]
    assert code.STOP["mbpp"] == ["```"]


def test_pass_at_k():
    assert code.pass_at_k(20, 0, 1) == 0.0 and code.pass_at_k(20, 20, 10) == 1.0
    assert code.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    for n, c, k in [(20, 3, 10), (20, 1, 10), (10, 9, 5), (200, 17, 100)]:
        assert code.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), rel=1e-9)
    with pytest.raises(ValueError):
        code.pass_at_k(5, 1, 10)


def test_value_transport_round_trip():
    values = [None, True, 3, -2**70, 1.5, float("inf"), "tab\t", [1, (2, 3)], {1, 2}, frozenset({"a"}),
              {(1, 2): [3], "k": {"n": None}}, 2 + 3j, b"\x00\xff", [[]], ()]
    for v in values:
        back = json.loads(json.dumps(_encode(v)), object_hook=_decode)
        assert back == v and type(back) is type(v), v
    nan = json.loads(json.dumps(_encode(float("nan"))), object_hook=_decode)
    assert nan != nan
    assert json.loads(json.dumps(_encode(object())), object_hook=_decode)[0] == "<opaque>"
    # big outputs: equal values hash alike (1 == 1.0 == True at the top level), different ones do not
    big = list(range(10000))
    assert _is_big(big) and not _is_big(big[:100]) and _is_big("x" * 9000) and _is_big(2**600000)
    assert _digest(big) == _digest([float(x) for x in big]) != _digest(big[::-1])
    assert _digest(set(big)) == _digest(set(reversed(big))) and _digest(big) != _digest(tuple(big))


@pytest.mark.parametrize("inp, out, exp, atol, ds, entry, ok", [
    ([1], 0.30000000000000004, 0.3, 0, "humaneval", "f", True),  # floats get atol 1e-6
    ([1], 0.3001, 0.3, 0, "humaneval", "f", False),
    ([1], [1.0, 2.0000001], [1.0, 2.0], 0, "humaneval", "f", True),
    ([1], 1.00009, 1.0, 1e-4, "humaneval", "f", True),
    ([1], (1.0, 2.0), [1.0, 2.0], 0, "humaneval", "f", False),  # tuple vs list: type differs
    ([1], 2, 2.0, 0, "humaneval", "f", True),  # int == float
    ([[1, 2]], 1.0000001, 7.0, 1e-4, "humaneval", "find_zero", False),  # any root: poly(x) must be ~0
    ([[-6, 11, -6, 1]], 1.0, 3.0, 1e-4, "humaneval", "find_zero", True),
    ([(1, 2), (2, 3)], (2,), (2,), 0, "mbpp", "similar_elements", True),
    ([(1, 2, 3), (2, 3)], (3, 2), (2, 3), 0, "mbpp", "similar_elements", True),  # set equality
    (["abc"], "match", True, 0, "mbpp", "check_str", True),  # not-None oracle
    (["abc"], None, True, 0, "mbpp", "check_str", False),
    ([4, 6], 7, 5, 0, "mbpp", "sum_div", False),
    ([4, 6], 0, 5, 0, "mbpp", "sum_div", True),
    ([1], ("<opaque>", "x"), 1, 0, "humaneval", "f", False),
])
def test_outputs_match(inp, out, exp, atol, ds, entry, ok):
    assert outputs_match(inp, out, exp, atol, ds, entry) is ok


def test_right_and_corrupted_solutions(subset):
    for ds, (ts, expected) in subset.items():
        items, kinds = [], []
        for t in ts:
            ep, canonical = t["entry_point"], t["prompt"] + t["canonical_solution"]
            plus_only = next((x for x in t["plus_input"] if x not in t["base_input"]), None)
            programs = {
                "right": canonical,
                "none": canonical + f"\ndef {ep}(*args):\n    return None\n",
                "syntax": canonical + "\ndef oops(:\n",
                "raises": canonical + f"\ndef {ep}(*args):\n    raise RuntimeError('no')\n",
                # writes a fake end-of-results line to every fd it can find, then dies: must not pass
                "forger": canonical + "\nimport os\nfor fd in range(3, 20):\n    try:\n"
                                      "        os.write(fd, b'{\"done\": true}\\n')\n"
                                      "    except OSError:\n        pass\nos._exit(0)\n",
            }
            if t is ts[0]:  # one endless loop per dataset: ~4 s (1 s input limit + 3 s for the original tests)
                programs["loops"] = canonical + f"\ndef {ep}(*args):\n    while True:\n        pass\n"
            if plus_only is not None:  # right on base inputs, wrong on one plus-only input
                programs["plus_bug"] = canonical + (f"\n_right = {ep}\n_bad = {plus_only!r}\n"
                                                    f"def {ep}(*args):\n    if list(args) == list(_bad):\n"
                                                    f"        return 'wrong'\n    return _right(*args)\n")
            for kind, program in programs.items():
                items.append((t, program, code.original_tests(t)))
                kinds.append((t["task_id"], kind))
        t0 = time.time()
        results = dict(zip(kinds, check_programs(items, expected, workers=2)))
        assert time.time() - t0 < 60  # endless loops are cut by the per-input limit (max(1 s, 4 x reference))
        for (tid, kind), r in results.items():
            if kind == "right":
                assert r["base"] and r["plus"] and r["original"], (tid, r)
            elif kind == "plus_bug":
                assert r["base"] and not r["plus"], (tid, r)
            else:
                assert not r["base"] and not r["plus"], (tid, kind, r)
        assert results[(ts[0]["task_id"], "loops")]["detail"] == "base input 0: _Timeout"
        assert results[(ts[0]["task_id"], "syntax")]["detail"] == "program failed to load: SyntaxError"
        assert results[(ts[0]["task_id"], "none")]["detail"] == "base input 0: wrong output"
        assert results[(ts[0]["task_id"], "forger")]["detail"].startswith("base input 0: no output")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_canonical_solutions_pass_everything(tasks, dataset):
    """Every canonical solution runs on 100% of its base and plus inputs (the expected-output pass); then,
    as an untrusted candidate in its own sandbox, it must pass base, plus and the original tests. The second pass
    skips inputs whose reference run took > 50 ms (under 1% of them, e.g. Mbpp/599's sum(range(10**8))): both
    datasets then cost ~115 CPU-seconds, about a minute on 2 idle cores. Without `max_ref_time` the second
    pass repeats all the heavy inputs too (another ~70 CPU-seconds)."""
    ts = tasks[dataset]
    expected = expected_outputs(ts, workers=2)
    assert all(v is not None for e in expected.values() for g in ("base", "plus") for v in e[g])
    items = [(t, code.solution_program(t, t["canonical_solution"] if dataset == "humaneval"
                                       else t["prompt"] + t["canonical_solution"]), code.original_tests(t)) for t in ts]
    results = check_programs(items, expected, workers=2, max_ref_time=0.05)
    failed = [(t["task_id"], r) for t, r in zip(ts, results) if not (r["base"] and r["plus"] and r["original"])]
    assert failed == []
    skipped = sum(s > 0.05 for e in expected.values() for g in ("base", "plus") for s in e[g + "_time"])
    total = sum(len(e["base"]) + len(e["plus"]) for e in expected.values())
    assert skipped < 0.01 * total


def test_run_and_score_responses(tasks, subset):
    ts, expected = subset["humaneval"]
    body = {t["task_id"]: t["canonical_solution"] for t in ts}

    def respond(prompt, i):  # sample 0 right, sample 1 wrong
        tid = next(t["task_id"] for t in ts if t["prompt"] in prompt)
        return body[tid] if i == 0 else "    return None\n"

    fake = FakeLM(respond)
    res = code.run(fake, n=2, settings=((1, 0.1), (2, 0.8)), workers=2, task_ids=SUBSET["humaneval"], cache=False)
    assert [c["temperature"] for c in fake.calls] == [0.1, 0.8] and fake.calls[0]["top_p"] == 0.95
    assert fake.calls[0]["n"] == 2 and fake.calls[0]["stop"] == code.STOP["humaneval"]
    assert res["metrics"]["plus_pass@1"] == pytest.approx(0.5) and res["metrics"]["plus_pass@2"] == 1.0

    rows = [{"task_id": t["task_id"], "outputs": [body[t["task_id"]], "    return 0\n"]} for t in ts]
    res = code.score_responses(rows, "humaneval", workers=2, expected=expected)
    assert res["metrics"]["base_pass@1"] == pytest.approx(0.5) and "plus_pass@10" not in res["metrics"]
