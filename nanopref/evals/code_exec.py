"""Differential testing of generated functions, evalplus style, on top of nanopref.evals.sandbox.

evalplus semantics (evalplus/eval/__init__.py, evaluate.py): the expected output of every test input comes
from running the task's canonical solution (`prompt + canonical_solution`); a candidate passes a test set if,
for every input, its output equals the expected one, with the per-task `atol` for floats (1e-6 when atol=0
and the expected value is a float or list of floats, then np.allclose(rtol=1e-7)) and a few special oracles
(`outputs_match`). Each input runs under a time limit max(1 s, 4 x the canonical solution's time); the
whole task is capped at 60 s per test set. Expected outputs may be cached on disk.

One sandboxed process per candidate program runs all its inputs (the harness below), so process start-up is
paid once per program, not per input. Comparison happens here in the parent: the expected outputs never
enter the candidate's process, so code that inspects or patches the harness cannot make a wrong answer pass.
(The dataset's own tests, reported as "original", run in the candidate's process like human-eval's
check; code that finds the harness's output channel could forge that one result, so RL rewards should use
"base"/"plus".) Values cross the process boundary as tagged JSON (`_encode`/`_decode`), never pickle. Outputs larger than
about 8 KB (`_is_big`; a few HumanEval+/MBPP+ tasks return megabytes, Mbpp/255 a gigabyte of text) travel as a
sha256 (`_digest`) in which values that compare equal hash alike at the top level (1 == 1.0 == True, sets and
dicts in sorted order) and deeper elements by their repr; such outputs are compared exactly, without float
tolerance or special oracles (deviation; no task with atol > 0 returns outputs that large).
"""
import hashlib
import inspect
import json
import math
import os

import numpy as np

from nanopref.evals import sandbox
from nanopref.common import OUT_DIR, atomic_write

BIG_OUTPUT = 8192  # size (see _is_big) above which an output is sent as a digest
MIN_TIME_LIMIT, TIME_FACTOR, GROUP_CAP = 1.0, 4.0, 60.0  # evalplus defaults (config.py)
LOAD_LIMIT, TEST_LIMIT = 5.0, 3.0  # defining the program; the dataset's own tests (human-eval's 3 s timeout)
MBPP_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
               "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}


# -----------------------------------------------------------------------------
# values across the process boundary (these functions are also pasted into the harness)

def _encode(x, depth=0):
    """Type-preserving JSON form: tuples, sets, dicts with any keys, complex, bytes and huge ints survive."""
    if depth > 200:
        raise ValueError("value nested too deep")
    if x is None or isinstance(x, (bool, str, float)):
        return x  # json writes NaN/Infinity and reads them back
    if isinstance(x, int):
        return int(x) if -2**62 < x < 2**62 else {"$int": hex(x)}  # hex: no int_max_str_digits limit
    if isinstance(x, list):
        return [_encode(v, depth + 1) for v in x]
    if isinstance(x, (tuple, set, frozenset)):
        tag = "$tuple" if isinstance(x, tuple) else "$frozenset" if isinstance(x, frozenset) else "$set"
        return {tag: [_encode(v, depth + 1) for v in x]}
    if isinstance(x, dict):
        return {"$dict": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in x.items()]}
    if isinstance(x, complex):
        return {"$complex": [x.real, x.imag]}
    if isinstance(x, bytes):
        return {"$bytes": x.hex()}
    if hasattr(x, "__index__"):  # numpy integers and the like
        return _encode(x.__index__(), depth)
    if hasattr(x, "__float__") and not hasattr(x, "__len__"):
        return float(x)
    return {"$opaque": type(x).__name__ + ": " + repr(x)[:200]}


def _decode(d):
    """json object_hook undoing `_encode` (other objects, e.g. result rows, pass through). An opaque value
    becomes a tuple that equals no real output."""
    kinds = {"$tuple": tuple, "$set": set, "$frozenset": frozenset, "$dict": lambda kv: {k: w for k, w in kv},
             "$complex": lambda ri: complex(*ri), "$bytes": bytes.fromhex, "$int": lambda h: int(h, 16),
             "$opaque": lambda r: ("<opaque>", r)}
    if len(d) == 1 and next(iter(d)) in kinds:
        (tag, v), = d.items()
        return kinds[tag](v)
    return d


def _leaf(v):
    if isinstance(v, bool) or (isinstance(v, float) and v.is_integer()):
        v = int(v)  # so that True == 1 == 1.0 hash alike
    return hex(v) if isinstance(v, int) else repr(v)  # hex: linear time even for 10^5-digit ints


