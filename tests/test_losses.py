"""Losses against independent computations: Python-float loops and closed forms written out by hand."""
import math
import random

import pytest
import torch

from nanopref.losses import (DPO_LOSSES, bradley_terry_loss, dpo_loss, entropy, logprobs, sequence_logps, sft_loss,
                             token_logps)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def naive_sequence_logp(logits, tokens, mask):
    """One row: sum over t >= 1 with mask[t] of log softmax(logits[t-1])[tokens[t]], in Python floats."""
    total = 0.0
    for t in range(1, len(tokens)):
        if mask[t]:
            row = logits[t - 1]
            m = max(row)
            lse = m + math.log(sum(math.exp(x - m) for x in row))
            total += row[tokens[t]] - lse
    return total


def test_sequence_logps_against_loop():
    torch.manual_seed(0)
    B, T, V = 3, 9, 11
    logits = torch.randn(B, T, V) * 3
    tokens = torch.randint(0, V, (B, T))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 1]])
    ours = sequence_logps(logits, tokens, mask)
    for b in range(B):
        ref = naive_sequence_logp(logits[b].tolist(), tokens[b].tolist(), mask[b].tolist())
        assert abs(ours[b].item() - ref) < 1e-4
    avg = sequence_logps(logits, tokens, mask, average=True)
    assert torch.allclose(avg, ours / mask.sum(-1))


def test_low_precision_logits_use_fp32_log_softmax():
    torch.manual_seed(0)
    logits = (torch.randn(2, 50, 3000) * 4).bfloat16()
    tokens = torch.randint(0, 3000, (2, 50))
    lp = token_logps(logits, tokens)
    ref = token_logps(logits.float(), tokens)
    assert lp.dtype == torch.float32 and torch.allclose(lp, ref, atol=1e-5)


def test_sft_loss_accumulation_weights_tokens_like_one_batch():
    torch.manual_seed(0)
    logits, tokens = torch.randn(4, 7, 5), torch.randint(0, 5, (4, 7))
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]])
    s, n = sft_loss(logits, tokens, mask)
    s1, n1 = sft_loss(logits[:2], tokens[:2], mask[:2])
    s2, n2 = sft_loss(logits[2:], tokens[2:], mask[2:])
    assert torch.allclose(s / n, (s1 + s2) / (n1 + n2))
    assert n == 11


def test_bradley_terry_by_hand():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), margin=0.5)
    assert abs(loss[0].item() - math.log1p(math.exp(-0.5))) < 1e-6
    assert abs(loss[1].item() - math.log1p(math.exp(0.5))) < 1e-6


def closed_form(pc, pr, rc, rr, lc, lr, beta, kind, eps, gamma):
    """The DPO family for one example, Python floats."""
    if kind in ("ipo", "norm", "simpo"):
        pc, pr, rc, rr = pc / lc, pr / lr, rc / lc, rr / lr
    if kind in ("reference_free", "simpo"):
        rc = rr = 0.0
    h = (pc - rc) - (pr - rr)
    loss = {"sigmoid": -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h),
            "norm": -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h),
            "reference_free": -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h),
            "hinge": max(0.0, 1 - beta * h),
            "ipo": (h - 1 / (2 * beta)) ** 2,
            "simpo": -log_sigmoid(beta * h - gamma)}[kind]
    return loss, beta * (pc - rc), beta * (pr - rr)


@pytest.mark.parametrize("kind,eps", [(k, 0.0) for k in DPO_LOSSES] + [(k, 0.2) for k in ("sigmoid", "norm",
                                                                                         "reference_free")])
def test_dpo_family_closed_forms(kind, eps):
    rng = random.Random(f"{kind}-{eps}")
    B = 16
    vals = [[rng.uniform(-80, -5) for _ in range(B)] for _ in range(4)]
    lens = [[float(rng.randint(3, 60)) for _ in range(B)] for _ in range(2)]
    beta = rng.choice([0.1, 0.5, 2.0])
    losses, cr, rr_ = dpo_loss(*[torch.tensor(v, dtype=torch.float64) for v in vals], beta=beta, loss_type=kind,
                               label_smoothing=eps, chosen_lengths=torch.tensor(lens[0], dtype=torch.float64),
                               rejected_lengths=torch.tensor(lens[1], dtype=torch.float64), simpo_gamma=0.7)
    for i in range(B):
        ref = closed_form(*[v[i] for v in vals], lens[0][i], lens[1][i], beta, kind, eps, 0.7)
        assert abs(losses[i].item() - ref[0]) < 1e-9 * max(1, abs(ref[0]))
        assert abs(cr[i].item() - ref[1]) < 1e-9 and abs(rr_[i].item() - ref[2]) < 1e-9


def test_dpo_at_reference_is_ln2_with_zero_rewards():
    pc, pr = torch.tensor([-12.0, -40.0]), torch.tensor([-30.0, -7.5])
    losses, cr, rr = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert torch.allclose(losses, torch.full((2,), math.log(2)))
    assert (cr == 0).all() and (rr == 0).all()


def test_dpo_gradient_direction():
    """The loss pushes the chosen log-prob up and the rejected one down."""
    pc, pr = torch.tensor([-10.0], requires_grad=True), torch.tensor([-10.0], requires_grad=True)
    for kind in DPO_LOSSES:
        pc.grad = pr.grad = None
        losses, _, _ = dpo_loss(pc, pr, torch.tensor([-10.0]), torch.tensor([-10.0]), loss_type=kind,
                                chosen_lengths=torch.tensor([5.0]), rejected_lengths=torch.tensor([5.0]))
        losses.sum().backward()
        assert pc.grad.item() < 0 < pr.grad.item(), kind


def test_bad_loss_type():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="unknown DPO loss_type"):
        dpo_loss(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="needs chosen_lengths"):
        dpo_loss(x, x, x, x, loss_type="ipo")


def test_tempered_logprobs_entropy_and_token_logps_agree():
    """One tempered distribution: logprobs(logits, T) is log softmax(logits / T) in Python floats, token_logps at T
    reads it at the targets (fp32 and bf16 paths alike), and entropy(logits, T) is -sum p log p of it."""
    torch.manual_seed(0)
    logits, T = torch.randn(2, 5, 7) * 3, 0.7
    lp = logprobs(logits, T)
    for row, want in zip(logits.view(-1, 7).tolist(), lp.view(-1, 7).tolist()):
        z = [x / T for x in row]
        lse = max(z) + math.log(sum(math.exp(x - max(z)) for x in z))
        assert want == pytest.approx([x - lse for x in z], abs=1e-5)
    assert torch.allclose(entropy(logits, T), -(lp.exp() * lp).sum(-1), atol=1e-5)
    assert not torch.allclose(entropy(logits, T), entropy(logits), atol=1e-2)  # the temperature matters
    tokens = torch.randint(0, 7, (2, 5))
    want = lp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
    assert torch.allclose(token_logps(logits, tokens, T)[:, 1:], want, atol=1e-6)
    bf16 = logits.bfloat16()
    assert torch.allclose(token_logps(bf16, tokens, T)[:, 1:],
                          logprobs(bf16.float(), T)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1), atol=1e-6)
