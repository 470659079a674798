"""HumanEval+ and MBPP+ (evalplus releases HumanEvalPlus v0.1.10, 164 tasks; MbppPlus v0.2.0, 378 tasks).

Protocol (open-instruct eval/codex_humaneval and eval/mbpp, mid-2024): n = 20 samples per task at
temperature 0.1 for pass@1 and n = 20 at temperature 0.8 for pass@10, top_p 0.95, at most 512 new tokens,
unbiased estimator pass@k = 1 - C(n-c, k) / C(n, k). Chat prompts:
  HumanEval: user "Complete the following python function.\\n\\n\\n" + prompt, assistant prefix
             "Here is the function:\\n\\n```python\\n" + prompt, so the model continues the function body; stop at
             "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint" and "\\n```"; program = prompt + completion.
  MBPP+:     user "Complete the following python function.\\n\\n\\n" + prompt + the canonical solution's text up
             to its first ':' (the signature), assistant prefix "Here is the completed function:\\n\\n\\n```python\\n";
             stop at "```"; program = completion.
Scoring (evalplus, see code_exec.py): "base" = all base_input outputs match the canonical solution's, "plus" =
base and all plus_input outputs match; "original" = the dataset's own tests pass (HumanEval `test` +
`check(entry_point)`, MBPP+ `assertion`). The headline numbers are plus_pass@1 / plus_pass@10.

Deviations: for HumanEval open-instruct's user turn is HumanEvalPack's natural-language instruction (its
setup downloads that file; it is not among the shared data), with the assistant prefix above; here the user
turn is open-instruct's fallback instruction + the code prompt instead. The `contract` field is not executed
(evalplus' grader does not run it either; the inputs already satisfy it). MBPP+ `assertion` tests get
"import math" prepended (39 of them call math.isclose without importing it). A base model gets the same
chat-style text through `lm.chat`; open-instruct would give it the bare code prompt.

--responses rows: {"task_id": "HumanEval/0" | "Mbpp/2", "outputs": [completion, ...]} (or "output"), with
completions as generated after the prompt above; pass@k is reported for every k <= n in (1, 10).
"""
import hashlib

import numpy as np

from nanopref.common import jsonl_rows
from nanopref.evals import Rows, as_str, check_fields, data_file, mean, pick_examples, result, stratified
from nanopref.evals.code_exec import check_programs, expected_outputs

FILES = {"humaneval": ("evalplus", "HumanEvalPlus-v0.1.10.jsonl.gz"),
         "mbpp": ("evalplus", "MbppPlus-v0.2.0.jsonl.gz")}