def _digest(x):
    """sha256 of a big output, streamed over its top-level elements (a 10^6-element list costs seconds, not
    minutes). Equal-comparing values hash alike at the top level and for number elements (1 == 1.0); deeper
    elements are compared by repr."""
    if isinstance(x, (set, frozenset)):
        tag, items = "S", sorted(map(_leaf, x))
    elif isinstance(x, dict):
        tag, items = "D", sorted(_leaf(k) + ":" + _leaf(v) for k, v in x.items())
    elif isinstance(x, (list, tuple)):
        tag, items = "L" if isinstance(x, list) else "T", map(_leaf, x)
    else:
        tag, items = "V", [_leaf(x)]
    h = hashlib.sha256(tag.encode())
    for item in items:
        h.update(item.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def _is_big(x):
    """Is the output over BIG_OUTPUT "units" (characters of strings, one per number or container, 64 bits of a
    big int)? Values that compare equal get the same answer, so a big expected output is only ever compared with
    a big candidate output (digest vs digest). Stops counting early: cheap even for gigabyte outputs."""
    stack, size = [x], 0
    while stack and size <= BIG_OUTPUT:
        v = stack.pop()
        if isinstance(v, (str, bytes)):
            size += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            size += 1
            stack.extend(v)
        elif isinstance(v, dict):
            size += 1
            stack.extend(v.items())
        else:
            size += 1 + (v.bit_length() // 64 if isinstance(v, int) else 0)
    return size > BIG_OUTPUT


# -----------------------------------------------------------------------------
# the harness: one sandboxed process runs one or more programs over their inputs, one JSON line per result

_HARNESS_MAIN = r'''
class _Timeout(BaseException):  # not an Exception: `except Exception` in the candidate cannot swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout()


class _Sink:
    def write(self, s): return len(s)
    def flush(self): pass


def _main():
    signal.signal(signal.SIGALRM, _alarm)
    with open("job.json") as f:
        job = json.load(f, object_hook=_decode)
    out = os.fdopen(os.dup(1), "w")  # private results channel
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the candidate's prints, even from C, go nowhere
    sys.stdout = sys.stdin = _Sink()

    def limited(fn, seconds):
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    setitimer, clock, dumps, real = signal.setitimer, time.perf_counter, json.dumps, signal.ITIMER_REAL
    for t, task in enumerate(job["tasks"]):
        g = {}  # like evalplus: no __name__, so `if __name__ == "__main__":` blocks do not run
        try:
            limited(lambda: exec(task["program"], g), task["load_limit"])
            fn = g[task["entry_point"]]
        except BaseException as e:
            out.write(dumps({"t": t, "load_error": type(e).__name__}) + "\n")
            continue
        failed = False
        for name, inputs, limits, first in task["groups"]:  # `first`: index of inputs[0] in the full test set
            for i, args in enumerate(inputs):  # hot loop: ~10^5 inputs per dataset, kept lean
                head = f'{{"t": {t}, "g": "{name}", "i": {first + i}'
                try:
                    if limits:
                        setitimer(real, limits[i])
                    t0 = clock()
                    try:
                        y = fn(*args)
                    finally:
                        dt = clock() - t0
                        setitimer(real, 0)
                    ty = type(y)
                    small = (ty is int and -2**62 < y < 2**62) or (ty is str and len(y) <= 4096)
                    if small or ty is bool or ty is float:
                        line = f'{head}, "s": {dt!r}, "o": {dumps(y)}}}'
                    elif _is_big(y):
                        line = f'{head}, "s": {dt!r}, "h": "{_digest(y)}"}}'
                    else:
                        line = f'{head}, "s": {dt!r}, "o": {dumps(_encode(y))}}}'
                except BaseException as e:
                    line, failed = f'{head}, "error": "{type(e).__name__}"}}', True
                out.write(line + "\n")
                if failed and job["stop_on_error"]:
                    break
            out.flush()
            if failed and job["stop_on_error"]:
                break  # an error or timeout fails the task; plus only counts if base passed
        if task.get("test"):
            try:
                limited(lambda: exec(task["test"], dict(g)), task["test_limit"])
                out.write(json.dumps({"t": t, "test": True}) + "\n")
            except BaseException as e:
                out.write(json.dumps({"t": t, "test": False, "error": type(e).__name__}) + "\n")
    out.write(json.dumps({"done": True}) + "\n")
    out.flush()


_main()
'''

HARNESS = ("import hashlib, json, os, signal, sys, time\n" + f"BIG_OUTPUT = {BIG_OUTPUT}\n\n"
           + "\n\n".join(inspect.getsource(f) for f in (_encode, _decode, _leaf, _digest, _is_big)) + _HARNESS_MAIN)


def _parse(stdout, decode=True):
    """Harness lines -> list of dicts (undecodable lines, e.g. forged by the candidate, are dropped)."""
    rows = []
    for line in stdout.splitlines():
        try:
            rows.append(json.loads(line, object_hook=_decode if decode else None))
        except (ValueError, TypeError, KeyError):
            continue
    return rows


# -----------------------------------------------------------------------------
# expected outputs (canonical solutions) and candidate checks


def expected_outputs(tasks, workers=None, cache_name=None, piece=32, batches_per_worker=16):
    """Run `prompt + canonical_solution` of every task on its base and plus inputs in sandboxes. The code is
    trusted, so one process runs many pieces of `piece` inputs (pieces dealt round-robin, which spreads the few
    slow tasks, e.g. Mbpp/599 at ~1.5 s an input, over the workers). Returns {task_id: {"base": [(kind, value)],
    "plus": [...], "base_time": [s], "plus_time": [s]}}, kind "o" (the value) or "h" (a digest of a big value).
    With `cache_name`, cached under OUT_DIR/cache (keyed by the task files' bytes and the harness source)."""
    key = hashlib.sha256(HARNESS.encode() + json.dumps([t["task_id"] for t in tasks]).encode()
                         + b"".join(t["_digest"].encode() for t in tasks)).hexdigest()[:16]
    path = os.path.join(OUT_DIR, "cache", f"{cache_name}_{key}.jsonl") if cache_name else None
    if path and os.path.exists(path):
        with open(path) as f:
            lines = f.read()
    else:
        workers = workers or os.cpu_count() or 1
        pieces = [(t, g, i) for t in tasks for g in ("base", "plus") for i in range(0, len(t[g + "_input"]), piece)]
        nb = min(len(pieces), workers * batches_per_worker)
        batches = [pieces[i::nb] for i in range(nb)]
        jobs = [{"tasks": [dict(program=t["prompt"] + t["canonical_solution"], entry_point=t["entry_point"],
                                groups=[[g, t[g + "_input"][i:i + piece], None, i]], load_limit=None) for t, g, i in b],
                 "stop_on_error": False} for b in batches]
        results = sandbox.run_many([dict(code=HARNESS, files={"job.json": json.dumps(_encode(j))}) for j in jobs],
                                   workers=workers, timeout=1800, max_output=1 << 30, memory_mb=4096, guard=False)
        lines = []
        for b, r in zip(batches, results):
            rows = _parse(r["stdout"], decode=False)  # keep the type tags: re-encoded below
            if not rows or not rows[-1].get("done"):
                raise RuntimeError(f"canonical solutions of {sorted({t['task_id'] for t, _, _ in b})} did not finish: "
                                   f"{r['status']} {r['stderr'][-2000:]}")
            lines += [json.dumps(dict(row, t=b[row["t"]][0]["task_id"])) for row in rows[:-1]]
        lines = "\n".join(lines)
        if path:
            atomic_write(path, lambda f: f.write(lines))
    by_id = {t["task_id"]: t for t in tasks}
    expected = {tid: {"base": [None] * len(t["base_input"]), "plus": [None] * len(t["plus_input"]),
                      "base_time": [0.0] * len(t["base_input"]), "plus_time": [0.0] * len(t["plus_input"])}
                for tid, t in by_id.items()}
    for row in _parse(lines):
        task = by_id[row["t"]]
        if "error" in row or "load_error" in row:
            raise RuntimeError(f"canonical solution of {row['t']} failed: {row}")
        value = ("h", row["h"]) if "h" in row else ("o", row["o"])
        if task["entry_point"] in MBPP_NOT_NONE and task["_dataset"] == "mbpp":  # evalplus trusted_exec does this
            value = ("o", value[1] is not None)
        expected[row["t"]][row["g"]][row["i"]] = value
        expected[row["t"]][row["g"] + "_time"][row["i"]] = row["s"]
    return expected


def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _is_floats(x):
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, float) for v in x)


