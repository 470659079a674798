"""reproduce.py's statistics against naive loops and hand-computed numbers, the rule that tuning reads only
validation scores, the verdicts at 2 standard errors, and the SVG figures as well-formed XML."""
import json
import math
import os
import xml.etree.ElementTree as ET

import pytest

import reproduce
from nanopref.svg import bars, lines
from nanopref.world import CATEGORIES


def fake_run(root, name, split, scores_by_cat):
    """An evaluate.py-style result file with per-prompt records: {category: [score per prompt]}."""
    recs = [dict(id=f"{c}-{i}", category=c, score=s) for c, ss in scores_by_cat.items() for i, s in enumerate(ss)]
    os.makedirs(os.path.join(root, "runs", name), exist_ok=True)
    if split == "val":  # the trainer's own final evaluation
        with open(os.path.join(root, "runs", name, "eval_world_samples.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
    else:  # evaluate.py's
        with open(os.path.join(root, "runs", name, "eval_test.json"), "w") as f:
            json.dump({name: {"world": {"metrics": {}, "records": recs}}}, f)


def test_over_seeds_and_paired_match_naive_loops(tmp_path):
    root = str(tmp_path)
    a = [{c: [0.1 * ((i + j + k) % 4) for i in range(5)] for k, c in enumerate(CATEGORIES)} for j in range(3)]
    b = [{c: [0.2 * ((i * j + k) % 3) for i in range(5)] for k, c in enumerate(CATEGORIES)} for j in range(3)]
    for j in range(3):
        fake_run(root, f"a_s{j}", "test", a[j])
        fake_run(root, f"b_s{j}", "test", b[j])
    names_a, names_b = [f"a_s{j}" for j in range(3)], [f"b_s{j}" for j in range(3)]
    # over seeds: each seed's overall is the mean of its category means; then mean and sample-std / sqrt(3)
    overall = [sum(sum(a[j][c]) / 5 for c in CATEGORIES) / len(CATEGORIES) for j in range(3)]
    m = sum(overall) / 3
    se = math.sqrt(sum((x - m) ** 2 for x in overall) / 2 / 3)
    assert reproduce.over_seeds(root, names_a)["overall"] == pytest.approx((m, se))
    # paired: per prompt, the seed-averaged difference; per category mean and se; overall combines them
    got = reproduce.paired(root, names_a, names_b)
    cat = {}
    for c in CATEGORIES:
        d = [sum(a[j][c][i] - b[j][c][i] for j in range(3)) / 3 for i in range(5)]
        dm = sum(d) / 5
        cat[c] = (dm, math.sqrt(sum((x - dm) ** 2 for x in d) / 4 / 5))
        assert got[c] == pytest.approx(cat[c])
    assert got["overall"] == pytest.approx((sum(v[0] for v in cat.values()) / len(CATEGORIES),
                                            math.sqrt(sum(v[1] ** 2 for v in cat.values())) / len(CATEGORIES)))


def test_verdicts_at_two_standard_errors():
    assert reproduce.verdict(0.05, 0.02) == "reproduced"
    assert reproduce.verdict(0.03, 0.02) == "inconclusive"
    assert reproduce.verdict(-0.05, 0.02) == "reversed"
    assert reproduce.verdict(-0.05, 0.02, direction=-1) == "reproduced"


def test_tuning_reads_only_validation_scores(tmp_path, monkeypatch):
    """Every sweep point gets val and test results where test would pick another point; `choose` must pick by val
    and never open a test file (a read of split "test" fails the test)."""
    root = str(tmp_path)
    for algo, prefix in (("dpo", "dpo_uf_fine"), ("ppo", "ppo_uf_fine_tiny_general")):
        for k, hp in enumerate(reproduce.SWEEPS[algo]):
            name = f"{prefix}{reproduce.tag(hp)}_s0"
            fake_run(root, name, "val", {c: [0.1 * k] * 3 for c in CATEGORIES})  # the last point is best on val
            fake_run(root, name, "test", {c: [1.0 - 0.1 * k] * 3 for c in CATEGORIES})  # the first, on test
    real = reproduce.records

    def only_val(root_, name, split="test"):
        assert split == "val", f"tuning read {name}'s {split} scores"
        return real(root_, name, split)

    monkeypatch.setattr(reproduce, "records", only_val)
    tuned, table = reproduce.choose(root)
    assert tuned == {algo: reproduce.SWEEPS[algo][-1] for algo in ("dpo", "ppo")}
    assert len(table["dpo"]) == len(reproduce.SWEEPS["dpo"])


def test_plan_is_ordered_and_names_are_unique():
    runs = reproduce.plan("full", 3, "out/x", reproduce.TUNED)
    order = list(runs)
    for r in runs.values():
        assert all(order.index(n) < order.index(r.name) for n in r.needs), r.name
    sweeps = reproduce.plan("full", 3, "out/x", reproduce.TUNED, sweeps_only=True)
    assert sum(n.startswith("dpo_") for n in sweeps) == len(reproduce.SWEEPS["dpo"])  # equal budgets
    assert sum(n.startswith("ppo_") for n in sweeps) == len(reproduce.SWEEPS["ppo"])


def test_svg_figures_are_well_formed():
    svg = bars("t <1>", ["math", "chat"], {"a": [(0.5, 0.1), (0.2, 0.05)], "b": [None, (0.4, 0.02)]}, "score")
    root = ET.fromstring(svg)
    rects = [e for e in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert len(rects) == 1 + 3 + 2  # background, three bars (one left out), two legend swatches
    assert "t &lt;1&gt;" in svg
    root = ET.fromstring(lines("kl", {"rm": [(0, 1.0), (1, 2.0), (2, 2.5)]}, "KL", "score"))
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 3


@pytest.mark.slow
def test_smoke_tier_end_to_end(tmp_path):
    """Every kind of run for two steps, evaluated, then REPORT.md with the headline table, a verdict and the figures;
    a second invocation finds every run finished and only rewrites the report."""
    import subprocess
    import sys
    root = tmp_path / "smoke"
    cmd = [sys.executable, "reproduce.py", "--tier=smoke", f"--name={root}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=reproduce.ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "ETA" in p.stdout
    report = open(root / "REPORT.md").read()
    assert "## DPO vs PPO on the same data" in report and "| PPO (RM on uf_fine) |" in report
    assert any(v in report for v in ("**reproduced**", "**reversed**", "**inconclusive**"))
    for fig in ("dpo_vs_ppo.svg", "ppo_rm_vs_kl.svg", "ppo_truth_vs_kl.svg"):
        ET.parse(root / fig)
    p = subprocess.run(cmd, cwd=reproduce.ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and "4 runs, 4 already finished" in p.stdout, p.stdout[-3000:]
