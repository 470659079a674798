"""reproduce.py and nanopref/results.py: the statistics against naive loops and hand counts, the rule that tuning
reads only validation scores, the verdicts at 2 standard errors, the scheduler, the full report on fake runs, and the
SVG figures as well-formed XML."""
import json
import math
import os
import xml.etree.ElementTree as ET

import pytest

import reproduce
from nanopref import results
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
    assert results.over_seeds(root, names_a)["overall"] == pytest.approx((m, se))
    # paired: per prompt, the seed-averaged difference; per category mean and se; overall combines them
    got = results.paired(root, names_a, names_b)
    cat = {}
    for c in CATEGORIES:
        d = [sum(a[j][c][i] - b[j][c][i] for j in range(3)) / 3 for i in range(5)]
        dm = sum(d) / 5
        cat[c] = (dm, math.sqrt(sum((x - dm) ** 2 for x in d) / 4 / 5))
        assert got[c] == pytest.approx(cat[c])
    assert got["overall"] == pytest.approx((sum(v[0] for v in cat.values()) / len(CATEGORIES),
                                            math.sqrt(sum(v[1] ** 2 for v in cat.values())) / len(CATEGORIES)))


def test_verdicts_at_two_standard_errors():
    assert results.verdict(0.05, 0.02) == "reproduced"
    assert results.verdict(0.03, 0.02) == "inconclusive"
    assert results.verdict(-0.05, 0.02) == "reversed"
    assert results.verdict(-0.05, 0.02, direction=-1) == "reproduced"


def test_tuning_reads_only_validation_scores(tmp_path, monkeypatch):
    """Every sweep point gets val and test results where test would pick another point; `choose` must pick by val
    and never open a test file (a read of split "test" fails the test)."""
    root = str(tmp_path)
    for algo, prefix in (("dpo", "dpo_uf_fine"), ("ppo", "ppo_uf_fine_tiny_general")):
        for k, hp in enumerate(reproduce.SWEEPS[algo]):
            name = f"{prefix}{reproduce.tag(hp)}_s0"
            fake_run(root, name, "val", {c: [0.1 * k] * 3 for c in CATEGORIES})  # the last point is best on val
            fake_run(root, name, "test", {c: [1.0 - 0.1 * k] * 3 for c in CATEGORIES})  # the first, on test
    real = results.records

    def only_val(root_, name, split="test"):
        assert split == "val", f"tuning read {name}'s {split} scores"
        return real(root_, name, split)

    monkeypatch.setattr(results, "records", only_val)
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


def test_rollout_stats_against_a_hand_count(tmp_path):
    """Step 0, math: scores (1, 2, 3) with truths (0, 1, 0): pairs whose truths differ are (1,2) right and (2,3)
    wrong -> accuracy 1/2; the RM's mean 2, the truth's 1/3; a category with no rollouts has no pairs."""
    os.makedirs(tmp_path / "runs" / "p")
    rolls = [dict(score=x, truth=t, category="math") for x, t in ((1.0, 0.0), (2.0, 1.0), (3.0, 0.0))]
    with open(tmp_path / "runs" / "p" / "rollouts.jsonl", "w") as f:
        f.write(json.dumps(dict(step=0, rollouts=rolls)) + "\n")
    st = results.rollout_stats(str(tmp_path), "p")
    assert st[0]["math"] == pytest.approx((2.0, 1 / 3, 0.5, 2))
    assert st[0]["chat"][3] == 0


