"""The paper in miniature, in one command: every study's training runs (finished ones skipped, killed ones resumed),
their ground-truth evaluation on the world's validation and test prompts, and out/<name>/REPORT.md with the tables
in the paper's layout, each finding's verdict computed from the numbers, and SVG figures.

    python reproduce.py                 # quick tier: 1 seed, the headline table (DPO vs PPO on uf_fine)
    python reproduce.py --tier=full     # the five studies with 3 seeds each, after equal-budget tuning sweeps
    python reproduce.py --tier=smoke    # every kind of run for 2 steps: the harness end to end (a test runs it)
    python reproduce.py --dry_run=true  # the plan: every run, its command and whether it is done

Honesty rules, enforced by the code: hyperparameters are chosen on the validation prompts only (`choose` is given
validation scores and nothing else; a test checks it); every reported number is on the test prompts; each table
gives the mean ± standard error over seeds beside the paired per-prompt standard error; a verdict is "reproduced"
(or "reversed") only when the difference exceeds 2 standard errors (the larger of the two), else "inconclusive".

What is trained once and what per seed: the SFT model is the shared starting point (like Tulu 2 13B in the paper),
trained once with the default seed. Reward models are trained once per (data, size), like the paper's released
RMs; DPO and PPO runs are repeated with seeds 1337, 1338, ... (the world itself is fixed: --world_seed).
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from nanopref.common import read_json, write_json
from nanopref.config import check_config, parse_config, print_config
from nanopref.evals.world import mean_se
from nanopref.results import over_seeds, paired, records, rollout_stats, scores, table, verdict
from nanopref.svg import bars, lines
from nanopref.world import CATEGORIES


@dataclass
class Config:
    tier: str = "quick"         # quick (1 seed, headline table) | full (five studies, sweeps) | smoke (2 steps each)
    name: str | None = None     # results in out/<name> (None: the tier's name)
    seeds: int | None = None    # seeds per DPO/PPO setting (None: quick 1, full 3, smoke 1)
    world_seed: int = 0         # which world
    jobs: int = 2               # runs at a time, one thread each (the numbers do not depend on it)
    dry_run: bool = False       # print the plan and stop


cfg = parse_config(Config) if __name__ == "__main__" else Config()
ROOT = os.path.dirname(os.path.abspath(__file__))
SEED0 = 1337  # the scripts' default seed: seed k of a setting is SEED0 + k
DATASETS = ("uf_fine", "uf_overall", "hh_human", "web_length", "arena")  # the paper's Table 1 sources, in the world
# Chosen on the validation prompts by the full tier's sweeps (REPORT.md lists the sweep); the quick tier uses them.
TUNED = dict(dpo=dict(beta=1.0, lr=2e-4), ppo=dict(kl_coef=0.5, lr=1e-4))  # full tier, world seed 0 (dev/LOG.md)
# Equal budgets: six seed-0 runs each, the KL strength and the learning rate, TUNED among them. (A first 2x2 sweep
# with lr 5e-5 chose the grid's corner, the strongest KL and the highest lr: dev/LOG.md. This one reaches past it.)
SWEEPS = dict(dpo=[dict(beta=b, lr=lr) for b in (0.1, 0.3, 1.0) for lr in (1e-4, 2e-4)],
              ppo=[dict(kl_coef=k, lr=lr) for k in (0.05, 0.2, 0.5) for lr in (1e-4, 2e-4)])
SMOKE = dict(sft=["--max_steps=2", "--preset=test", "--eval_limit=4"], rm=["--max_steps=2"],
             dpo=["--max_steps=2", "--eval_limit=4"], ppo=["--max_steps=2", "--batch_size=16", "--minibatch=8",
                                                           "--eval_limit=4"])
EVAL_LIMIT = dict(smoke=4)  # world prompts per category for evaluation (None: all)

# -----------------------------------------------------------------------------
# the plan: runs with their commands and dependencies


def tag(hp):
    """A run name's hyperparameter part: {beta: 0.1, lr: 1e-4} -> _beta0.1_lr0.0001."""
    return "".join(f"_{k}{v:g}" for k, v in hp.items())


