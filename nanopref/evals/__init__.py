"""Evaluators for the benchmarks of Ivison et al. 2024 ("Unpacking DPO and PPO"), following open-instruct's
evaluation code of mid-2024 (see PAPER_NOTES §1.5). One small module per benchmark family:

    mmlu  gsm8k  bbh  truthfulqa  code (HumanEval+/MBPP+)  ifeval  xstest  toxigen  alpaca_eval

Each module has a loader for the real files under DATA_DIR (a missing or malformed file raises an error that
names it), prompt building, plain scoring functions (gsm8k.is_correct and ifeval.check double as RL rewards),
and two entry points that return the same shape:

    run(lm, limit=None, **opts)      -> {"task", "metrics", "records", "config"}   # generates with `lm`
    score_responses(rows, **opts)    -> {"task", "metrics", "records", "config"}   # scores outputs made elsewhere

`rows` are the lines of a JSONL file (`evaluate.py --responses FILE.jsonl`, read by `read_rows`): one row per
example with the benchmark's id field (each module's docstring names it) and "output" (str) or "outputs" (list of
str). `pick_examples` checks them: a missing or mistyped field, an unknown id, or an example named twice is an
error naming file:line. `limit` is a seeded sample spread over the benchmark's strata (`stratified`).

The LM interface (duck-typed; nanopref's adapter implements it, tests use a fake):
    lm.chat(user, assistant_prefix="") -> str          # the prompt string: Tulu chat template or raw text
    lm.generate(prompts, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None) -> list[list[str]]
    lm.loglikelihood([(context, continuation), ...]) -> [sum log p(continuation | context), ...]
A reward model / judge implements `score([(user_prompt, response), ...]) -> [float, ...]`.
"""
import csv
import io
import json
import os
import random
import re
import string

from nanopref.common import DATA_DIR, InputError, jsonl_rows, text_lines  # noqa: F401 (text_lines: for the evaluators)

FAMILIES = ["mmlu", "gsm8k", "bbh", "truthfulqa", "code", "ifeval", "xstest", "toxigen", "alpaca_eval"]


def data_file(*parts):
    """Path of a benchmark file under DATA_DIR; a clear error if it is not there."""
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: benchmark file not found (DATA_DIR={DATA_DIR}; set NANOPREF_DATA "
                                "to the directory holding the shared benchmark data)")
    return path


def read_text(path):
    return "".join(line for _, line in text_lines(path))


