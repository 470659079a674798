"""BIG-Bench Hard (suzgunmirac/BIG-Bench-Hard: 27 tasks, 6511 examples; 3-shot CoT prompts in cot-prompts/).

Protocol (open-instruct eval/bbh/run_eval.py, mid-2024): the task's official CoT prompt (the .txt file minus its
first two lines, the canary and a "-----" rule), then "\\n\\nQ: " + input; the assistant turn starts with "A:";
40 random examples per task in the paper's runs; greedy decoding, 512 new tokens, stop at "\\n\\n".
Scoring: the prediction is the text between the first "So the answer is " and the next "." (else the first
paragraph of the output), compared with `target` by exact match ignoring case and punctuation (HF exact_match
with ignore_case, ignore_punctuation); the headline is the average over tasks of per-task accuracy.

Deviation: open-instruct samples the 40 examples with one global RNG (seed 42) over tasks in glob() order, which
depends on the file system; here tasks are visited in sorted order with one random.Random(seed) stream.

--responses rows: {"id": "<task>/<index in the task's examples>", "output": str} (or "outputs").
"""
import os
import random
import re

from nanopref.evals import (as_str, data_file, em_normalize, mean, pick_examples, read_json, result, stratified,
                            text_lines)


def load_tasks():
    """{task: [{"input", "target"}]} from bbh/bbh/*.json."""
    d = data_file("bbh", "bbh")
    tasks = {}
    for name in sorted(f[:-5] for f in os.listdir(d) if f.endswith(".json")):
        path = os.path.join(d, name + ".json")
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
            raise ValueError(f"{path}: expected an object with an 'examples' list")
        for i, ex in enumerate(data["examples"]):
            if not (isinstance(ex, dict) and isinstance(ex.get("input"), str) and isinstance(ex.get("target"), str)):
                raise ValueError(f"{path}: example {i}: expected an object with strings 'input' and 'target'")
        tasks[name] = data["examples"]
    return tasks


def load_prompts():
    """{task: 3-shot CoT prompt text} from bbh/cot-prompts/*.txt (first two lines dropped, as open-instruct)."""
    d = data_file("bbh", "cot-prompts")
    prompts = {}
    for name in sorted(f[:-4] for f in os.listdir(d) if f.endswith(".txt")):
        prompts[name] = "".join(line for i, line in text_lines(os.path.join(d, name + ".txt")) if i > 2)
    return prompts


def build_prompt(task_prompt, question):
    """(user, assistant_prefix) for lm.chat."""
    return task_prompt.strip() + "\n\nQ: " + question, "A:"


def extract_answer(output):
    m = re.search(r"So the answer is (.*?)\.", output)
    if m:
        return m.group(1).strip()
    return output.strip().split("\n\n")[0].strip()


def is_correct(output, target):
    return em_normalize(extract_answer(output)) == em_normalize(target)


def select(tasks, per_task=40, seed=42):
    """[(task, index, example)] with `per_task` random examples per task (all if None)."""
    rng, out = random.Random(seed), []
    for name, exs in tasks.items():
        idx = list(range(len(exs)))
        if per_task is not None and per_task < len(idx):
            idx = rng.sample(idx, per_task)
        out += [(name, i, exs[i]) for i in idx]
    return out


def _score(items, outputs, config):
    records, by_task = [], {}
    for (name, i, ex), outs in zip(items, outputs):
        correct = [is_correct(o, ex["target"]) for o in outs]
        records.append({"id": f"{name}/{i}", "target": ex["target"], "outputs": outs,
                        "predictions": [extract_answer(o) for o in outs], "correct": correct})
        by_task.setdefault(name, []).append(mean(correct))
    metrics = {"average_exact_match": mean(mean(v) for v in by_task.values()), "n": len(records)}
    metrics.update({f"exact_match/{k}": mean(v) for k, v in by_task.items()})
    return result("bbh", metrics, records, **config)


def score_responses(rows):
    table = {f"{name}/{i}": (name, i, ex) for name, exs in load_tasks().items() for i, ex in enumerate(exs)}
    items, outputs = pick_examples(rows, "BBH", [("id", as_str, table)])
    return _score(items, outputs, {})


def run(lm, limit=None, per_task=40, seed=42, max_new_tokens=512, stop=("\n\n",)):
    tasks, prompts = load_tasks(), load_prompts()
    if set(tasks) != set(prompts):
        raise ValueError(f"BBH tasks and cot-prompts differ: {sorted(set(tasks) ^ set(prompts))}")
    items = stratified(select(tasks, per_task, seed), limit, key=lambda item: item[0])  # limit: over all tasks
    texts = [lm.chat(*build_prompt(prompts[name], ex["input"])) for name, _, ex in items]
    outputs = lm.generate(texts, max_new_tokens, temperature=0.0, stop=list(stop) if stop else None)
    return _score(items, outputs, dict(per_task=per_task, seed=seed, max_new_tokens=max_new_tokens, stop=stop))
