"""Faults, through the scripts themselves (tiny model, 24 pairs): a run killed inside each window of a checkpoint save
(NANOPREF_FAULT, common.fault_point) resumes at the right step, ends with the weights of an uninterrupted run and
logs no step twice; PPO's policy and value are resumed as one unit, on every rank with its own RNG; changed arguments
are refused unless forced; a second run in a locked out_dir stops at once; a NaN loss stops before the optimizer step
with nothing saved as finished. The same windows in-process: tests/test_checkpoint.py."""
import contextlib
import io
import json
import os
import random
import re
import runpy
import subprocess
import sys

import pytest
import torch

from nanopref.checkpoint import load_model
from nanopref.common import write_jsonl
from nanopref.model import Transformer, model_args
from nanopref.save import DONE, save_model
from nanopref.tokenizer import Tokenizer, train_tokenizer
from test_dpo import pair

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """A tiny policy and reward model sharing a tokenizer; 24 pairs with ratings (and a copy with one NaN rating),
    their chosen conversations for SFT, their prompts for PPO."""
    d = tmp_path_factory.mktemp("faults")
    rng = random.Random(0)
    rows = [dict(pair(rng), score_chosen=4.0 + i % 2, score_rejected=1.0 + i % 3) for i in range(24)]
    write_jsonl(str(d / "pairs.jsonl"), rows)
    write_jsonl(str(d / "nan.jsonl"), rows[:5] + [dict(rows[5], score_chosen=float("nan"))] + rows[6:])
    write_jsonl(str(d / "sft.jsonl"), [dict(messages=r["chosen"]) for r in rows])
    write_jsonl(str(d / "prompts.jsonl"), [dict(messages=r["chosen"][:1]) for r in rows])
    corpus = [m["content"] for r in rows for side in ("chosen", "rejected") for m in r[side]] * 4
    tok = Tokenizer(train_tokenizer(corpus, str(d / "tok.model"), vocab_size=300))
    torch.manual_seed(0)
    for name, head in (("init", "lm"), ("rm", "scalar")):
        model = Transformer(model_args("test", vocab_size=tok.vocab_size, head=head))
        model.init_weights(std=0.2 if head == "lm" else 0.1)
        save_model(model, str(d / name), tokenizer=tok)
    return d


