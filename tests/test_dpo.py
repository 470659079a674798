"""train_dpo.py end to end on a tiny model: the step-0 sanity values, gradient accumulation == one big batch, cached
reference log-probs == a live reference (and == an independent per-example computation); the cache's key."""
import json
import math
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch

from nanopref.cache import fingerprint, reference_logps
from nanopref.checkpoint import load_model
from nanopref.common import write_jsonl
from nanopref.losses import sequence_logps
from nanopref.model import Transformer, model_args
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, encode_prompt_response, train_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the cat dog sat ran on a mat log big small red blue fast slow and is was".split()


def pair(rng):
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    user = f"What is {a} + {b}? Also say something about the {rng.choice(WORDS)}."
    good = f"{a} + {b} = {a + b}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
    bad = f"{a} + {b} = {a + b + rng.randint(1, 5)}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20)))
    msg = lambda t: [dict(role="user", content=user), dict(role="assistant", content=t)]  # noqa: E731
    return dict(chosen=msg(good), rejected=msg(bad))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random policy with its own tokenizer, 24 training pairs and 8 held-out pairs (UltraFeedback schema),
    and a function that runs train_dpo.py on them and returns (metrics rows, final model, stdout)."""
    d = tmp_path_factory.mktemp("dpo")
    rng = random.Random(0)
    rows = [pair(rng) for _ in range(32)]
    write_jsonl(str(d / "train.jsonl"), rows[:24])
    write_jsonl(str(d / "test.jsonl"), rows[24:])
    corpus = [m["content"] for r in rows for side in ("chosen", "rejected") for m in r[side]] * 4
    tok = Tokenizer(train_tokenizer(corpus, str(d / "tok.model"), vocab_size=300))
    torch.manual_seed(0)
    model = Transformer(model_args("test", vocab_size=tok.vocab_size))
    model.init_weights(std=0.2)
    save_model(model, str(d / "init"), tokenizer=tok)

    def run(name, nproc=1, **overrides):
        args = dict(data=d / "train.jsonl", init=d / "init", eval_pairs=d / "test.jsonl", out_dir=d / name,
                    ref_cache=d / "cache", recipe="paper", batch_size=8, micro_batch=8, max_steps=2, lr=1e-3, max_len=192,
                    eval_every=0, device="cpu")
        args.update(overrides)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        launch = [sys.executable] if nproc == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        p = subprocess.run(launch + ["train_dpo.py"] + [f"--{k}={v}" for k, v in args.items()], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        with open(d / name / "metrics.jsonl") as f:
            metrics = [json.loads(line) for line in f]
        return [m for m in metrics if "loss" in m], load_model(str(d / name)).state_dict(), p.stdout

    return d, tok, run


@pytest.fixture(scope="module")
def live(setup):
    return setup[2]("live", precompute_ref="false")


@pytest.fixture(scope="module")
def cached(setup):
    return setup[2]("cached", precompute_ref="true")


def assert_same_params(a, b, lr, steps):
    """Parameters after a few AdamW steps from two computations of the same gradients. Adam's first step is
    lr * g / (|g| + eps), so an element whose gradient is at float-rounding level (|g| ~ 1e-9 against ~1e-2) moves
    by a rounding-dominated amount of up to lr: allow that for a handful of elements (< 0.1%); every other element
    must agree to 1e-6. (Adam is also blind to the gradients' scale, so the callers compare grad_norm too.)"""
    for name in a:
        diff = (a[name] - b[name]).abs()
        assert (diff > 1e-6).float().mean() < 1e-3, (name, int((diff > 1e-6).sum()), diff.numel())
        assert diff.max() <= lr * steps, (name, diff.max())


@pytest.fixture(scope="module")
def accum(setup):
    return setup[2]("accum", precompute_ref="true", micro_batch=2)


def test_step0_is_ln2_with_zero_rewards(live, cached):
    """The policy starts as the reference: loss ln 2, implicit rewards and margins 0, whichever way the reference
    log-probs are obtained (a cached value may differ from the training forward by float rounding only)."""
    for (metrics, _, out), tol in ((live, 1e-7), (cached, 1e-5)):
        m = metrics[0]
        assert m["step"] == 0 and abs(m["loss"] - math.log(2)) < tol
        for k in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
            assert abs(m[k]) < tol, (k, m[k])
        assert m["logps/chosen"] < 0 and m["logps/rejected"] < 0
        assert "WARNING" not in out
    assert metrics[1]["rewards/margins"] > 0  # and one step later the margin has opened


def test_cached_reference_matches_live_reference(live, cached):
    (m_live, p_live, _), (m_cached, p_cached, out) = live, cached
    assert "cached in" in out
    for a, b in zip(m_live, m_cached):
        for k in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert abs(a[k] - b[k]) < 1e-5 * max(1, abs(a[k])), (a["step"], k, a[k], b[k])
    assert_same_params(p_live, p_cached, lr=1e-3, steps=2)


def test_cached_reference_is_the_reference_in_eval_mode(setup, cached):
    """The cache file holds, per pair, the summed response log-probs of the reference weights: recompute them one
    example at a time, unpadded, in Python order, and compare."""
    d, tok, _ = setup
    files = sorted(os.listdir(d / "cache"))
    assert len(files) == 2  # the training pairs and the held-out pairs
    ref = load_model(str(d / "init")).eval()
    from nanopref.data import load_preferences
    rows, _ = load_preferences(str(d / "train.jsonl"))
    want = []
    for ex in rows:
        lps = []
        for side in ("chosen", "rejected"):
            p, r = encode_prompt_response(tok, ex["prompt"], ex[side])
            tokens = torch.tensor([p + r])
            mask = torch.tensor([[0] * len(p) + [1] * len(r)])
            with torch.no_grad():
                lps.append(sequence_logps(ref(tokens), tokens, mask).item())
        want.append(lps)
    got = [torch.load(d / "cache" / f) for f in files]
    got = next(g for g in got if g["n"] == len(rows))
    assert torch.allclose(torch.stack([got["chosen"], got["rejected"]], 1).float(), torch.tensor(want), atol=1e-4)


def test_accumulation_equals_one_big_batch(setup, cached, accum):
    """micro_batch 2 (4 accumulated forwards per step) ends at the same parameters as micro_batch 8, and reuses
    the cached reference log-probs."""
    metrics, params, out = accum
    assert "from" in out and "cached in" not in out
    for a, b in zip(cached[0], metrics):
        assert abs(a["loss"] - b["loss"]) < 1e-6 and abs(a["grad_norm"] - b["grad_norm"]) < 1e-5 * a["grad_norm"]
    init = load_model(str(setup[0] / "init")).state_dict()
    assert all((params[name] - init[name]).abs().max() > 1e-4 for name in init)  # every tensor moved
    assert_same_params(params, cached[1], lr=1e-3, steps=2)


def test_fsdp_two_ranks_equals_one_process(setup, accum):
    """torchrun with 2 CPU ranks (gloo, FSDP2): each rank takes half of every batch, scores half of the reference
    pairs, and the result is the one-process run's, step for step."""
    metrics, params, out = setup[2]("fsdp", nproc=2, precompute_ref="true", micro_batch=2)
    for a, b in zip(accum[0], metrics):
        assert abs(a["loss"] - b["loss"]) < 1e-6 and abs(a["grad_norm"] - b["grad_norm"]) < 1e-5 * a["grad_norm"]
        assert abs(a["rewards/accuracies"] - b["rewards/accuracies"]) < 1e-9
    assert_same_params(params, accum[1], lr=1e-3, steps=2)


def test_stale_reference_cache_is_reported(setup, cached):
    """A cache whose log-probs are not the policy's own at step 0 (here: shifted by one nat) makes step 0's rewards
    non-zero, and the script says so instead of training quietly against the wrong reference."""
    d = setup[0]
    shutil.copytree(d / "cache", d / "stale")
    for f in os.listdir(d / "stale"):
        c = torch.load(d / "stale" / f)
        torch.save(dict(c, chosen=c["chosen"] + 1.0), d / "stale" / f)
    metrics, _, out = setup[2]("stale", precompute_ref="true", ref_cache=d / "stale", max_steps=1, warmup=0)
    assert abs(metrics[0]["rewards/chosen"] + 0.1) < 1e-4  # beta * (log pi - (log pi + 1))
    assert "WARNING: step 0 rewards" in out


def test_reference_cache_key(setup, tmp_path):
    """A cached file is reused only for the same reference bytes, token ids and settings: a copy of the checkpoint
    elsewhere (or its run directory) hits, one changed weight byte, one changed token or another dtype misses."""
    d = setup[0]
    pairs = [dict(prompt=[1, 5], chosen=[7, 2], rejected=[8, 9, 2]), dict(prompt=[1], chosen=[4, 2], rejected=[2])]
    calls = []

    def compute():
        calls.append(1)
        return torch.tensor([-1.0, -2.0], dtype=torch.float64), torch.tensor([-3.0, -4.0], dtype=torch.float64)

    def get(ref, batch=pairs, dtype="float32"):
        n = len(calls)
        out = reference_logps(batch, "pairs", str(ref), compute, str(tmp_path / "cache"), max_len=64, dtype=dtype)
        assert out[0].tolist() == [-1.0, -2.0] and out[1].tolist() == [-3.0, -4.0]
        return len(calls) > n  # computed (a miss)

    shutil.copytree(d / "init", tmp_path / "run" / "model")  # a run directory holding the same checkpoint
    assert get(d / "init") and not get(d / "init") and not get(tmp_path / "run")
    assert fingerprint(d / "init") == fingerprint(tmp_path / "run")
    assert get(d / "init", dtype="bfloat16")
    assert get(d / "init", batch=[dict(pairs[0], chosen=[6, 2]), pairs[1]])
    weights = next(f for f in os.listdir(tmp_path / "run" / "model") if f.endswith(".safetensors"))
    with open(tmp_path / "run" / "model" / weights, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert fingerprint(d / "init") != fingerprint(tmp_path / "run") and get(tmp_path / "run")
