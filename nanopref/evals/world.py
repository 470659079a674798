"""The embedded world's own categories: greedy responses to the held-out prompts, scored by the world's
ground-truth scorers, mean and standard error per category. Trainers and evaluate.py both call `run`, so their
numbers are the same by construction (and a test checks it).

Two splits: "test" (eval_<category>.jsonl, 200 prompts per category), which every reported table uses, and "val"
(eval_val.jsonl), on which hyperparameters and stopping points are chosen. Their prompts and ids are disjoint, and
neither appears in any training data (nanopref/world/build.py)."""
import math

from nanopref.world import CATEGORIES, analyse, score


def mean_se(xs):
    """Mean and standard error of the mean (sample std / sqrt(n)); se 0 for fewer than 2 values."""
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)


SPLITS = {"test": "eval", "val": "val"}  # split -> load_world's key


def _split(world, split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    if world[SPLITS[split]] is None:
        raise ValueError(f"{world['dir']} has no eval_val.jsonl: a world built before the validation split")
    return world[SPLITS[split]]


def run(lm, world, categories=CATEGORIES, limit=None, max_new_tokens=96, temperature=0.0, desc=None, split="test"):
    """-> {"category": {"score", "stderr", "n"}, ..., "overall": {...}}, records. `world` from load_world."""
    kb, metrics, records, prompts = world["kb"], {}, [], _split(world, split)
    rows = [ex for c in categories for ex in prompts[c][:limit]]
    outs = lm.generate([lm.chat(ex["prompt"]) for ex in rows], max_new_tokens, temperature=temperature, desc=desc)
    for ex, (out,) in zip(rows, outs):
        records.append(dict(id=ex["id"], category=ex["category"], subtype=ex["subtype"], prompt=ex["prompt"],
                            output=out, score=score(ex, out, kb)))
    for c in categories:
        s = [r["score"] for r in records if r["category"] == c]
        m, se = mean_se(s)
        metrics[c] = dict(score=m, stderr=se, n=len(s))
    cat_means = [metrics[c]["score"] for c in categories]
    # the overall score is the mean of the category means; its se combines theirs (independent categories)
    metrics["overall"] = dict(score=sum(cat_means) / len(cat_means),
                              stderr=math.sqrt(sum(metrics[c]["stderr"] ** 2 for c in categories)) / len(categories),
                              n=len(records))
    return metrics, records


def score_responses(rows, world, split="test"):
    """--responses path: rows {"id", "output"} (ids of the world's `split` prompts, each once) -> metrics as `run`
    gives."""
    from nanopref.evals import as_str, pick_examples
    by_id = {ex["id"]: ex for c in CATEGORIES for ex in _split(world, split)[c]}
    examples, outputs = pick_examples(rows, f"world {split}", [("id", as_str, by_id)], single=True)
    per = {}
    for ex, (out,) in zip(examples, outputs):
        per.setdefault(ex["category"], []).append(score(ex, out, world["kb"]))
    metrics = {}
    for c, s in per.items():
        m, se = mean_se(s)
        metrics[c] = dict(score=m, stderr=se, n=len(s))
    return metrics


def format_table(metrics, title="world"):
    lines = [f"{title:>10} | " + " | ".join(f"{c:>13}" for c in metrics)]
    lines.append(f"{'':>10} | " + " | ".join(f"{m['score']:6.3f} ± {m['stderr']:.3f}" for m in metrics.values()))
    return "\n".join(lines)


def details(ex, output, kb):
    """Why a response scored what it did (for sample tables and debugging)."""
    return analyse(ex, output, kb)
