"""PPO: its pure pieces against naive loops and hand-computed numbers, the sampler's log-probs against a full forward
under the sampling temperature, and train_ppo.py end to end on a tiny model (step-0 KL, EasyLM's ratio-1 loop,
resuming, reward normalisation and the adaptive KL controller)."""
import json
import math
import os
import random
import subprocess
import sys
import threading

import pytest
import torch

from nanopref.checkpoint import load_model
from nanopref.common import write_jsonl
from nanopref.generate import generate
from nanopref.losses import (adaptive_kl_coef, gae, kl_estimate, penalise_missing_eos, ppo_policy_loss, ppo_rewards,
                             ppo_value_loss, response_logps, reward_gain_bias, whiten)
from nanopref.model import Transformer, model_args
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, encode_chat, train_tokenizer
from nanopref.training import sampling_copy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ragged_mask(lengths, N):
    return torch.tensor([[1] * n + [0] * (N - n) for n in lengths])


# -----------------------------------------------------------------------------
# pure functions


def naive_gae(rewards, values, length, gamma, lam):
    """One row, Python floats: the textbook backward recursion over the row's `length` real tokens."""
    adv, last = [0.0] * len(rewards), 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        last = rewards[t] + gamma * next_value - values[t] + gamma * lam * last
        adv[t] = last
    return adv, [a + v if t < length else 0.0 for t, (a, v) in enumerate(zip(adv, values))]


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.7), (1.0, 1.0)])
def test_gae_equals_naive_loop(gamma, lam):
    torch.manual_seed(0)
    lengths, N = [9, 1, 4, 6, 2], 9
    mask = ragged_mask(lengths, N)
    rewards, values = torch.randn(5, N) * mask, torch.randn(5, N) * 3  # values past the end are garbage: ignored
    adv, ret = gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths):
        a_ref, r_ref = naive_gae(rewards[b].tolist(), values[b].tolist(), n, gamma, lam)
        assert torch.allclose(adv[b], torch.tensor(a_ref), atol=1e-5)
        assert torch.allclose(ret[b], torch.tensor(r_ref), atol=1e-5)
    if gamma == lam == 1.0:  # telescoping: A_t = sum of the rewards from t on - V_t, so returns are reward-to-go
        togo = rewards.flip(1).cumsum(1).flip(1) * mask
        assert torch.allclose(ret, togo, atol=1e-5)


def test_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -100.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # the five real entries 1..5: mean 3, unbiased variance (4 + 1 + 0 + 1 + 4) / (5 - 1) = 2.5
    want = torch.tensor([[-2.0, -1.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]]) / math.sqrt(2.5 + 1e-8)
    assert torch.allclose(whiten(x, mask), want, atol=1e-6)
    assert torch.allclose(whiten(x, mask, shift_mean=False), (want + 3) * mask, atol=1e-6)


def test_whiten_over_two_ranks_equals_whole_minibatch():
    """Each "rank" (a thread) holds half the minibatch; all_reduce sums a tensor over both, as dist.all_reduce
    would. Every rank must get the whitening of the whole minibatch, not of its own half."""
    torch.manual_seed(0)
    x, mask = torch.randn(6, 5) * 2 + 1, ragged_mask([5, 1, 3, 2, 5, 4], 5)
    whole = whiten(x, mask)
    barrier, slots, out = threading.Barrier(2), [None, None], [None, None]

    def all_reduce(t, rank):
        slots[rank] = t
        barrier.wait()
        total = slots[0] + slots[1]
        barrier.wait()
        return total

    def run(rank):
        rows = slice(3 * rank, 3 * rank + 3)
        out[rank] = whiten(x[rows], mask[rows], all_reduce=lambda t: all_reduce(t, rank))
    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.allclose(torch.cat(out), whole, atol=1e-6)
    assert not torch.allclose(whiten(x[:3], mask[:3]), whole[:3], atol=1e-3)  # a rank alone would differ


def test_policy_loss_by_hand():
    """Ratios 1.5, 1.5, 0.5, 0.5, 1.1 (and a masked token) with advantages +1, -1, +1, -1, +2, clip 0.2."""
    old = torch.zeros(1, 6)
    logps = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.1, 3.0]]).log()
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    loss, clipped = ppo_policy_loss(logps, old, adv, mask, clip=0.2)
    # max(-A r, -A clip(r)): (-1.5, -1.2) -> -1.2 clipped; (1.5, 1.2) -> 1.5; (-0.5, -0.8) -> -0.5;
    # (0.5, 0.8) -> 0.8 clipped; r = 1.1 inside the range -> -2.2; masked -> 0
    assert torch.allclose(loss, torch.tensor([[-1.2, 1.5, -0.5, 0.8, -2.2, 0.0]]), atol=1e-6)
    assert clipped.tolist() == [[True, False, False, True, False, False]]
    # the gradient flows only through unclipped tokens: d loss / d logp = -A r there, 0 where clipped
    logps.requires_grad_(True)
    ppo_policy_loss(logps, old, adv, mask, clip=0.2)[0].sum().backward()
    assert torch.allclose(logps.grad, torch.tensor([[0.0, 1.5, -0.5, 0.0, -2.2, 0.0]]), atol=1e-6)


