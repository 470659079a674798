"""Compare runs on the world's ground truth, per category, against a baseline run (paired by prompt).

    python dev/compare_world.py out/sft out/dpo out/dpo_hh      # run dirs with eval_world_samples.jsonl

Each cell is mean ± standard error over the 200 prompts of a category; the delta columns are the paired difference
to the first run (same prompts, greedy decoding), whose standard error is smaller than the unpaired one when the
two runs' scores are correlated. "overall" is the mean of the category means, as nanopref.evals.world reports it.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanopref.common import read_jsonl  # noqa: E402
from nanopref.evals.world import mean_se  # noqa: E402
from nanopref.world import CATEGORIES  # noqa: E402


def load(run):
    return {r["id"]: r for r in read_jsonl(os.path.join(run, "eval_world_samples.jsonl"))}


def main(runs):
    base = load(runs[0])
    print(f"{'run':32} " + " ".join(f"{c:>15}" for c in list(CATEGORIES) + ["overall"]))
    for run in runs:
        recs = load(run)
        cells, dcells, overall, dover = [], [], [], []
        for c in CATEGORIES:
            ids = [i for i, r in base.items() if r["category"] == c and i in recs]
            m, se = mean_se([recs[i]["score"] for i in ids])
            dm, dse = mean_se([recs[i]["score"] - base[i]["score"] for i in ids])
            cells.append(f"{m:6.3f} ± {se:.3f}")
            dcells.append(f"{dm:+6.3f} ± {dse:.3f}")
            overall.append((m, se))
            dover.append((dm, dse))
        om = sum(m for m, _ in overall) / len(overall)
        ose = math.sqrt(sum(se ** 2 for _, se in overall)) / len(overall)
        dm = sum(m for m, _ in dover) / len(dover)
        dse = math.sqrt(sum(se ** 2 for _, se in dover)) / len(dover)
        name = os.path.basename(run.rstrip("/"))
        print(f"{name:32} " + " ".join(f"{x:>15}" for x in cells + [f"{om:6.3f} ± {ose:.3f}"]))
        if run != runs[0]:
            print(f"{'  - ' + os.path.basename(runs[0].rstrip('/')):32} " +
                  " ".join(f"{x:>15}" for x in dcells + [f"{dm:+6.3f} ± {dse:.3f}"]))


if __name__ == "__main__":
    main(sys.argv[1:])
