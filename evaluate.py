"""Evaluate checkpoints on the paper's benchmarks (their real files) and on the embedded world.

    python evaluate.py                                   # every policy under out/ on the world's held-out prompts
    python evaluate.py --model=out/dpo --tasks=world
    python evaluate.py --model=/ckpts/tulu-2-7b --tasks=gsm8k,ifeval,mmlu --limit=50 --dtype=bfloat16
    python evaluate.py --model=out/dpo --tasks=alpaca_eval --judge=out/rm      # a nanopref reward model judges
    python evaluate.py --responses=outputs.jsonl --tasks=ifeval                # score outputs produced elsewhere

Tasks (protocols of open-instruct mid-2024, PAPER_NOTES §1.5; each module's docstring lists its deviations):
  world        the world's five categories, greedy, ground-truth scorers, mean ± standard error
  mmlu         0-shot (mmlu_5shot: 5-shot), answer letter by next-token likelihood, micro average
  gsm8k        8-shot chain of thought, greedy, 200-question subset, last number vs the number after ####
  bbh          3-shot chain of thought from the official cot-prompts, 40 per task, exact match
  truthfulqa   MC1/MC2 by likelihood; truth/info by a judge LM (--truthfulqa_judge), else skipped, saying so
  humaneval    HumanEval+ pass@1 (T 0.1) and pass@10 (T 0.8), n = 20, base and plus tests, sandboxed
  mbpp         MBPP+ likewise
  ifeval       the 25 verifiable instruction types, prompt/instruction level, strict/loose
  xstest       refusal rate on unsafe and compliance on safe prompts, string-match classifier
  toxigen      share of toxic continuations; the default classifier says plainly it is a heuristic
  alpaca_eval  AlpacaEval 2 win rate and length-controlled win rate against gpt4_1106_preview with --judge
               (alpaca_eval1: AlpacaEval 1 against text_davinci_003)
--limit N: N examples drawn with a fixed seed and spread in proportion over the benchmark's parts (MMLU subjects,
BBH tasks, XSTest's safe and unsafe prompts, ToxiGen groups, AlpacaEval source sets, TruthfulQA categories), never
the file's first N; the world takes the first N of each category (its eval sets are already random draws).

--responses FILE.jsonl scores outputs made elsewhere, for exactly one task and without --model or --limit: one JSON
object per line (blank lines allowed; .gz too), each example at most once, with the task's id field and "output"
(a string) or "outputs" (a non-empty list of strings; only code and the likelihood-free MMLU/GSM8K/BBH take several):
  world        {"id": "math-1a2b3c4d", "output": ...}        an id of the world's eval sets
  mmlu         {"id": "<subject>/<row>", "output": ...}      0-based row of mmlu/test/<subject>_test.csv; the letter
               is read from the text (evals.mmlu.extract_letter)
  gsm8k        {"id": <0-based line of test.jsonl>, "output": ...}
  bbh          {"id": "<task>/<index>", "output": ...}       index into bbh/bbh/<task>.json's examples
  truthfulqa   {"id": <0-based row of TruthfulQA.csv>, "output": ...}   judged with --truthfulqa_judge (no MC)
  humaneval    {"task_id": "HumanEval/0", "outputs": [completion, ...]} (mbpp: "Mbpp/2"), completions as generated
               after the prompt of evals/code.py
  ifeval       {"key": <key in input_data.jsonl>, "output": ...} or {"prompt": <the prompt text>, "output": ...}
  xstest       {"id": <the csv's id column, "1" or 1>, "output": ...}
  toxigen      {"id": "<group>/<0-based line of hate_<group>_1k.txt>", "output": ...}
  alpaca_eval  {"id": <0-based index of the instruction>, "output": ...} or {"instruction": ..., "output": ...}
               (alpaca_eval's model_outputs.json rows), win rates with --judge
A missing or mistyped field, an unknown id or an example given twice is an error naming FILE:LINE (both lines for a
repeat), before anything is scored. Ids are integers or strings as shown; integers may be written as digit strings.

Benchmark files are read from $NANOPREF_DATA (default ../shared/data). Results: a printed table and JSON
(--out: one JSON for all models; default <model>/evaluate_<tasks>.json for each model; with --responses, next to
the responses file).
"""
import glob
import importlib
import os
from dataclasses import dataclass