@dataclass
class Run:
    name: str                   # its directory under out/<name>/runs
    script: str                 # train_*.py
    args: dict                  # --key=value flags (out_dir added)
    needs: list = field(default_factory=list)  # runs that must finish first
    evaluated: bool = True      # a policy: evaluated on val and test


def plan(tier, seeds, root, tuned, sweeps_only=False):
    """-> {run name: Run}, in an order where every run comes after what it needs. sweeps_only: the full tier's
    tuning runs (seed 0 on uf_fine, one per SWEEPS point), which run first: `choose` picks `tuned` from them.
    The full tier's cuts, to fit 90 minutes on a 2-core CPU: web_length and arena (Table 1 rows without a verdict)
    get one seed; the uf_fine+math_steps RM (9.4x uf_fine's pairs) is trained for one epoch, as the paper's RMs
    were, instead of three; the RM-size study uses uf_fine data (the paper's 13B vs 70B UltraFeedback RMs)."""
    runs = {}
    d = lambda name: os.path.join(root, "runs", name)  # noqa: E731

    def add(name, script, needs=(), evaluated=True, **args):
        runs[name] = Run(name, script, args, list(needs), evaluated)
        return name

    sft = add("sft", "train_sft.py")
    small_sft = None

    def rm(data, size="tiny", **args):
        nonlocal small_sft
        if size == "small" and small_sft is None:
            small_sft = add("sft_small", "train_sft.py", evaluated=False, preset="small", lr=1.5e-3)  # lr ~ 1/width
        src = sft if size == "tiny" else small_sft
        return add(f"rm_{data.replace('+', '_')}_{size}", "train_rm.py", [src], evaluated=False, data=data, sft=d(src),
                   policy=d(sft), preset=size, bon_n=0 if tier == "smoke" else 16, **args)

    def dpo(data, seed, **hp):  # a sweep point equal to TUNED is the same run as the main one: done once
        hp = {**tuned["dpo"], **hp}
        first = f"dpo_{data}{tag(hp)}_s0"  # on-policy pairs are sampled by the first run; the others wait for it
        return add(f"dpo_{data}{tag(hp)}_s{seed}", "train_dpo.py", [sft] + ([first] if seed and "onpolicy" in data
                                                                           else []),
                   data=data, init=d(sft), seed=SEED0 + seed, **hp)

    def ppo(reward, prompts, seed, **hp):
        hp = {**tuned["ppo"], **hp}
        return add(f"ppo_{reward[3:]}_{prompts}{tag(hp)}_s{seed}", "train_ppo.py", [sft, reward], prompts=prompts,
                   policy=d(sft), reward=d(reward), seed=SEED0 + seed, **hp)

    rm_uf = rm("uf_fine")
    if sweeps_only:
        for hp in SWEEPS["dpo"]:
            dpo("uf_fine", 0, **hp)
        for hp in SWEEPS["ppo"]:
            ppo(rm_uf, "general", 0, **hp)
        return runs
    for s in range(seeds):
        dpo("uf_fine", s)
        ppo(rm_uf, "general", s)
    if tier == "full":
        rm_uo, rm_mix, rm_small = rm("uf_overall"), rm("uf_fine+math_steps", epochs=1), rm("uf_fine", "small")
        for s in range(seeds):
            for data in ("uf_overall", "hh_human", "uf_fine_onpolicy") + (("web_length", "arena") if s == 0 else ()):
                dpo(data, s)
            for reward in (rm_uo, rm_small, rm_mix):
                ppo(reward, "general", s)
            ppo(rm_mix, "math", s)
    return runs


def done(run, root):
    """Trained (its model marked finished) and, for a policy, evaluated on the test prompts. A finished run whose
    saved arguments differ from the plan's is an error naming them: skipping it would report the old run as the
    new plan's (paths, which depend on --name, are compared by their last part)."""
    out = os.path.join(root, "runs", run.name)
    if not os.path.exists(os.path.join(out, "model", "DONE")):
        return False
    saved = read_json(os.path.join(out, "model", "nanopref_config.json"))
    last = lambda v: os.path.basename(os.path.normpath(str(v)))  # noqa: E731
    changed = [f"--{k}={saved.get(k)} then, {v} now" for k, v in run.args.items()
               if (last(saved.get(k)) != last(v) if k in ("init", "sft", "policy", "reward") else saved.get(k) != v)]
    if changed:
        raise SystemExit(f"{out} finished with other arguments ({'; '.join(changed)}): delete it to rerun it")
    return not run.evaluated or os.path.exists(os.path.join(out, "eval_test.json"))