STOP = {"humaneval": ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```"], "mbpp": ["```"]}
INSTRUCTION = "Complete the following python function.\n\n\n"

# evalplus/data/mbpp.py mbpp_deserialize_inputs: JSON has no tuples, sets or complex numbers, so these tasks'
# inputs are turned back into the types the reference solutions were written for.
_MBPP_TYPES = {
    "args_tuples": [2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726,
                    740, 744, 809],
    "args_lists_of_tuples": [63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780],
    "first_list_of_tuples": [75, 413, 444, 753],
    "second_tuple": [106, 750],
    "first_tuple": [250, 405, 446, 617, 720, 763, 808],
    "args_tuples_of_tuples": [259, 401, 445],
    "all_tuples": [580, 615, 791],
}


def _mbpp_types(num, inputs):
    rule = next((r for r, ids in _MBPP_TYPES.items() if num in ids), None)
    tup = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    deep = lambda v: tuple(deep(x) for x in v) if isinstance(v, list) else v  # noqa: E731
    if rule == "args_tuples":
        return [[tuple(a) for a in inp] for inp in inputs]
    if rule == "args_lists_of_tuples":
        return [[[tuple(x) for x in a] for a in inp] for inp in inputs]
    if rule == "first_list_of_tuples":
        return [[[tuple(x) for x in inp[0]], inp[1]] for inp in inputs]
    if rule == "second_tuple":
        return [[inp[0], tuple(inp[1])] for inp in inputs]
    if rule == "first_tuple":
        return [[tuple(inp[0])] + inp[1:] for inp in inputs]
    if rule == "args_tuples_of_tuples":
        return [[tuple(tuple(x) for x in a) for a in inp] for inp in inputs]
    if rule == "all_tuples":
        return [deep(inp) for inp in inputs]
    if num == 115:  # a list of sets; evalplus turns empty lists into {} (an empty dict), kept as is
        return [[[set(x) if isinstance(x, list) and x else {} for x in inp[0]]] for inp in inputs]
    if num == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if num == 252:
        return [[complex(inp[0])] for inp in inputs]
    if num == 278:
        return [[tuple(tup(x) for x in inp[0])] for inp in inputs]
    if num == 307:
        return [[tuple(inp[0]), inp[1], inp[2]] for inp in inputs]
    if num == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    return inputs


def load(dataset="humaneval"):
    """Tasks of HumanEval+ ("humaneval") or MBPP+ ("mbpp"), inputs restored to their Python types."""
    path = data_file(*FILES[dataset])
    tasks = Rows(path)  # check_fields names file:line
    for i, t, line in jsonl_rows(path, raw=True):
        t["_digest"] = hashlib.sha256(line.encode()).hexdigest()
        tasks.append(t)
        tasks.lines.append(i)
    required = ["task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol"]
    check_fields(tasks, required + (["test"] if dataset == "humaneval" else ["assertion"]), path)
    for t in tasks:
        t["_dataset"] = dataset
        t["plus_input"] = t["plus_input"] or []  # Mbpp/793 stores {} for "no plus inputs"
        if dataset == "mbpp":
            num = int(t["task_id"].split("/")[1])
            t["base_input"], t["plus_input"] = _mbpp_types(num, t["base_input"]), _mbpp_types(num, t["plus_input"])
    return tasks


def build_prompt(task):
    """(user, assistant_prefix) for lm.chat, as open-instruct builds them."""
    if task["_dataset"] == "humaneval":
        return INSTRUCTION + task["prompt"], "Here is the function:\n\n```python\n" + task["prompt"]
    signature = task["canonical_solution"].split(":")[0]
    return INSTRUCTION + task["prompt"] + signature, "Here is the completed function:\n\n\n```python\n"


def solution_program(task, completion):
    """The program that is run: HumanEval prompt + completion; MBPP+ the completion alone."""
    return task["prompt"] + completion if task["_dataset"] == "humaneval" else completion


def original_tests(task):
    if task["_dataset"] == "humaneval":
        return task["test"] + f"\ncheck({task['entry_point']})\n"
    return "import math\n" + task["assertion"]  # 39 MBPP+ assertions call math.isclose without importing math


def pass_at_k(n, c, k):
    """Unbiased pass@k = 1 - C(n-c, k)/C(n, k), as the product 1 - prod_{i=n-c+1..n} (1 - k/i) (no big binomials)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def check_completions(tasks, completions, workers=None, expected=None):
    """completions[i] = list of completions for tasks[i]. Returns per-task lists of check dicts."""
    unique = list({t["task_id"]: t for t in tasks}.values())
    expected = expected or expected_outputs(unique, workers, cache_name=f"evalplus_{tasks[0]['_dataset']}")
    items = [(t, solution_program(t, c), original_tests(t)) for t, cs in zip(tasks, completions) for c in cs]
    flat = iter(check_programs(items, expected, workers=workers))
    return [[next(flat) for _ in cs] for cs in completions]


def _metrics(checks, ks, prefix=""):
    out = {}
    for k in ks:
        for kind in ("plus", "base", "original"):
            scores = [pass_at_k(len(cs), sum(c[kind] for c in cs), k) for cs in checks if len(cs) >= k]
            if scores:
                out[f"{prefix}{kind}_pass@{k}"] = mean(scores)
    return out


def score_responses(rows, dataset="humaneval", workers=None, ks=(1, 10), expected=None):
    by_id = {t["task_id"]: t for t in load(dataset)}
    tasks, completions = pick_examples(rows, dataset, [("task_id", as_str, by_id)])
    checks = check_completions(tasks, completions, workers, expected)
    records = [{"task_id": t["task_id"], "outputs": cs, "checks": ch} for t, cs, ch in zip(tasks, completions, checks)]
    return result(f"{dataset}_plus", _metrics(checks, ks), records, dataset=dataset, ks=list(ks))


def run(lm, dataset="humaneval", limit=None, n=20, settings=((1, 0.1), (10, 0.8)), top_p=0.95,
        max_new_tokens=512, workers=None, task_ids=None, cache=True):
    """settings: (k, temperature) pairs; each draws n samples per task and reports pass@k at that temperature.
    `task_ids` restricts the run to those tasks (then `limit`: a seeded sample of them); `cache` keeps the canonical
    solutions' outputs under OUT_DIR/cache (computing them takes about a minute on 2 cores for a whole dataset)."""
    tasks = stratified([t for t in load(dataset) if task_ids is None or t["task_id"] in task_ids], limit)
    expected = expected_outputs(tasks, workers, cache_name=f"evalplus_{dataset}" if cache else None)
    prompts = [lm.chat(*build_prompt(t)) for t in tasks]
    metrics, records = {}, [{"task_id": t["task_id"]} for t in tasks]
    for k, temperature in settings:
        outs = lm.generate(prompts, max_new_tokens, temperature=temperature, top_p=top_p, n=n, stop=STOP[dataset])
        checks = check_completions(tasks, outs, workers, expected)
        metrics.update(_metrics(checks, [k]))
        for rec, o, ch in zip(records, outs, checks):
            rec[f"T{temperature}"] = {"outputs": o, "checks": ch}
    return result(f"{dataset}_plus", metrics, records, dataset=dataset, n=n, settings=[list(s) for s in settings],
                  top_p=top_p, max_new_tokens=max_new_tokens)
