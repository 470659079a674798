"""A run's per-prompt results on the world's prompts and their statistics, for reproduce.py: the records of a
split, per-category scores, mean ± s.e. over seeds or over prompts, paired per-prompt differences, verdicts at two
standard errors, markdown tables, and the reward model's view of PPO's own rollouts."""
import os

from nanopref.common import read_json, read_jsonl
from nanopref.evals.world import mean_se
from nanopref.world import CATEGORIES


def records(root, name, split="test"):
    """{prompt id: (category, score)} of a run's evaluation on a split: val from the trainer's own final
    evaluation (eval_world_samples.jsonl), test from evaluate.py's (eval_test.json)."""
    run = os.path.join(root, "runs", name)
    if split == "val":
        rows = read_jsonl(os.path.join(run, "eval_world_samples.jsonl"))
    else:
        (world,) = [v["world"] for v in read_json(os.path.join(run, "eval_test.json")).values()]
        rows = world["records"]
    return {r["id"]: (r["category"], r["score"]) for r in rows}


def scores(recs):
    """Per-category means and the overall (mean of category means): {category: mean, "overall": mean}."""
    out = {c: sum(s for k, s in recs.values() if k == c) / max(1, sum(k == c for k, _ in recs.values()))
           for c in CATEGORIES}
    return {**out, "overall": sum(out.values()) / len(CATEGORIES)}


def over_seeds(root, names, split="test"):
    """Mean ± s.e. of each category and overall: over seeds when there are several; with one seed, over its
    prompts (the overall's s.e. combining the categories' as the world's evaluation does). {column: (mean, se)}"""
    if len(names) == 1:
        recs = records(root, names[0], split)
        out = {c: mean_se([s for k, s in recs.values() if k == c]) for c in CATEGORIES}
        return {**out, "overall": (sum(m for m, _ in out.values()) / len(CATEGORIES),
                                   sum(se ** 2 for _, se in out.values()) ** 0.5 / len(CATEGORIES))}
    per = [scores(records(root, n, split)) for n in names]
    return {c: mean_se([p[c] for p in per]) for c in per[0]}


def paired(root, names, base_names, split="test"):
    """Paired per-prompt difference (names - base_names, seeds matched in order, then averaged per prompt):
    {column: (mean, se)}; overall combines the category se's as the world's evaluation does."""
    runs = [records(root, n, split) for n in names]
    bases = [records(root, n, split) for n in base_names] * (len(names) if len(base_names) == 1 else 1)
    out = {}
    for c in CATEGORIES:
        ids = [i for i, (k, _) in runs[0].items() if k == c]
        out[c] = mean_se([sum(r[i][1] - b[i][1] for r, b in zip(runs, bases)) / len(runs) for i in ids])
    out["overall"] = (sum(out[c][0] for c in CATEGORIES) / len(CATEGORIES),
                      sum(out[c][1] ** 2 for c in CATEGORIES) ** 0.5 / len(CATEGORIES))
    return out


def verdict(diff, se, direction=1):
    """The paper's finding, direction +1 (diff > 0 expected) or -1: reproduced / reversed / inconclusive at 2 se."""
    if diff * direction > 2 * se:
        return "reproduced"
    return "reversed" if diff * direction < -2 * se else "inconclusive"


def table(rows, columns=tuple(CATEGORIES) + ("overall",)):
    """Markdown table: rows {label: {column: (mean, se)} or str}."""
    out = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in rows.items():
        out.append(f"| {label} | " + " | ".join(f"{row[c][0]:.3f} ± {row[c][1]:.3f}" if c in row else "-"
                                                for c in columns) + " |")
    return "\n".join(out)


def rollout_stats(root, name):
    """From a PPO run's rollouts.jsonl, per step and category: the RM's mean score, the ground truth's, and the RM's
    pairwise accuracy on its own rollouts (pairs of one step and category whose ground truths differ: does the RM
    rank them as the ground truth does?). -> {step: {category: (rm, truth, accuracy, pairs)}}"""
    out = {}
    for row in read_jsonl(os.path.join(root, "runs", name, "rollouts.jsonl")):
        out[row["step"]] = {}
        for c in CATEGORIES:
            mine = [(r["score"], r["truth"]) for r in row["rollouts"] if r.get("category") == c]
            pairs = [(a, b) for i, a in enumerate(mine) for b in mine[i + 1:] if a[1] != b[1]]
            right = sum((a[0] - b[0]) * (a[1] - b[1]) > 0 for a, b in pairs)
            out[row["step"]][c] = (sum(x for x, _ in mine) / max(1, len(mine)),
                                   sum(t for _, t in mine) / max(1, len(mine)), right / max(1, len(pairs)), len(pairs))
    return out