# -----------------------------------------------------------------------------
# execution: one line per run with an ETA; each run's output in logs/<run>.log


def command(run, root, tier):
    """The run's command line. Trainers evaluate on the validation prompts once, at the end (what `choose` reads);
    the test prompts are evaluated afterwards, by evaluate.py."""
    out = os.path.join(root, "runs", run.name)
    every = {} if run.script == "train_rm.py" else {"eval_every": 0, "eval_split": "val"}
    args = [f"--{k}={v}" for k, v in {**run.args, **every, "out_dir": out, "world_seed": cfg.world_seed}.items()]
    kind = run.script[6:-3]
    return [sys.executable, run.script] + args + (SMOKE[kind] if tier == "smoke" else [])


def evaluate(run, root, split, limit):
    """Greedy world evaluation of a finished policy on one split -> (command, runs/<run>/eval_<split>.json)."""
    out = os.path.join(root, "runs", run.name)
    path = os.path.join(out, f"eval_{split}.json")
    return [sys.executable, "evaluate.py", f"--model={out}", "--tasks=world", f"--split={split}",
            f"--world_seed={cfg.world_seed}", f"--out={path}"] + ([f"--limit={limit}"] if limit else []), path


def run_one(run, root, tier):
    """Train (resuming a killed run), then evaluate a policy on the test prompts; output in logs/<run>.log.
    Every run uses one thread: its numbers are then the same bits whatever --jobs and the machine's core count
    (the sampler's last bits depend on the thread count; dev/LOG.md)."""
    cmds = [(command(run, root, tier), None)] + ([evaluate(run, root, "test", EVAL_LIMIT.get(tier))]
                                                 if run.evaluated else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(os.path.join(root, "logs", f"{run.name}.log"), "a") as log:
        for cmd, result in cmds:
            if result and os.path.exists(result):  # evaluated before a kill
                continue
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
                return f"{run.name} failed: see {log.name}; rerun to resume"


def execute(runs, root, tier, jobs):
    """Every unfinished run, `jobs` at a time, each as soon as the runs it needs have finished; one line per run."""
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    todo = [r for r in runs.values() if not done(r, root)]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} already finished; {jobs} at a time; logs in {root}/logs")
    cost = {"sft": 150, "rm": 150, "dpo": 200, "ppo": 300}  # seconds per run at one thread, updated as we go
    seen, running, failed, t_start = {}, {}, [], time.time()
    finished = {r.name for r in runs.values() if done(r, root)}
    with ThreadPoolExecutor(jobs) as pool:
        while todo or running:
            ready = [r for r in todo if all(n in finished or n not in runs for n in r.needs)]
            for run in ready[:max(0, jobs - len(running))] if not failed else []:
                todo.remove(run)
                running[pool.submit(run_one, run, root, tier)] = (run, time.time())
            if not running:
                break
            for fut in wait(running, return_when=FIRST_COMPLETED).done:
                run, t0 = running.pop(fut)
                if fut.result():
                    failed.append(fut.result())
                    continue
                finished.add(run.name)
                kind = run.script[6:-3]
                seen.setdefault(kind, []).append(time.time() - t0)
                cost[kind] = sum(seen[kind]) / len(seen[kind])
                left = sum(cost[r.script[6:-3]] for r in todo) / jobs
                print(f"[{len(finished):3d}/{len(runs)}] {run.name:44} {time.time() - t0:6.0f}s  "
                      f"elapsed {time.time() - t_start:5.0f}s  ETA {left / 60:5.1f} min", flush=True)
    if failed or todo:
        raise SystemExit("\n".join(failed) or f"not run: {', '.join(r.name for r in todo)}")


# -----------------------------------------------------------------------------
# tuning and the report