import torch

from nanopref.common import DATA_DIR, OUT_DIR, autodevice, write_json
from nanopref.config import check_config, parse_config, print_config

TASKS = ("world", "mmlu", "mmlu_5shot", "gsm8k", "bbh", "truthfulqa", "humaneval", "mbpp", "ifeval", "xstest",
         "toxigen", "alpaca_eval", "alpaca_eval1")
HEADLINE = {  # the number the paper reports per task (PAPER_NOTES §1.5)
    "world": "overall", "mmlu": "average_acc", "mmlu_5shot": "average_acc", "gsm8k": "exact_match",
    "bbh": "average_exact_match", "truthfulqa": "MC2", "humaneval": "plus_pass@10", "mbpp": "plus_pass@10",
    "ifeval": "loose_prompt_acc", "xstest": "strmatch/refusal_f1", "toxigen": "overall",
    "alpaca_eval": "length_controlled_winrate", "alpaca_eval1": "win_rate"}


@dataclass
class Config:
    model: str | None = None     # checkpoint or run directory (None: every policy under out/, world only)
    tasks: str = "world"         # comma-separated, from TASKS
    limit: int | None = None     # examples per task (None: the protocol's full set)
    split: str = "test"          # world prompts: test (what every table reports) | val (for choosing settings)
    responses: str | None = None  # JSONL of outputs made elsewhere: score them, no model needed
    judge: str | None = None     # reward model (scalar head) for alpaca_eval
    truthfulqa_judge: str | None = None  # judge LM for TruthfulQA truth/info (same checkpoint judges both here)
    world_seed: int = 0          # which world to build or use
    template: str = "tulu"       # chat template: tulu, llama2, or none (base models)
    batch_size: int = 64         # prompts per generate() / scoring forward
    out: str | None = None       # results JSON path (None: beside each model, or beside --responses)
    device: str = "auto"         # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"       # float32 | bfloat16


def run_task(task, lm, cfg, judge=None, tqa_judge=None, rows=None):
    """-> {"metrics": {...}, "records": [...], ...} for one task, from a model (`lm`) or from `rows`."""
    limit = cfg.limit
    if task == "world":
        from nanopref.evals import world as world_eval
        from nanopref.world.build import build_world, load_world
        w = load_world(build_world(cfg.world_seed, quiet=True))
        if rows is not None:
            metrics, records = world_eval.score_responses(rows, w, split=cfg.split), []
        else:
            metrics, records = world_eval.run(lm, w, limit=limit, desc=f"world {cfg.split}", split=cfg.split)
        flat = {k: v["score"] for k, v in metrics.items()} | {f"{k}_stderr": v["stderr"] for k, v in metrics.items()}
        return dict(task=task, metrics=flat, records=records)
    family = {"mmlu_5shot": "mmlu", "humaneval": "code", "mbpp": "code", "alpaca_eval1": "alpaca_eval"}.get(task, task)
    mod = importlib.import_module(f"nanopref.evals.{family}")
    kw = {}
    if task in ("humaneval", "mbpp"):
        kw["dataset"] = task
    if task.startswith("alpaca_eval"):
        kw.update(version=1 if task == "alpaca_eval1" else 2, judge=judge)
    if task == "truthfulqa":
        kw.update(truth_judge=tqa_judge, info_judge=tqa_judge)
    if rows is not None:
        return mod.score_responses(rows, **kw)
    if task == "mmlu_5shot":
        kw["n_shot"] = 5
    return mod.run(lm, limit=limit, **kw)