def run(script, fx, name, fault=None, nproc=1, **overrides):
    """One run of a script in fx/name -> (exit code, stdout + stderr). fault: NANOPREF_FAULT, where it dies."""
    args = dict(out_dir=fx / name, recipe="paper", device="cpu", lr=1e-3, batch_size=8, max_steps=4, save_every=1)
    args.update(dict(train_dpo=dict(data=fx / "pairs.jsonl", init=fx / "init", eval_pairs="off", ref_cache=fx / "cache",
                                    micro_batch=8, max_len=192, eval_every=0),
                     train_sft=dict(data=fx / "sft.jsonl", init=fx / "init", micro_batch=8, max_len=192),
                     train_ppo=dict(prompts=fx / "prompts.jsonl", policy=fx / "init", reward=fx / "rm", minibatch=4,
                                    micro_batch=2, max_new_tokens=12, max_prompt_len=60, max_steps=3,
                                    eval_every=0))[script])
    args.update(overrides)
    env = dict(os.environ, OMP_NUM_THREADS="1", NANOPREF_FAULT=fault or "")
    launch = [sys.executable] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    p = subprocess.run(launch + [f"{script}.py"] + [f"--{k}={v}" for k, v in args.items()], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def steps_logged(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f if "loss" in line or "objective/kl" in line]


def same_weights(a, b):
    a, b = load_model(str(a)).state_dict(), load_model(str(b)).state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def full(fx):
    rc, out = run("train_dpo", fx, "full")
    assert rc == 0, out[-3000:]
    return fx / "full"


@pytest.mark.slow
@pytest.mark.parametrize("fault, resumed", [
    ("replace_dir:between_renames@2", "resumed from {ckpt} at step 2"),  # ckpt.old and ckpt.tmp complete: the newer
    ("save:before_done@2", "resumed from {ckpt} at step 1"),             # ckpt.tmp not marked complete: ignored
    ("remove:ckpt", "{model}: this run finished at step 4"),              # deleting ckpt/ after the final save
])
def test_killed_in_a_window_resumes_to_the_same_weights(fx, full, fault, resumed):
    name = "kill_" + fault.split(":")[1].split("@")[0]
    rc, out = run("train_dpo", fx, name, fault)
    assert rc == 137, out[-3000:]  # died where asked
    rc, out = run("train_dpo", fx, name)
    assert rc == 0, out[-3000:]
    assert resumed.format(ckpt=fx / name / "ckpt", model=fx / name / "model") in out
    assert steps_logged(fx / name) == [0, 1, 2, 3]  # each step once
    assert same_weights(full, fx / name)
    assert sorted(os.listdir(fx / name)) == [".lock", "data_stats.json", "metrics.jsonl", "model",
                                             "nanopref_config.json"]


@pytest.mark.slow
def test_changed_arguments_are_refused_unless_forced(fx):
    rc, out = run("train_dpo", fx, "changed", "save:before_done@3")  # killed with a checkpoint at step 2
    assert rc == 137, out[-3000:]
    rc, out = run("train_dpo", fx, "changed", lr=0.5)
    assert rc == 1 and "Traceback" not in out, out[-3000:]
    assert f"{fx / 'changed'} holds a checkpoint at step 2 of a run with other arguments: lr: 0.001 -> 0.5" in out
    rc, out = run("train_dpo", fx, "changed", lr=0.5, resume="force", log_every=2)
    assert rc == 0 and f"resumed from {fx / 'changed' / 'ckpt'} at step 2" in out, out[-3000:]
    assert json.load(open(fx / "changed" / "model" / "nanopref_config.json"))["lr"] == 0.5


@pytest.mark.slow
def test_second_run_in_a_locked_out_dir_stops_at_once(fx):
    os.makedirs(fx / "locked", exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nanopref.runs import lock; lock(sys.argv[1]);"
                               " print('locked', flush=True); time.sleep(120)", str(fx / "locked")],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, out = run("train_sft", fx, "locked")
    finally:
        holder.kill()
        holder.wait()
    assert rc == 1 and f"{fx / 'locked'} is in use by another run (pid {holder.pid})" in out, out[-3000:]
    assert "Traceback" not in out and not os.path.exists(fx / "locked" / "metrics.jsonl")


def test_rm_nan_rating_is_refused_before_the_first_step(fx):
    """--loss=regression with one NaN score_chosen: once its z-scored targets were all NaN and so was every loss;
    now the row is refused where the data is read, naming its file:line (non-finite losses: test_huge_lr_...)."""
    argv = ["train_rm.py", f"--sft={fx / 'init'}", f"--data={fx / 'nan.jsonl'}", "--eval_data=off", "--recipe=paper",
            f"--out_dir={fx / 'rm_nan'}", "--loss=regression", "--batch_size=8", "--max_steps=2", "--max_len=192",
            "--bon_n=0", "--device=cpu"]
    old, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(os.path.join(ROOT, "train_rm.py"), run_name="__main__")
    finally:
        sys.argv = old
    assert f"{fx / 'nan.jsonl'}:6: field 'score_chosen' must be a finite number" in str(e.value)
    assert not os.path.exists(fx / "rm_nan" / "model")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_sft", "train_dpo", "train_ppo"])
def test_exploding_run_stops_with_its_step_and_saves_no_model(fx, script):
    """lr 1e30 sends the weights to ~1e30 in one update; the next loss overflows (PPO: at step 0's second minibatch).
    The run stops before that optimizer step, naming it; the last checkpoint (finite weights) stays, and no final
    model is written."""
    rc, out = run(script, fx, f"{script}_nan", lr=1e30)
    assert rc == 1 and "Traceback" not in out, out[-3000:]
    m = re.search(r"step (\d+): loss (\S+), grad_norm\S* (\S+)", out)
    assert m and int(m.group(1)) >= (script != "train_ppo") and re.search("nan|inf", m.group(2) + m.group(3)), out
    assert f"of {fx}" in out and ": stopped before the optimizer step" in out
    assert not os.path.exists(fx / f"{script}_nan" / "model")
    ckpt = fx / f"{script}_nan" / "ckpt"
    if os.path.exists(ckpt / DONE):
        assert all(torch.isfinite(t).all() for t in load_model(str(ckpt)).state_dict().values())


@pytest.mark.slow
def test_ppo_killed_between_its_two_models_resumes_every_rank_to_the_same_weights(fx):
    """Under torchrun with 2 ranks: killed after the step-2 checkpoint's policy was written but not its value model.
    The rerun resumes both from step 1 and ends bit-identical to an uninterrupted run: every rank's sampling RNG
    (seed + rank) was saved and restored as its own."""
    rc, out = run("train_ppo", fx, "ppo_full", nproc=2)
    assert rc == 0, out[-3000:]
    rc, out = run("train_ppo", fx, "ppo_kill", "save_run:between_models@3", nproc=2)
    assert rc != 0 and os.path.exists(fx / "ppo_kill" / "ckpt.tmp"), out[-3000:]
    rc, out = run("train_ppo", fx, "ppo_kill", nproc=2)
    assert rc == 0 and f"resumed from {fx / 'ppo_kill' / 'ckpt'} at step 1" in out, out[-3000:]
    assert steps_logged(fx / "ppo_kill") == [0, 1, 2]
    assert same_weights(fx / "ppo_full", fx / "ppo_kill")


@pytest.mark.slow
def test_reference_cache_is_keyed_on_the_code_that_computes_it(fx, full, tmp_path):
    """A copy of train_dpo.py whose log-prob code differs (here, only by a statement in pair_logps) must not reuse the
    cached reference log-probs of the original: the key hashes that code."""
    src = open(os.path.join(ROOT, "train_dpo.py")).read()
    line = "    tokens, loss_mask, _ = pair_batch(batch, tok.pad_id)  # (2B, T)\n"
    changed = src.replace(line, "    _ = 'changed'\n" + line, 1)
    assert changed != src
    (tmp_path / "train_dpo.py").write_text(changed)
    before = set(os.listdir(fx / "cache"))
    args = [f"--data={fx / 'pairs.jsonl'}", f"--init={fx / 'init'}", "--eval_pairs=off", f"--ref_cache={fx / 'cache'}",
            "--recipe=paper", "--batch_size=8", "--micro_batch=8", "--max_len=192", "--max_steps=1", "--warmup=0", "--device=cpu",
            f"--out_dir={tmp_path / 'out'}", "--lr=1e-3"]
    p = subprocess.run([sys.executable, str(tmp_path / "train_dpo.py"), *args], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT), timeout=300)
    assert p.returncode == 0 and "cached in" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    assert len(set(os.listdir(fx / "cache")) - before) == 1