def choose(root):
    """The full tier's tuning: for DPO and PPO, the SWEEPS point whose seed-0 run scores best overall on the
    validation prompts. -> (tuned {algo: hp}, the sweep's val scores {algo: {tag: (mean, se)}}). Reads only val."""
    tuned, val = {}, {}
    for algo, prefix in (("dpo", "dpo_uf_fine"), ("ppo", "ppo_uf_fine_tiny_general")):
        val[algo] = {tag(hp): over_seeds(root, [f"{prefix}{tag(hp)}_s0"], "val")["overall"] for hp in SWEEPS[algo]}
        tuned[algo] = max(SWEEPS[algo], key=lambda hp: val[algo][tag(hp)][0])
    return tuned, val


def mechanism(root, rm_name, ppo_names):
    """Where PPO's gains stop, with evidence: the RM's Best-of-16 ceiling on the SFT policy's samples, and on PPO's
    own rollouts the RM score, the ground truth and the RM's pairwise accuracy, early vs late in training.
    -> (markdown lines, [(figure name, svg)])"""
    md = ["## Where PPO's gains stop: the reward model's view (test prompts for Best-of-16, training rollouts below)",
          ""]
    ev = read_json(os.path.join(root, "runs", rm_name, "eval_rm.json"))
    bon = ev.get("best_of_n", {}).get("metrics")
    if bon:
        md += [f"Best-of-{ev['best_of_n']['n']} of the SFT policy's samples, reranked by `{rm_name}` (the most any "
               "optimiser of this RM can reach by reweighting what the SFT policy already says) against the oracle "
               "judge's pick and the best sample by ground truth:", "",
               "| | " + " | ".join(CATEGORIES) + " | overall |", "|---" * (len(CATEGORIES) + 2) + "|"]
        for k, label in (("greedy", "SFT greedy"), ("random", "a random sample"), ("rm", "RM's pick"),
                         ("oracle", "oracle's pick"), ("best", "best sample"), ("rm-random", "RM's pick - random")):
            md.append(f"| {label} | " + " | ".join(f"{bon[c][k]['score']:.3f} ± {bon[c][k]['stderr']:.3f}"
                                                   for c in CATEGORIES + ["overall"]) + " |")
        md.append("")
    per_seed = [rollout_stats(root, n) for n in ppo_names]
    steps = sorted(per_seed[0])
    k = max(1, len(steps) // 4)  # early: the first quarter of the steps; late: the last quarter
    md += [f"PPO's own rollouts (training prompts, {len(ppo_names)} seed(s); early = steps {steps[0]}-{steps[k - 1]}, "
           f"late = steps {steps[-k]}-{steps[-1]}): the RM's mean score, the ground truth, and the RM's pairwise "
           "accuracy (pairs of one step and category whose ground truths differ). A rising RM score with flat or "
           "falling ground truth is over-optimisation; an accuracy near 0.5 is a category the RM cannot see.", "",
           "| category | RM score early → late | ground truth early → late | RM pairwise accuracy early → late |",
           "|---|---|---|---|"]

    def pooled(c, part):
        """(RM score, ground truth, pairwise accuracy or None, pairs) of a category, early or late, over seeds."""
        vals = [st[s][c] for st in per_seed for s in (steps[:k] if part == "early" else steps[-k:])]
        n = sum(v[3] for v in vals)
        return (sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals),
                sum(v[2] * v[3] for v in vals) / n if n else None, n)

    for c in CATEGORIES:
        (r0, t0, a0, n0), (r1, t1, a1, n1) = pooled(c, "early"), pooled(c, "late")
        acc = lambda a, n: f"{a:.3f} ({n} pairs)" if n else "-"  # noqa: E731
        md.append(f"| {c} | {r0:.3f} → {r1:.3f} | {t0:.3f} → {t1:.3f} | {acc(a0, n0)} → {acc(a1, n1)} |")
    blind = [c for c in CATEGORIES if bon and bon[c]["rm-random"]["score"] <= 2 * bon[c]["rm-random"]["stderr"]]
    fooled = [c for c in CATEGORIES if pooled(c, "late")[3] and pooled(c, "late")[2] < 0.5]
    md += ["", "Read from the numbers above: " + (f"the RM's Best-of-16 pick is no better than a random sample "
                                                   f"(within 2 s.e. or below) on {', '.join(blind) or 'no category'}"
                                                   if bon else "no Best-of-16 in this tier") +
           f"; late in training the RM ranks PPO's own rollouts worse than chance on {', '.join(fooled) or 'no category'}"
           ".", ""]
    w = 5  # a trailing mean over w steps and every seed: one step holds only ~13 rollouts of a category
    fig = lines(f"PPO rollouts: ground truth per category ({w}-step mean, {len(per_seed)} seed(s))",
                {c: [(s, sum(st[t][c][1] for st in per_seed for t in steps[max(0, i - w + 1):i + 1]) /
                      (len(per_seed) * (i + 1 - max(0, i - w + 1)))) for i, s in enumerate(steps)]
                 for c in CATEGORIES}, "rollout step", "ground truth")
    return md, [("ppo_truth_by_category.svg", fig)]