def test_value_loss_by_hand():
    old = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    values = torch.tensor([[1.5, 1.5, 1.1, 9.0]])
    returns = torch.tensor([[2.0, 0.0, 3.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clipped = ppo_value_loss(values, old, returns, mask, clip=0.2)
    # V_clip = 1.2, 1.2, 1.1: 0.5 max((V - R)^2, (V_clip - R)^2) = 0.5 max(0.25, 0.64), 0.5 max(2.25, 1.44),
    # 0.5 max(3.61, 3.61); masked -> 0
    assert torch.allclose(loss, torch.tensor([[0.32, 1.125, 1.805, 0.0]]), atol=1e-6)
    assert clipped.tolist() == [[True, False, False, False]]


def test_kl_estimators():
    lp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-1.5, -1.0, -0.5])
    assert torch.allclose(kl_estimate(lp, ref, "k1"), torch.tensor([0.5, -1.0, 0.0]))
    assert torch.allclose(kl_estimate(lp, ref, "k2"), torch.tensor([0.125, 0.5, 0.0]))
    k3 = torch.tensor([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0])
    assert torch.allclose(kl_estimate(lp, ref, "k3"), k3)
    # both unbiased: averaged over samples from p they approach KL(p || q)
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.2, 0.5, 0.3])
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    exact = (p * (p / q).log()).sum()
    for kind in ("k1", "k3"):
        assert abs(kl_estimate(p.log()[x], q.log()[x], kind).mean() - exact) < 0.01


