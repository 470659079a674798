"""IFEval (google-research instruction_following_eval, input_data.jsonl: 541 prompts, 25 instruction types).

Protocol (open-instruct eval/ifeval/run_eval.py, adapted from the official evaluation_main.py): 0-shot, the
prompt as the user turn, greedy decoding, up to 2048 new tokens. Each instruction is checked strictly on the
response, and loosely on eight variants of it (the response; with its first line, last line or both removed;
and each of those with every '*' deleted): loose = any variant passes. An empty (whitespace-only) variant fails.
Reported: prompt-level accuracy (all instructions of a prompt followed) and instruction-level accuracy, strict
and loose; the paper's headline is loose prompt-level accuracy (`loose_prompt_acc`). Checker semantics and the
documented deviations (no nltk / langdetect) are in nanopref/ifeval_checks.py and nanopref/ifeval_lang.py
(`check` is shared with the world's scorers).

`check(response, instruction_id_list, kwargs, prompt)` is a plain function and can serve as an RL reward.

--responses rows: {"key": <the prompt's key in input_data.jsonl>, "output": str} ("prompt" is accepted instead
of "key", matching open-instruct's prompt -> response mapping).
"""
import re

from nanopref.evals import as_int, as_str, data_file, mean, pick_examples, read_rows, result, stratified
from nanopref.ifeval_checks import CHECKERS, check, loose_variants  # noqa: F401 (loose_variants: for callers)


def load():
    path = data_file("ifeval", "input_data.jsonl")
    rows = read_rows(path, required=("key", "prompt", "instruction_id_list", "kwargs"))
    for i, r in enumerate(rows):
        ids, kwargs = r["instruction_id_list"], r["kwargs"]
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(kwargs) != len(ids) or \
                not all(isinstance(k, dict) for k in kwargs):
            raise ValueError(f"{rows.where(i)}: fields 'instruction_id_list' and 'kwargs': expected lists of equal "
                             "length (instruction ids, and a dict of arguments for each)")
        unknown = [x for x in ids if x not in CHECKERS]
        if unknown:
            raise ValueError(f"{rows.where(i)}: field 'instruction_id_list': unknown instruction(s) {unknown}")
        for iid, kw in zip(ids, kwargs):  # arguments of the wrong name or type fail here, not mid-evaluation
            try:
                CHECKERS[iid]("probe", **{k: v for k, v in kw.items() if v is not None})
            except (TypeError, ValueError, AttributeError, re.error) as e:
                raise ValueError(f"{rows.where(i)}: field 'kwargs' of {iid}: {e}") from None
    return rows


def _score(examples, outputs, config):
    records = []
    for ex, out in zip(examples, outputs):
        res = check(out, ex["instruction_id_list"], ex["kwargs"], ex["prompt"])
        records.append({"key": ex["key"], "instruction_id_list": ex["instruction_id_list"], "output": out, **res})
    metrics = {}
    for mode in ("strict", "loose"):
        metrics[f"{mode}_prompt_acc"] = mean(r[f"{mode}_all"] for r in records)
        metrics[f"{mode}_instruction_acc"] = mean(x for r in records for x in r[mode])
        per_type = {}
        for r in records:
            for iid, ok in zip(r["instruction_id_list"], r[mode]):
                per_type.setdefault(iid, []).append(ok)
        metrics.update({f"{mode}_instruction_acc/{k}": mean(v) for k, v in sorted(per_type.items())})
    metrics["n"] = len(records)
    return result("ifeval", metrics, records, **config)


def score_responses(rows):
    examples = load()
    keys = [("key", as_int, {ex["key"]: ex for ex in examples}),
            ("prompt", as_str, {ex["prompt"]: ex for ex in examples})]
    chosen, outputs = pick_examples(rows, "IFEval", keys, single=True)
    return _score(chosen, [o[0] for o in outputs], {})


def run(lm, limit=None, max_new_tokens=2048):
    examples = stratified(load(), limit)
    outputs = lm.generate([lm.chat(ex["prompt"]) for ex in examples], max_new_tokens, temperature=0.0)
    return _score(examples, [o[0] for o in outputs], dict(max_new_tokens=max_new_tokens))
