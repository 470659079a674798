"""The scripts' configs: --help shows each field's default, comment and paper value; --recipe=paper applies the
paper's values under any flag given; real data without an explicit recipe, and values that break a field's meaning,
are errors naming the flag, raised before any data or model loads (so these runs take about a second)."""
import contextlib
import io
import os
import runpy
import sys
from dataclasses import dataclass

import pytest

from nanopref.config import check_config, field_comments, parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train_sft.py", "train_rm.py", "train_dpo.py", "train_ppo.py", "evaluate.py")


@dataclass
class Demo:
    lr: float = 1e-4            # peak learning rate
    batch_size: int = 32        # pairs per step
    max_steps: int | None = None  # stop early (None: all epochs)
    note: str = "x"             # a comment that goes on
                                # over two lines
    recipe: str = "world"       # world or paper


PAPER = dict(lr=5e-7, batch_size=128)


def test_recipe_applies_under_given_flags():
    cfg = parse_config(Demo, ["--recipe=paper", "--batch_size=8"], paper=PAPER)
    assert (cfg.lr, cfg.batch_size) == (5e-7, 8)  # the flag wins over the recipe
    cfg = parse_config(Demo, [], paper=PAPER)
    assert (cfg.lr, cfg.batch_size, cfg.max_steps) == (1e-4, 32, None)  # a bare run: the visible defaults
    assert parse_config(Demo, ["--max_steps=7"]).max_steps == 7
    assert parse_config(Demo, ["--max_steps=none"]).max_steps is None
    with pytest.raises(SystemExit, match="--max_steps=x: expected int"):
        parse_config(Demo, ["--max_steps=x"])
    with pytest.raises(SystemExit, match="expected world or paper"):
        parse_config(Demo, ["--recipe=papr"], paper=PAPER)
    with pytest.raises(SystemExit, match="unknown config key --lrr"):
        parse_config(Demo, ["--lrr=1"])


def test_field_comments_join_continuations():
    c = field_comments(Demo)
    assert c["lr"] == "peak learning rate" and c["max_steps"] == "stop early (None: all epochs)"
    assert c["note"] == "a comment that goes on over two lines"


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "--batch_size=0: must be a positive integer"),
    ("batch_size", -4, "--batch_size=-4: must be a positive integer"),
    ("max_steps", -1, "--max_steps=-1: must be a positive integer or none"),
    ("lr", float("nan"), "--lr=nan: must be a positive number"),
])
def test_check_config_names_the_flag(field, value, message):
    cfg = parse_config(Demo, [])
    setattr(cfg, field, value)
    with pytest.raises(SystemExit) as e:
        check_config(cfg)
    assert str(e.value) == message


def run(script, *args):
    """The script in this process (runpy, as `python script args` runs it) -> (exit code or message, stdout)."""
    old_argv, buf = sys.argv, io.StringIO()
    try:
        sys.argv = [script, *args]
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
            runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    finally:
        sys.argv = old_argv
    return e.value.code, buf.getvalue()


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_values_and_comments(script):
    code, out = run(script, "--help")
    assert code == 0
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if line.startswith("  --")}
    assert "--device" in lines and "auto (cuda if available)" in lines["--device"]
    uncommented = [k for k, line in lines.items() if line.rstrip().endswith(("=None", "=0", "=''"))]
    assert not uncommented, f"{script}: fields without a comment: {uncommented}"
    if script.startswith("train_"):
        assert "[paper: " in lines["--lr"], lines["--lr"]  # the paper's value beside the world's
        assert "=0.0 " not in lines["--lr"]  # never 0 meaning "look elsewhere"


@pytest.mark.parametrize("script,args,message", [
    ("train_sft.py", ["--batch_size=0"], "--batch_size=0: must be a positive integer"),
    ("train_sft.py", ["--epochs=-1"], "--epochs=-1: must be a positive integer"),
    ("train_sft.py", ["--max_steps=-1"], "--max_steps=-1: must be a positive integer or none"),
    ("train_sft.py", ["--grad_clip=0"], "--grad_clip=0.0: must be a positive number"),
    ("train_sft.py", ["--micro_batch=-1"], "--micro_batch=-1: must be a positive integer"),
    ("train_sft.py", ["--dtype=bf16"], "--dtype=bf16: must be float32 or bfloat16"),
    ("train_sft.py", ["--dtype=float16"], "--dtype=float16: must be float32 or bfloat16"),
    ("train_sft.py", ["--batch_size=48", "--micro_batch=5"], "--batch_size=48 is not divisible by --micro_batch=5"),
    ("train_sft.py", ["--data=x.jsonl", "--init=y"], "--data=x.jsonl is real data: add --recipe=paper"),
    ("train_rm.py", ["--micro_batch=-1"], "--micro_batch=-1: must be a positive integer"),
    ("train_rm.py", ["--data=x.jsonl"], "--data=x.jsonl is real data: add --recipe=paper"),
    ("train_dpo.py", ["--micro_batch=-1"], "--micro_batch=-1: must be a positive integer"),
    ("train_dpo.py", ["--beta=0"], "--beta=0.0: must be a positive number"),
    ("train_dpo.py", ["--label_smoothing=0.5"], "--label_smoothing=0.5: must be in [0, 0.5)"),
    ("train_ppo.py", ["--temperature=0"], "--temperature=0.0: must be a positive number"),
    ("train_ppo.py", ["--minibatch=24"], "--batch_size=64 must be a multiple of --minibatch=24"),
    ("train_ppo.py", ["--prompts=p.jsonl"], "--prompts=p.jsonl is real data: add --recipe=paper"),
    ("evaluate.py", ["--limit=0"], "--limit=0: must be a positive integer or none"),
])
def test_bad_values_fail_before_any_work(script, args, message):
    code, out = run(script, *args)
    assert isinstance(code, str) and message in code, (code, out[-1000:])


def test_one_step_with_warmup_is_refused():
    """optax's schedule runs step 0 at lr 0: a one-step run with warmup would save its initial weights as trained."""
    from nanopref.training import check_schedule
    check_schedule(2, 0.1)
    check_schedule(1, 0.0)
    with pytest.raises(SystemExit, match="one optimizer step with --warmup=0.1"):
        check_schedule(1, 0.1)