def test_missing_eos_penalty_and_reward_at_last_real_token():
    EOS = 2
    scores = torch.tensor([1.5, 0.7, -0.3])
    last_tokens = torch.tensor([EOS, 9, EOS])  # row 1 was cut at max_new_tokens
    s = penalise_missing_eos(scores, last_tokens, EOS, penalty=-10.0)
    assert s.tolist() == pytest.approx([1.5, -10.0, -0.3])
    mask = ragged_mask([3, 5, 1], 5)
    kl = torch.tensor([[0.1, 0.2, 0.3, 7.0, 7.0], [0.1, -0.1, 0.2, 0.0, 0.5], [0.4, 7.0, 7.0, 7.0, 7.0]])
    r = ppo_rewards(s, kl, mask, kl_coef=0.05)
    want = torch.tensor([[-0.005, -0.010, -0.015 + 1.5, 0.0, 0.0],
                         [-0.005, 0.005, -0.010, 0.0, -0.025 - 10.0],
                         [-0.020 - 0.3, 0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(r, want, atol=1e-6)
    # a response's total reward is its score minus beta times its summed KL (the "rlhf reward")
    assert torch.allclose(r.sum(1), s - 0.05 * (kl * mask).sum(1), atol=1e-6)


def test_adaptive_kl_controller_by_hand():
    """Ziegler et al.'s controller from beta 0.1, target 6, horizon 100, 10 rollouts per step. KL 12: error +1,
    clipped to +0.2, beta * (1 + 0.2 * 10 / 100) = 0.102; KL 6: on target, unchanged; KL 3: -0.5 clipped to -0.2,
    * 0.98 = 0.09996; KL 5.4: -0.1, * 0.99 = 0.0989604; KL 0: -1 clipped, * 0.98 = 0.096981192."""
    beta, got = 0.1, []
    for kl in (12.0, 6.0, 3.0, 5.4, 0.0):
        beta = adaptive_kl_coef(beta, kl, target=6.0, horizon=100, n_rollouts=10)
        got.append(beta)
    assert got == pytest.approx([0.102, 0.102, 0.09996, 0.0989604, 0.096981192], rel=1e-12)


def test_reward_gain_bias_by_hand():
    """Scores 1, 2, 3, 6: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5 (lm-human-preferences' std is
    sqrt(E[x^2] - E[x]^2)), so gain 1 / sqrt(3.5) and bias -3 / sqrt(3.5)."""
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0])
    gain, bias = reward_gain_bias(scores)
    assert gain == pytest.approx(1 / math.sqrt(3.5)) and bias == pytest.approx(-3 / math.sqrt(3.5))
    z = gain * scores.double() + bias
    assert abs(z.mean()) < 1e-12 and abs(z.std(correction=0) - 1) < 1e-12
    gain, bias = reward_gain_bias(scores, mean=1.0, std=2.0)
    assert (gain * 3 + bias, gain * 6 + bias) == pytest.approx((1.0, 1.0 + 6 / math.sqrt(3.5)))
    with pytest.raises(ValueError, match="no spread"):
        reward_gain_bias(torch.tensor([2.0, 2.0, 2.0]))


@torch.no_grad()
def test_rollout_logprobs_equal_full_forward_under_temperature():
    """The sampler's log-probs at temperature 0.7 == response_logps of one full forward over prompt + response
    at the same temperature. Scoring raw logits instead (EasyLM) gives a different distribution."""
    torch.manual_seed(0)
    model = Transformer(model_args("test", vocab_size=64, max_seq_len=128)).eval()
    model.init_weights(std=0.3)
    prompts = [[1] + torch.randint(4, 64, (n,)).tolist() for n in (9, 1, 4, 14, 6)]
    g = generate(model, prompts, 20, eos_id=2, pad_id=0, temperature=0.7)
    Tp = g.prompt_tokens.shape[1]
    seq, attn = torch.cat([g.prompt_tokens, g.tokens], 1), torch.cat([g.prompt_mask, g.mask], 1)
    logits = model(seq, mask=attn)
    lp = response_logps(logits, seq, Tp, temperature=0.7) * g.mask
    assert (lp - g.logprobs).abs().max() < 1e-4
    assert (response_logps(logits, seq, Tp) * g.mask - g.logprobs).abs().max() > 0.1


# -----------------------------------------------------------------------------
# train_ppo.py end to end on a tiny random policy and reward model

WORDS = "the cat dog sat ran on a mat log big small red blue fast slow and is was".split()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ppo")
    rng = random.Random(0)
    prompts = [dict(prompt=f"Tell me about the {rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(WORDS)}.")
               for _ in range(20)]
    prompts.append(dict(prompt=" ".join(WORDS * 6)))  # too long: dropped
    write_jsonl(str(d / "prompts.jsonl"), prompts)
    tok = Tokenizer(train_tokenizer([p["prompt"] for p in prompts] * 4 + [" ".join(WORDS)] * 20,
                                    str(d / "tok.model"), vocab_size=300))
    torch.manual_seed(0)
    policy = Transformer(model_args("test", vocab_size=tok.vocab_size))
    policy.init_weights(std=0.1)
    with torch.no_grad():  # point EOS's output row along the mean final hidden state: ~1/3 of 12-token responses
        h = policy(torch.randint(4, tok.vocab_size, (16, 20)), return_hidden=True).mean((0, 1))  # end, the rest are cut
        policy.output.weight[tok.eos_id] = 4 * h / h.norm() ** 2
    save_model(policy, str(d / "policy"), tokenizer=tok)
    rm = Transformer(model_args("test", vocab_size=tok.vocab_size, head="scalar"))
    rm.init_weights(std=0.1)
    save_model(rm, str(d / "rm"), tokenizer=tok)

    def run(name, ok=True, nproc=1, **overrides):
        args = dict(prompts=d / "prompts.jsonl", policy=d / "policy", reward=d / "rm", out_dir=d / name,
                    recipe="paper", batch_size=8, minibatch=4, micro_batch=2, max_new_tokens=12, max_prompt_len=40, max_steps=3,
                    lr=1e-3, epochs=2, device="cpu", save_every=0)
        args.update(overrides)
        launch = [sys.executable] if nproc == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        p = subprocess.run(launch + ["train_ppo.py"] + [f"--{k}={v}" for k, v in args.items()], cwd=ROOT,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=180)
        assert (p.returncode == 0) == ok, p.stdout[-2000:] + p.stderr[-3000:]
        with open(d / name / "metrics.jsonl") as f:
            return [json.loads(line) for line in f], p.stdout

    return d, tok, run


@pytest.fixture(scope="module")
def standard(setup):
    return setup[2]("standard")


def test_smoke_step0_kl_is_zero_and_sampler_logps_match(setup, standard):
    d, tok, _ = setup
    metrics, out = standard
    assert [m["step"] for m in metrics] == [0, 1, 2] and "1 longer than 40 tokens dropped" in out
    m0 = metrics[0]
    assert m0["objective/kl"] == 0.0 and m0["objective/kl_k3"] == 0.0  # the policy starts as the reference
    for m in metrics:
        assert m["policy/sampler_logp_err"] < 1e-5  # scoring == the sampler's own log-probs, temperature included
        assert 1 <= m["response/length"] <= 12 and math.isfinite(m["loss/value"])
    # at first some responses are cut at 12 tokens and score -10 instead of the RM's score; PPO learns to stop
    assert 0 < m0["response/eos_rate"] < 1 and m0["objective/scores"] < m0["objective/rm_scores"] - 1
    assert metrics[-1]["response/eos_rate"] > m0["response/eos_rate"]
    assert metrics[-1]["objective/kl"] != 0.0 and metrics[-1]["policy/clipfrac"] > 0  # it moved, and got clipped
    trained, init = load_model(str(d / "standard")).state_dict(), load_model(str(d / "policy")).state_dict()
    assert all((trained[k] - init[k]).abs().max() > 0 for k in init)


def test_recompute_mode_has_ratio_one(setup):
    """EasyLM's loop re-scores each minibatch with the current parameters right before its update: with one PPO
    epoch the ratio is exactly 1, so nothing is ever clipped."""
    metrics, _ = setup[2]("recompute", recompute="true", max_steps=2)
    for m in metrics:
        assert m["policy/ratio"] == pytest.approx(1.0, abs=1e-6)
        assert m["policy/clipfrac"] == 0.0 and m["policy/approxkl"] < 1e-12


def test_killed_run_resumes_to_the_same_weights(setup, standard):
    d, _, run = setup
    run("part", ok=False, save_every=1, stop_after=2)  # "killed" after step 2 of 3
    assert os.path.exists(d / "part" / "ckpt" / "train_state.pt")
    assert os.path.exists(d / "part" / "ckpt" / "value" / "model.safetensors")  # one checkpoint: policy and value
    metrics, out = run("part", save_every=1)
    assert "resumed from" in out and [m["step"] for m in metrics] == [0, 1, 2]
    assert metrics[2] == {**standard[0][2], "time": metrics[2]["time"], "rollouts_per_s": metrics[2]["rollouts_per_s"]}
    a, b = load_model(str(d / "standard")).state_dict(), load_model(str(d / "part")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not os.path.exists(d / "part" / "ckpt")


KNOBS = dict(reward_norm="true", reward_norm_prompts=16, kl_target=1.0, kl_horizon=40)  # 8 rollouts per step


@pytest.fixture(scope="module")
def knobs(setup):
    return setup[2]("knobs", **KNOBS)


def test_reward_norm_standardises_the_initial_policys_samples(setup, knobs):
    """reward_norm.json holds the 16 calibration samples with the RM's raw scores (re-scored here one at a time,
    unpadded) and gain and bias that take them to mean 0 and standard deviation 1."""
    d, tok, _ = setup
    with open(d / "knobs" / "reward_norm.json") as f:
        norm = json.load(f)
    with open(d / "prompts.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert norm["n"] == len(norm["samples"]) == 16 and len({s["row"] for s in norm["samples"]}) == 16
    assert "reward normalisation from 16 samples" in knobs[1]
    rm = load_model(str(d / "rm")).eval()
    for s in norm["samples"]:
        prompt = encode_chat(tok, [dict(role="user", content=rows[s["row"]]["prompt"])], add_generation_prompt=True)
        with torch.no_grad():
            assert rm(torch.tensor([prompt[0] + s["response"]]))[0, -1].item() == pytest.approx(s["score"], abs=1e-5)
    z = norm["gain"] * torch.tensor([s["score"] for s in norm["samples"]], dtype=torch.float64) + norm["bias"]
    assert abs(z.mean()) < 1e-9 and abs(z.std(correction=0) - 1) < 1e-9


def test_missing_eos_penalty_replaces_the_normalised_score(setup, knobs):
    """Step 0 samples the same rollouts whatever missing_eos_score is (the first update comes after them). Moving
    the penalty from -10 to -20 moves objective/scores by (1 - eos_rate) * -10 when the penalty replaces the
    normalised score, and by gain times that if the normalisation were applied after the penalty."""
    m10 = knobs[0][0]
    m20 = setup[2]("knobs_eos20", **KNOBS, missing_eos_score=-20.0, max_steps=1)[0][0]
    with open(setup[0] / "knobs" / "reward_norm.json") as f:
        gain = json.load(f)["gain"]
    assert abs(gain - 1) > 0.1 and 0 < m10["response/eos_rate"] < 1  # both orders would show
    assert m20["objective/rm_scores"] == m10["objective/rm_scores"]  # the same rollouts
    shift = (1 - m10["response/eos_rate"]) * -10.0
    assert m20["objective/scores"] - m10["objective/scores"] == pytest.approx(shift, abs=1e-6)


def test_adaptive_kl_coef_follows_the_logged_kl(knobs, standard):
    """beta starts at kl_coef and after each step moves by the controller's rule applied to that step's
    objective/kl (8 rollouts per step, target 1, horizon 40); without kl_target it stays at kl_coef."""
    m = knobs[0]
    assert m[0]["objective/kl_coef"] == 0.05
    for a, b in zip(m, m[1:]):
        error = min(max(a["objective/kl"] / 1.0 - 1, -0.2), 0.2)
        assert b["objective/kl_coef"] == pytest.approx(a["objective/kl_coef"] * (1 + error * 8 / 40), rel=1e-12)
    for x in m:  # the rewards used this step's beta
        assert x["objective/rlhf_reward"] == pytest.approx(x["objective/scores"] - x["objective/kl_coef"] *
                                                           x["objective/kl"], abs=1e-6)
    assert len({x["objective/kl_coef"] for x in m}) == 3
    assert all(x["objective/kl_coef"] == 0.05 for x in standard[0])


def test_killed_run_resumes_reward_norm_and_beta(setup, knobs):
    """A resumed run reuses the checkpoint's gain, bias and beta (it does not refit on the trained policy):
    the same step 2, the same weights, as the uninterrupted run."""
    d, _, run = setup
    run("knobs_part", ok=False, save_every=1, stop_after=2, **KNOBS)
    metrics, out = run("knobs_part", save_every=1, **KNOBS)
    assert "resumed from" in out and "reward normalisation from" not in out
    assert metrics[2] == {**knobs[0][2], "time": metrics[2]["time"], "rollouts_per_s": metrics[2]["rollouts_per_s"]}
    a, b = load_model(str(d / "knobs")).state_dict(), load_model(str(d / "knobs_part")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_fsdp_two_ranks(setup):
    """Under torchrun each rank samples from its own gathered copy of the sharded policy, whitens over the whole
    minibatch and reduces the statistics: same checks as one process (the samples differ: one RNG per rank).
    With the knobs on: each rank samples half the calibration prompts, and both get the same gain and beta."""
    d, _, run = setup
    metrics, _ = run("fsdp", nproc=2, max_steps=2, **KNOBS)
    assert metrics[0]["objective/kl"] == 0.0 and all(m["policy/sampler_logp_err"] < 1e-5 for m in metrics)
    assert load_model(str(d / "fsdp")) is not None
    with open(d / "fsdp" / "reward_norm.json") as f:
        norm = json.load(f)
    assert norm["n"] == 16 and len({s["row"] for s in norm["samples"]}) == 16
    error = min(max(metrics[0]["objective/kl"] - 1, -0.2), 0.2)
    assert metrics[1]["objective/kl_coef"] == pytest.approx(0.05 * (1 + error * 8 / 40), rel=1e-12)


@torch.no_grad()
def test_sampling_copy_refreshes_in_place():
    torch.manual_seed(0)
    m = Transformer(model_args("test", tie_embeddings=True))
    m.init_weights()
    assert sampling_copy(m) is m  # one process, same dtype: the model itself
    copy = sampling_copy(m, torch.bfloat16)
    x = torch.randint(0, 512, (2, 10))
    assert copy.tok_embeddings.weight.dtype == torch.bfloat16 and (copy(x).float() - m(x)).abs().max() < 0.02
    m.layers[0].attention.wq.weight.mul_(2)
    assert sampling_copy(m, torch.bfloat16, into=copy) is copy
    assert torch.equal(copy(x), sampling_copy(m, torch.bfloat16)(x))


@pytest.mark.slow
def test_two_ranks_sample_their_own_rollouts(setup, tmp_path):
    """Each rank seeds its sampler with seed + rank. Given one prompt repeated, rank 0's and rank 1's responses
    (rollouts.jsonl gathers both) must differ; with one seed on every rank, row j of each rank would be the same."""
    d, _, run = setup
    first = open(d / "prompts.jsonl").readline()
    (tmp_path / "same.jsonl").write_text(first * 16)
    run("same_prompt", nproc=2, prompts=tmp_path / "same.jsonl", max_steps=1)
    (row,) = [json.loads(line) for line in open(d / "same_prompt" / "rollouts.jsonl")]
    by_rank = [[r["response"] for r in row["rollouts"] if r["rank"] == k] for k in (0, 1)]
    assert len(by_rank[0]) == len(by_rank[1]) == 4
    assert by_rank[0] != by_rank[1], by_rank