def read_json(path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def read_csv(path, required=()):
    """CSV rows as dicts (a UTF-8 BOM is ignored); a missing column or ragged row names file:line."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}:1: missing column(s) {missing}; header is {reader.fieldnames}")
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise ValueError(f"{path}:{reader.line_num}: row has the wrong number of fields")
        rows.append(row)
    return rows


def check_fields(rows, required, where):
    """A list of objects (a JSON array, or Rows) each with the `required` fields, else ValueError naming the record
    (for Rows: file:line)."""
    if not isinstance(rows, list):
        raise ValueError(f"{where}: expected a list of objects, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        at = rows.where(i) if isinstance(rows, Rows) else f"{where}: record {i}"
        if not isinstance(row, dict):
            raise ValueError(f"{at}: expected an object, got {type(row).__name__}")
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{at}: missing field(s) {missing}; has {sorted(row)}")
    return rows


class Rows(list):
    """JSONL rows (dicts) that remember their file and line numbers: rows.where(i) -> "path:line"."""

    def __init__(self, path):
        super().__init__()
        self.path, self.lines = path, []

    def where(self, i):
        return f"{self.path}:{self.lines[i]}"


def where(rows, i):
    return rows.where(i) if isinstance(rows, Rows) else f"responses row {i + 1}"


def read_rows(path, required=()):
    """A JSONL file (.gz too) -> Rows, read by common.jsonl_rows (line numbers count blank lines; a missing file,
    bytes that are not UTF-8, malformed JSON or a truncated .gz is an InputError naming file:line); a row missing
    a required field names its line too."""
    rows = Rows(path)
    for i, row in jsonl_rows(path):
        missing = [k for k in required if k not in row]
        if missing:
            raise InputError(f"{path}:{i}: missing field(s) {missing}; has {sorted(row)}")
        rows.append(row)
        rows.lines.append(i)
    return rows


def as_int(v):
    """An id meant as an integer: an int (not a bool) or a string of digits."""
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError("expected an integer")


def as_str(v):
    """An id meant as a string (an int is taken as its decimal text, e.g. XSTest's "1")."""
    if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return str(v)
    raise TypeError("expected a string")


def pick_examples(rows, task, keys, single=False):
    """The example each --responses row names, and its outputs: -> (examples, [[output, ...], ...]).
    keys: [(field, parse, table)], tried in order (the first field the row has): table[parse(row[field])].
    A missing or mistyped field, an id not in the table, an example named twice (it would count twice), or an
    "output" that is not a string ("outputs": a non-empty list of strings; exactly one when `single`) raises
    ValueError naming file:line (both lines for a repeat)."""
    examples, outputs, seen = [], [], {}
    for i, r in enumerate(rows):
        at = where(rows, i)
        field = next((f for f, _, _ in keys if f in r), None)
        if field is None:
            raise ValueError(f"{at}: field {' or '.join(repr(f) for f, _, _ in keys)} missing ({task} id); "
                             f"has {sorted(r)}")
        parse, table = next((p, t) for f, p, t in keys if f == field)
        try:
            ex = table.get(parse(r[field]))
        except TypeError as e:
            raise ValueError(f"{at}: field {field!r}: {e}, got {r[field]!r}") from None
        if ex is None:
            raise ValueError(f"{at}: field {field!r}: {r[field]!r} is not a {task} example")
        if id(ex) in seen:
            raise ValueError(f"{at}: field {field!r}: {r[field]!r} names the same {task} example as {seen[id(ex)]} "
                             "(each example once: a repeat would be counted twice)")
        seen[id(ex)] = at
        examples.append(ex)
        outputs.append(outputs_of(r, at, single))
    return examples, outputs


def outputs_of(row, where="responses", single=False):
    """The generated text(s) of a responses row: "output" (str) or "outputs" (non-empty list of str)."""
    if "outputs" in row:
        outs = row["outputs"]
        if not isinstance(outs, list) or not outs or not all(isinstance(o, str) for o in outs):
            raise ValueError(f"{where}: field 'outputs': expected a non-empty list of strings, got {outs!r:.80}")
        if single and len(outs) != 1:
            raise ValueError(f"{where}: field 'outputs': this task scores one output per example, got {len(outs)}")
        return list(outs)
    if "output" in row:
        if not isinstance(row["output"], str):
            raise ValueError(f"{where}: field 'output': expected a string, got {row['output']!r:.80}")
        return [row["output"]]
    raise ValueError(f"{where}: field 'output' (or 'outputs') missing; has {sorted(row)}")


def subsample(items, k, seed):
    """A seeded random subset of size k (all items, in order, when k is None or >= len)."""
    if k is None or k >= len(items):
        return list(items)
    return random.Random(seed).sample(list(items), k)


def stratified(items, k, key=lambda x: None, seed=0):
    """`--limit`: k items spread over the strata key(item) in proportion to their sizes (the leftover places go to
    the largest remainders, ties in first-seen order), each stratum's share a seeded random choice; the chosen items
    keep their order. All items when k is None or >= len(items)."""
    if k is None or k >= len(items):
        return list(items)
    groups = {}
    for i, x in enumerate(items):
        groups.setdefault(key(x), []).append(i)
    n = len(items)
    share = {g: k * len(ix) // n for g, ix in groups.items()}
    for g in sorted(groups, key=lambda g: -(k * len(groups[g]) % n))[:k - sum(share.values())]:
        share[g] += 1
    rng = random.Random(seed)
    return [items[i] for i in sorted(i for g, ix in groups.items() for i in rng.sample(ix, share[g]))]


_PUNCT = str.maketrans("", "", string.punctuation)


def em_normalize(s):
    """HF `evaluate` exact_match with ignore_case=True, ignore_punctuation=True (what open-instruct uses for
    GSM8K and BBH): lower-case, delete ASCII punctuation. Whitespace is kept."""
    return s.lower().translate(_PUNCT)


def result(task, metrics, records, **config):
    return {"task": task, "metrics": metrics, "records": records, "config": config}


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")