def report(root, tier, seeds, tuned, sweep=None):
    names = lambda prefix, n=seeds: [f"{prefix}_s{s}" for s in range(n)]  # noqa: E731
    dpo_ = lambda data: f"dpo_{data}{tag(tuned['dpo'])}"  # noqa: E731
    ppo_ = lambda rm, prompts="general": f"ppo_{rm}_{prompts}{tag(tuned['ppo'])}"  # noqa: E731
    cols = tuple(CATEGORIES) + ("overall",)
    head = [f"# nanopref: the paper in miniature ({tier} tier)", "",
            f"Seeds per setting: {seeds} ({', '.join(str(SEED0 + s) for s in range(seeds))})"
            + ("; web_length and arena: one seed (1337)" if tier == "full" else "") +
            f"; world seed {cfg.world_seed}. Every number is on the test prompts: mean ± s.e. "
            + ("over seeds" if seeds > 1 else "over prompts (one seed)") + ". Hyperparameters were chosen on the "
            "validation prompts" + (" (the sweep below)." if sweep else " by the full tier's sweep (reproduce.py "
                                   "TUNED)."), ""]
    body, findings, figs = [], [], []
    sft = over_seeds(root, ["sft"])

    def versus(label, a, b, column="overall", direction=1):
        """A finding from paired per-prompt differences a - b; with several seeds the s.e. is the larger of the
        paired one and the one over seeds' differences."""
        d = paired(root, a, b)
        se = d[column][1]
        if len(a) > 1 and len(a) == len(b):
            se = max(se, mean_se([scores(records(root, x))[column] - scores(records(root, y))[column]
                                  for x, y in zip(a, b)])[1])
        findings.append((label, d[column][0], se, verdict(d[column][0], se, direction)))
        return d

    def diff_line(what, d):
        return f"{what}, paired per prompt: " + ", ".join(f"{c} {m:+.3f} ± {s:.3f}" for c, (m, s) in d.items()) + "."

    # Table 2: DPO vs PPO on the same data
    pairs_t2 = [("uf_fine", "uf_fine_tiny")] + ([("uf_overall", "uf_overall_tiny")] if tier == "full" else [])
    rows = {"SFT": sft}
    body += ["## DPO vs PPO on the same data (the paper's Table 2)", ""]
    notes = []
    for data, rm in pairs_t2:
        rows[f"DPO ({data})"] = over_seeds(root, names(dpo_(data)))
        rows[f"PPO (RM on {data})"] = over_seeds(root, names(ppo_(rm)))
        d = versus(f"PPO outperforms DPO on the same preference data: {data} (Table 2)", names(ppo_(rm)),
                   names(dpo_(data)))
        notes.append(diff_line(f"PPO - DPO on {data}", d))
    body += [table(rows), ""] + notes + [""]
    figs.append(("dpo_vs_ppo.svg", bars("DPO vs PPO on the same data (test)", list(cols),
                                        {k: [v[c] for c in cols] for k, v in rows.items()}, "ground-truth score")))
    rows_m = [json.loads(x) for x in open(os.path.join(root, "runs", names(ppo_("uf_fine_tiny"))[0], "metrics.jsonl"))
              if '"objective/kl"' in x]
    for fig, key, what in (("ppo_rm_vs_kl", "objective/rm_scores", "RM score"),
                           ("ppo_truth_vs_kl", "world/rollout_truth", "ground truth")):
        figs.append((f"{fig}.svg", lines(f"PPO (seed 0): {what} of its rollouts against KL",
                                         {what: [(m["objective/kl"], m.get(key, 0.0)) for m in rows_m]},
                                         "KL(policy || reference), summed per response", what)))
    md, more = mechanism(root, "rm_uf_fine_tiny", names(ppo_("uf_fine_tiny")))
    body += md
    figs += more
    if sweep:
        body += [f"## Tuning (validation prompts, seed 0, equal budget: {len(SWEEPS['dpo'])} runs each)", "",
                 "| algorithm | setting | validation overall | |", "|---|---|---|---|"]
        body += [f"| {k} | {t[1:]} | {m:.3f} ± {se:.3f} | {'chosen' if t == tag(tuned[k]) else ''} |"
                 for k, res in sweep.items() for t, (m, se) in res.items()] + [""]
    if tier == "full":
        # Table 1: DPO's data sources; study 5's on-policy pairs
        t1 = {d: over_seeds(root, names(dpo_(d), 1 if d in ("web_length", "arena") else seeds))
              for d in DATASETS + ("uf_fine_onpolicy",)}
        body += ["## DPO on each preference dataset (the paper's Table 1)", "", table({"SFT": sft, **t1}), ""]
        figs.append(("dpo_data.svg", bars("DPO by preference data (test)", list(cols),
                                          {k: [v[c] for c in cols] for k, v in t1.items()}, "ground-truth score")))
        body += [diff_line("uf_fine - hh_human", versus(
            "Fine-grained synthetic data (uf_fine) beats human-like data (hh_human) for DPO (Table 1)",
            names(dpo_("uf_fine")), names(dpo_("hh_human")))), ""]
        # Table 3: reward models (size and data), each with its accuracy, Best-of-16 and PPO
        rms = {"uf_fine_tiny": "uf_fine, tiny (1.38M)", "uf_fine_small": "uf_fine, small (5.87M)",
               "uf_overall_tiny": "uf_overall, tiny", "uf_fine_math_steps_tiny": "uf_fine+math_steps, tiny (1 epoch)"}
        t3 = {label: over_seeds(root, names(ppo_(r))) for r, label in rms.items()}
        body += ["## Reward models: size and data (the paper's Table 3)", "",
                 "| RM | test_gold accuracy | Best-of-16 overall | Best-of-16 math | PPO overall | PPO math |",
                 "|---|---|---|---|---|---|"]
        for r, label in rms.items():
            ev = read_json(os.path.join(root, "runs", f"rm_{r}", "eval_rm.json"))
            bon, acc = ev["best_of_n"]["metrics"], ev["accuracy"]["all"]
            body.append(f"| {label} | {acc['acc']:.3f} ± {acc['stderr']:.3f} | " + " | ".join(
                f"{bon[c]['rm']['score']:.3f} ± {bon[c]['rm']['stderr']:.3f}" for c in ("overall", "math")) +
                f" | {t3[label]['overall'][0]:.3f} ± {t3[label]['overall'][1]:.3f} | "
                f"{t3[label]['math'][0]:.3f} ± {t3[label]['math'][1]:.3f} |")
        body += ["", "PPO with each RM, per category:", "", table({"SFT": sft, **t3}), ""]
        figs.append(("ppo_by_rm.svg", bars("PPO with each reward model (test)", list(cols),
                                           {k: [v[c] for c in cols] for k, v in t3.items()}, "ground-truth score")))
        small, tiny = (read_json(os.path.join(root, "runs", f"rm_uf_fine_{z}", "eval_rm.json"))["best_of_n"]
                       ["metrics"]["overall"]["rm"] for z in ("small", "tiny"))
        d, se = small["score"] - tiny["score"], (small["stderr"] ** 2 + tiny["stderr"] ** 2) ** 0.5
        findings.append(("A 4x larger RM picks better Best-of-16 samples (Table 3)", d, se, verdict(d, se)))
        d = paired(root, names(ppo_("uf_fine_small")), names(ppo_("uf_fine_tiny")))["overall"]
        findings.append(("... but gives PPO little overall gain (Table 3: within 2 s.e., or a gain)", d[0], d[1],
                         "reproduced" if d[0] > -2 * d[1] else "reversed"))
        # Figure 3: math-targeted prompts with the RM that saw math
        f3 = {"SFT": sft, "general prompts": t3[rms["uf_fine_math_steps_tiny"]],
              "math prompts": over_seeds(root, names(ppo_("uf_fine_math_steps_tiny", "math")))}
        body += ["## PPO prompts: general vs math-targeted, with the uf_fine+math_steps RM (the paper's Figure 3)",
                 "", table(f3), ""]
        figs.append(("ppo_prompts.svg", bars("PPO prompts, uf_fine+math_steps RM (test)", list(cols),
                                             {k: [v[c] for c in cols] for k, v in f3.items()}, "ground-truth score")))
        body += [diff_line("math - general prompts", versus(
            "Math-targeted PPO prompts raise math with an RM that saw math (Figure 3)",
            names(ppo_("uf_fine_math_steps_tiny", "math")), names(ppo_("uf_fine_math_steps_tiny")), "math")), ""]
        # study 5: where online learning's advantage comes from
        body += ["## On-policy vs off-policy pairs for DPO; PPO against its RM's Best-of-16 (study 5)", ""]
        body += [diff_line("DPO on uf_fine_onpolicy - on uf_fine", versus(
            "On-policy preference pairs help DPO (study 5)", names(dpo_("uf_fine_onpolicy")),
            names(dpo_("uf_fine"))))]
        bon = read_json(os.path.join(root, "runs", "rm_uf_fine_tiny", "eval_rm.json"))["best_of_n"]["metrics"]
        ppo_o = t3[rms["uf_fine_tiny"]]["overall"]
        d, se = ppo_o[0] - bon["overall"]["rm"]["score"], (ppo_o[1] ** 2 + bon["overall"]["rm"]["stderr"] ** 2) ** .5
        body += ["", f"PPO with the uf_fine RM scores {ppo_o[0]:.3f} ± {ppo_o[1]:.3f} overall; Best-of-16 of the SFT "
                 f"policy reranked by the same RM scores {bon['overall']['rm']['score']:.3f} ± "
                 f"{bon['overall']['rm']['stderr']:.3f} (100 test prompts per category): PPO - Best-of-16 "
                 f"{d:+.3f} ± {se:.3f}, {verdict(d, se)} as 'PPO goes beyond reranking its start'.", ""]
    out = head + ["## Findings", "", "| finding | difference | s.e. | verdict |", "|---|---|---|---|"]
    out += [f"| {f} | {m:+.3f} | {s:.3f} | **{v}** |" for f, m, s, v in findings] + [""] + body
    out += ["## Figures", ""] + [f"![{n}]({n})" for n, _ in figs] + [""]
    for n, svg in figs:
        with open(os.path.join(root, n), "w") as f:
            f.write(svg)
    with open(os.path.join(root, "REPORT.md"), "w") as f:
        f.write("\n".join(out))
    return findings