def outputs_match(inp, out, exp, atol, dataset, entry_point):
    """evalplus check_output: exact ==, special oracles, then float tolerance. Any exception -> False."""
    try:
        exact = out == exp
        if dataset == "mbpp":
            if entry_point == "are_equivalent":  # Mbpp/164: the reference itself is ambiguous
                exact = True
            elif entry_point == "sum_div":  # Mbpp/295
                exact = exact or out == 0
            elif entry_point == "surface_Area":  # Mbpp/581: height read as the pyramid's perpendicular height
                b, h = inp
                exact = exact or abs(out - round(b * b + 2 * b * math.sqrt((b / 2) ** 2 + h * h))) <= atol
            elif entry_point == "digit_distance_nums":  # Mbpp/558: pad the shorter number with zeros
                a, b = str(inp[0]), str(inp[1])
                n = max(len(a), len(b))
                exact = exact or out == sum(abs(int(p) - int(q)) for p, q in zip(a.zfill(n), b.zfill(n)))
            elif entry_point in MBPP_SET_EQ:
                exact = set(out) == set(exp)
            elif entry_point in MBPP_NOT_NONE:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":  # any root will do
            return bool(abs(_poly(*inp, out)) <= atol)
        if atol == 0 and _is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            if type(out) is not type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):
                return False
            return bool(np.allclose(out, exp, rtol=1e-7, atol=atol))
        return bool(exact)
    except Exception:
        return False


