"""Evaluators for the benchmarks of Ivison et al. 2024 ("Unpacking DPO and PPO"), following open-instruct's
evaluation code of mid-2024 (see PAPER_NOTES §1.5). One small module per benchmark family:

    mmlu  gsm8k  bbh  truthfulqa  code (HumanEval+/MBPP+)  ifeval  xstest  toxigen  alpaca_eval

Each module has a loader for the real files under DATA_DIR (a missing or malformed file raises an error that
names it), prompt building, plain scoring functions (gsm8k.is_correct and ifeval.check double as RL rewards),
and two entry points that return the same shape:

    run(lm, limit=None, **opts)      -> {"task", "metrics", "records", "config"}   # generates with `lm`
    score_responses(rows, **opts)    -> {"task", "metrics", "records", "config"}   # scores outputs made elsewhere

`rows` are the lines of a JSONL file (`evaluate.py --responses FILE.jsonl`): one row per example with the
benchmark's id field (each module's docstring names it) and "output" (str) or "outputs" (list of str).

The LM interface (duck-typed; nanopref's adapter implements it, tests use a fake):
    lm.chat(user, assistant_prefix="") -> str          # the prompt string: Tulu chat template or raw text
    lm.generate(prompts, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None) -> list[list[str]]
    lm.loglikelihood([(context, continuation), ...]) -> [sum log p(continuation | context), ...]
A reward model / judge implements `score([(user_prompt, response), ...]) -> [float, ...]`.
"""
import csv
import json
import os
import random
import string

from nanopref.common import DATA_DIR

FAMILIES = ["mmlu", "gsm8k", "bbh", "truthfulqa", "code", "ifeval", "xstest", "toxigen", "alpaca_eval"]


def data_file(*parts):
    """Path of a benchmark file under DATA_DIR; a clear error if it is not there."""
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: benchmark file not found (DATA_DIR={DATA_DIR}; set NANOPREF_DATA "
                                "to the directory holding the shared benchmark data)")
    return path


def read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def read_csv(path, required=()):
    """CSV rows as dicts (a UTF-8 BOM is ignored); a missing column or ragged row names file:line."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
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
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{where}: record {i} is missing field(s) {missing}; has {sorted(row)}")
    return rows


def outputs_of(row, where="responses"):
    """The generated text(s) of a responses row: "output" (str) or "outputs" (list of str)."""
    if "outputs" in row:
        return list(row["outputs"])
    if "output" in row:
        return [row["output"]]
    raise ValueError(f"{where}: row {row.get('id', '')!r} has neither 'output' nor 'outputs'")


def subsample(items, k, seed):
    """A seeded random subset of size k (all items, in order, when k is None or >= len)."""
    if k is None or k >= len(items):
        return list(items)
    return random.Random(seed).sample(list(items), k)


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
