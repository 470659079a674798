"""IFEval (google-research instruction_following_eval, input_data.jsonl: 541 prompts, 25 instruction types).

Protocol (open-instruct eval/ifeval/run_eval.py, adapted from the official evaluation_main.py): 0-shot, the
prompt as the user turn, greedy decoding, up to 2048 new tokens. Each instruction is checked strictly on the
response, and loosely on eight variants of it (the response; with its first line, last line or both removed;
and each of those with every '*' deleted): loose = any variant passes. An empty (whitespace-only) variant fails.
Reported: prompt-level accuracy (all instructions of a prompt followed) and instruction-level accuracy, strict
and loose; the paper's headline is loose prompt-level accuracy (`loose_prompt_acc`). Checker semantics and the
documented deviations (no nltk / langdetect) are in nanopref/ifeval_checks.py, with `check` (shared with the
world's scorers).

`check(response, instruction_id_list, kwargs, prompt)` is a plain function and can serve as an RL reward.

--responses rows: {"key": <the prompt's key in input_data.jsonl>, "output": str} ("prompt" is accepted instead
of "key", matching open-instruct's prompt -> response mapping).
"""
from nanopref.common import read_jsonl
from nanopref.evals import data_file, mean, outputs_of, result
from nanopref.ifeval_checks import CHECKERS, check, loose_variants  # noqa: F401 (check: the RL reward)


def load():
    path = data_file("ifeval", "input_data.jsonl")
    rows = read_jsonl(path, required=("key", "prompt", "instruction_id_list", "kwargs"))
    for i, r in enumerate(rows, 1):
        unknown = [x for x in r["instruction_id_list"] if x not in CHECKERS]
        if unknown or len(r["kwargs"]) != len(r["instruction_id_list"]):
            raise ValueError(f"{path}:{i}: unknown instruction(s) {unknown} or kwargs/instructions length mismatch")
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
    by_key, by_prompt = {ex["key"]: ex for ex in examples}, {ex["prompt"]: ex for ex in examples}
    chosen = []
    for r in rows:
        ex = by_key.get(int(r["key"])) if "key" in r else by_prompt.get(r.get("prompt"))
        if ex is None:
            raise ValueError(f"responses: row matches no IFEval prompt (key={r.get('key')!r})")
        chosen.append(ex)
    return _score(chosen, [outputs_of(r)[0] for r in rows], {})


def run(lm, limit=None, max_new_tokens=2048):
    examples = load()[:limit]
    outputs = lm.generate([lm.chat(ex["prompt"]) for ex in examples], max_new_tokens, temperature=0.0)
    return _score(examples, [o[0] for o in outputs], dict(max_new_tokens=max_new_tokens))