def _same(inp, got, exp, task):
    """got/exp are (kind, value) pairs from the harness: values compare as evalplus does, digests by equality,
    and a digest never equals a value (`_is_big` gives equal values the same kind)."""
    if got is None or exp is None or got[0] != exp[0]:
        return False
    if got[0] == "h":
        return got[1] == exp[1]
    return outputs_match(inp, got[1], exp[1], task["atol"], task["_dataset"], task["entry_point"])


def check_programs(items, expected, workers=None, groups=("base", "plus"), max_ref_time=None):
    """items: [(task, program_text, test_text_or_None)]. One sandbox per program. Returns, per item,
    {"base": bool, "plus": bool, "original": bool|None, "status": str, "detail": str}. `max_ref_time` (tests
    only) skips inputs whose canonical run took longer than that many seconds."""
    jobs = []
    for task, program, test in items:
        exp = expected[task["task_id"]]
        gs, timeout = [], 5.0
        for g in groups:
            keep = [i for i, s in enumerate(exp[g + "_time"]) if max_ref_time is None or s <= max_ref_time]
            limits = [max(MIN_TIME_LIMIT, TIME_FACTOR * exp[g + "_time"][i]) for i in keep]
            gs.append([g, [task[g + "_input"][i] for i in keep], limits, keep])
            timeout += min(GROUP_CAP, sum(limits))
        job = {"tasks": [dict(program=program, entry_point=task["entry_point"], groups=[x[:3] + [0] for x in gs],
                              load_limit=LOAD_LIMIT, test_limit=TEST_LIMIT, test=test)], "stop_on_error": True}
        jobs.append((task, gs, dict(code=HARNESS, files={"job.json": json.dumps(_encode(job))},
                                    timeout=timeout + LOAD_LIMIT + (TEST_LIMIT if test else 0.0), max_output=256 << 20,
                                    memory_mb=4096)))  # evalplus allows 4 GB
    results = sandbox.run_many([j[2] for j in jobs], workers=workers)
    out = []
    for (task, gs, _), (_, _, test), r in zip(jobs, items, results):
        rows = _parse(r["stdout"])
        got = {(row["g"], row["i"]): ("h", row["h"]) if "h" in row else ("o", row["o"])
               for row in rows if "g" in row and "error" not in row and ("h" in row or "o" in row)}
        errors = {(row["g"], row["i"]): row["error"] for row in rows if "g" in row and "error" in row}
        load_error = next((row["load_error"] for row in rows if "load_error" in row), None)
        res, detail = {"status": r["status"]}, f"program failed to load: {load_error}" if load_error else ""
        for g, _, _, keep in gs:
            exp = expected[task["task_id"]][g]
            bad = [j for j, i in enumerate(keep) if not _same(task[g + "_input"][i], got.get((g, j)), exp[i], task)]
            res[g] = not bad
            if bad and not detail:
                why = errors.get((g, bad[0]))
                why = why or ("wrong output" if (g, bad[0]) in got else f"no output ({r['status']})")
                detail = f"{g} input {keep[bad[0]]}: {why}"
        if "plus" in res:
            res["plus"] = res["plus"] and res.get("base", True)  # evalplus: plus means base and plus
        tests = [row["test"] for row in rows if "test" in row]
        res["original"] = tests == [True] if test else None  # (a second, forged test row makes it fail)
        res["detail"] = detail or ("" if r["status"] == "ok" else r["status"])
        out.append(res)
    return out