def policies_under_out():
    """Run directories in out/ that hold a language-model checkpoint (not reward models)."""
    import json
    found = []
    for cfg_path in sorted(glob.glob(os.path.join("out", "*", "model", "config.json"))):
        with open(cfg_path) as f:
            if json.load(f)["architectures"][0] == "LlamaForCausalLM":
                found.append(os.path.dirname(os.path.dirname(cfg_path)))
    return found


def check_args(cfg, tasks):
    """Flag combinations that would otherwise be silently ignored: errors before any work."""
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise SystemExit(f"--tasks: unknown task(s) {bad or cfg.tasks!r}; known: {', '.join(TASKS)}")
    if cfg.responses:
        if cfg.model:
            raise SystemExit(f"--model={cfg.model} and --responses={cfg.responses} both given: --responses scores "
                             "outputs made elsewhere and loads no model; pass one of them")
        if len(tasks) != 1:
            raise SystemExit(f"--responses holds one task's rows (their ids are that task's), got --tasks={cfg.tasks}")
        if cfg.limit:
            raise SystemExit(f"--limit={cfg.limit} with --responses: every row of the file is scored; keep only the "
                             "rows you want in the file")


def main():
    cfg = parse_config(Config)
    check_config(cfg)
    tasks = [t.strip() for t in cfg.tasks.split(",") if t.strip()]
    check_args(cfg, tasks)
    print_config(cfg)
    print(f"benchmark data: {DATA_DIR}; world cache: {OUT_DIR}")
    from nanopref.evals import read_rows
    rows = read_rows(cfg.responses) if cfg.responses else None  # a malformed file fails before any model loads
    device, dtype = autodevice(cfg.device), getattr(torch, cfg.dtype)
    from nanopref.evals.lm import NanoprefLM, RewardScorer
    judge = RewardScorer.load(cfg.judge, device=device, dtype=dtype) if cfg.judge else None
    tqa = NanoprefLM.load(cfg.truthfulqa_judge, device=device, dtype=dtype) if cfg.truthfulqa_judge else None

    if cfg.responses:
        results = {os.path.basename(cfg.responses): {t: run_task(t, None, cfg, judge, tqa, rows) for t in tasks}}
        out = cfg.out or os.path.splitext(cfg.responses)[0] + "_scores.json"
    else:
        models = [cfg.model] if cfg.model else policies_under_out()
        if not models:
            raise SystemExit("no checkpoint given and none under out/: run `python train_sft.py` first, or pass "
                             "--model=PATH")
        results = {}
        for path in models:
            lm = NanoprefLM.load(path, device=device, dtype=dtype, template=cfg.template, batch_size=cfg.batch_size)
            results[path] = {t: run_task(t, lm, cfg, judge, tqa) for t in tasks}
            if not cfg.out:  # beside the checkpoint; not eval_world.json, which is the trainer's own evaluation
                write_json(os.path.join(path, f"evaluate_{'_'.join(tasks)}.json"), results[path])
        out = cfg.out or None
    if out:
        write_json(out, results)
    print_table(results, tasks)


def print_table(results, tasks):
    """One row per model: the headline metric of each task (and the world's categories)."""
    cols = []
    for t in tasks:
        if t == "world":
            cols += [("world", c) for c in ("math", "ifeval", "truth", "safety", "chat", "overall")]
        else:
            cols.append((t, HEADLINE[t]))
    width = max([len(m) for m in results] + [10])
    print(f"{'model':{width}} | " + " | ".join(f"{(c if t == 'world' else t)[:13]:>13}" for t, c in cols))
    for m, res in results.items():
        cells = []
        for t, c in cols:
            v = res[t]["metrics"].get(c)
            se = res[t]["metrics"].get(f"{c}_stderr")
            cells.append(f"{'-':>13}" if v is None else f"{v:6.3f} ± {se:.3f}" if se is not None else f"{v:13.3f}")
        print(f"{m:{width}} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