def fake_full_tier(root):
    """Every run of the full tier as result files: per-prompt test records (and val for the sweeps), PPO's metrics
    and rollouts, each RM's accuracy and Best-of-16. -> the sweeps' val table from `choose`."""
    sweeps = reproduce.plan("full", 3, root, reproduce.TUNED, sweeps_only=True)
    for k, r in enumerate(sweeps.values()):
        if r.evaluated:
            fake_run(root, r.name, "val", {c: [0.1 * (k % 4), 0.5] for c in CATEGORIES})
    tuned, sweep = reproduce.choose(root)
    runs = {**sweeps, **reproduce.plan("full", 3, root, tuned)}
    for k, r in enumerate(runs.values()):
        out = os.path.join(root, "runs", r.name)
        if r.evaluated:
            fake_run(root, r.name, "test", {c: [(k * 7 + i) % 5 / 4 for i in range(6)] for c in CATEGORIES})
        if r.script == "train_ppo.py":
            with open(os.path.join(out, "metrics.jsonl"), "w") as f:
                f.writelines(json.dumps({"step": s, "objective/kl": s, "objective/rm_scores": s / 2,
                                         "world/rollout_truth": 0.4}) + "\n" for s in range(4))
            with open(os.path.join(out, "rollouts.jsonl"), "w") as f:
                f.writelines(json.dumps(dict(step=s, rollouts=[dict(score=i, truth=i % 2, category=c)
                                                               for c in CATEGORIES for i in range(3)])) + "\n"
                             for s in range(4))
        if r.script == "train_rm.py":
            os.makedirs(out, exist_ok=True)
            m = {c: {k: dict(score=0.5, stderr=0.01) for k in ("greedy", "random", "rm", "oracle", "best",
                                                                "rm-greedy", "rm-random")}
                 for c in CATEGORIES + ["overall"]}
            with open(os.path.join(out, "eval_rm.json"), "w") as f:
                json.dump(dict(accuracy={"all": dict(acc=0.8, stderr=0.01)}, best_of_n=dict(n=16, metrics=m)), f)
    return tuned, sweep


def test_full_report_from_fake_runs(tmp_path):
    """The full tier's report reads every study's runs and writes each table, a verdict per finding and figures
    that parse."""
    root = str(tmp_path)
    tuned, sweep = fake_full_tier(root)
    findings = reproduce.report(root, "full", 3, tuned, sweep)
    assert len(findings) == 7 and all(v in ("reproduced", "reversed", "inconclusive") for *_, v in findings)
    text = open(tmp_path / "REPORT.md").read()
    for title in ("Table 2", "Table 1", "Table 3", "Figure 3", "study 5", "Tuning", "Best-of-16"):
        assert title in text, title
    for fig in ("dpo_vs_ppo.svg", "dpo_data.svg", "ppo_truth_by_category.svg", "ppo_rm_vs_kl.svg", "ppo_by_rm.svg",
                "ppo_prompts.svg"):
        ET.parse(tmp_path / fig)


def test_execute_runs_each_after_its_needs_and_stops_on_a_failure(tmp_path, monkeypatch):
    """Two at a time: b needs a, so it starts after a ends; c runs beside a. A failed run lets the running ones end,
    starts nothing new and exits naming it."""
    import threading
    import time
    events, lock = [], threading.Lock()

    def fake(run, root, tier):
        with lock:
            events.append(("start", run.name))
        time.sleep(0.05)
        with lock:
            events.append(("end", run.name))
        return "x failed: see its log" if run.name == "x" else None

    monkeypatch.setattr(reproduce, "run_one", fake)
    monkeypatch.setattr(reproduce, "done", lambda run, root: False)
    R = reproduce.Run
    runs = {"a": R("a", "train_sft.py", {}), "b": R("b", "train_dpo.py", {}, ["a"]), "c": R("c", "train_rm.py", {})}
    reproduce.execute(runs, str(tmp_path), "quick", jobs=2)
    assert events.index(("end", "a")) < events.index(("start", "b"))
    assert events.index(("start", "c")) < events.index(("end", "a"))  # beside a
    events.clear()
    runs = {"x": R("x", "train_sft.py", {}), "y": R("y", "train_dpo.py", {}, ["x"])}
    with pytest.raises(SystemExit, match="x failed"):
        reproduce.execute(runs, str(tmp_path), "quick", jobs=2)
    assert ("start", "y") not in events


def test_a_finished_run_with_other_arguments_is_not_skipped_silently(tmp_path):
    """done(): a finished run with the plan's arguments counts (paths compared by their last part, as --name moves
    them); one trained with another value stops, naming the flag and both values."""
    run = reproduce.Run("dpo_x", "train_dpo.py", dict(data="uf_fine", init="/a/b/runs/sft", beta=0.3, lr=1e-4))
    model = tmp_path / "runs" / "dpo_x" / "model"
    os.makedirs(model)
    (model / "DONE").write_text("{}")
    saved = dict(data="uf_fine", init="out/full/runs/sft", beta=0.3, lr=0.0001, seed=1337)
    (model / "nanopref_config.json").write_text(json.dumps(saved))
    (tmp_path / "runs" / "dpo_x" / "eval_test.json").write_text("{}")
    assert reproduce.done(run, str(tmp_path))
    (model / "nanopref_config.json").write_text(json.dumps({**saved, "beta": 0.1}))
    with pytest.raises(SystemExit, match=r"--beta=0.1 then, 0.3 now"):
        reproduce.done(run, str(tmp_path))