# -----------------------------------------------------------------------------

if __name__ == "__main__":
    check_config(cfg)
    if cfg.tier not in ("quick", "full", "smoke"):
        raise SystemExit(f"--tier={cfg.tier}: expected quick, full or smoke")
    seeds = cfg.seeds or (3 if cfg.tier == "full" else 1)
    root = os.path.join("out", cfg.name or cfg.tier)
    print_config(cfg)
    tuned, sweep = TUNED, None
    if cfg.tier == "full":  # tuning first, on the validation prompts; its choice then drives every study
        sweeps = plan(cfg.tier, seeds, root, TUNED, sweeps_only=True)
        if not cfg.dry_run:
            execute(sweeps, root, cfg.tier, cfg.jobs)
            tuned, sweep = choose(root)
    runs = plan(cfg.tier, seeds, root, tuned)
    if cfg.dry_run:
        for r in (list(sweeps.values()) if cfg.tier == "full" else []) + list(runs.values()):
            print(f"{'done' if done(r, root) else 'todo'}  {' '.join(command(r, root, cfg.tier)[1:])}")
        raise SystemExit(0)
    write_json(os.path.join(root, "plan.json"), dict(tuned=tuned, runs={n: dict(script=r.script, args=r.args)
                                                                        for n, r in runs.items()}))
    execute(runs, root, cfg.tier, cfg.jobs)
    for f, m, s, v in report(root, cfg.tier, seeds, tuned, sweep):
        print(f"{v:>13}  {m:+.3f} ± {s:.3f}  {f}")
    print(f"report: {root}/REPORT.md")
