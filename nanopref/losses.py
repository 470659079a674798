"""Every objective as a pure function: token log-probs, SFT, Bradley-Terry and regression reward losses, DPO and
its variants. Scripts call them; tests hit them directly.

One masking convention, stated once: `tokens` (B, T) are the input ids and `loss_mask` (B, T) is 1 on the
response tokens we score (EOS included), 0 on prompt and padding. The logit at position t-1 predicts token t, so
a sequence log-prob is sum_t loss_mask[t] * log p(tokens[t] | tokens[<t]) for t >= 1. Log-softmax is always taken
in fp32.
"""
import torch
import torch.nn.functional as F


def token_logps(logits, tokens, temperature=1.0):
    """log p(tokens[t] | tokens[<t]) under logits / temperature, (B, T) with position 0 set to 0.
    logits: (B, T, V) in any dtype; the log-softmax runs in fp32 one row at a time for low-precision logits,
    so a (B, T, V) fp32 copy is never materialised."""
    logits = logits[:, :-1]  # (B, T-1, V): position t-1 predicts token t
    targets = tokens[:, 1:, None]  # (B, T-1, 1)
    if logits.dtype == torch.float32:
        out = (logits / temperature).log_softmax(-1).gather(-1, targets).squeeze(-1)
    else:
        out = torch.stack([(row.float() / temperature).log_softmax(-1).gather(-1, t).squeeze(-1)
                           for row, t in zip(logits, targets)])
    return F.pad(out, (1, 0))  # (B, T)


def sequence_logps(logits, tokens, loss_mask, average=False):
    """Sum over response tokens of their log-probs, (B,). average=True divides by each row's response length."""
    lp = (token_logps(logits, tokens) * loss_mask).sum(-1)
    return lp / loss_mask.sum(-1).clamp(min=1) if average else lp


def sft_loss(logits, tokens, loss_mask):
    """-> (sum of token NLLs, number of response tokens). Divide the summed numerators by the summed counts
    over all micro-batches, so that gradient accumulation weights every token as one big batch would."""
    nll = -(token_logps(logits, tokens) * loss_mask).sum()
    return nll, loss_mask.sum()


def bradley_terry_loss(r_chosen, r_rejected, margin=0.0):
    """-log sigma(r_c - r_r - margin), (B,). The reward model's pairwise loss (margin 0 in the paper)."""
    return -F.logsigmoid(r_chosen - r_rejected - margin)


def regression_loss(pred, target):
    """Squared error to a per-response rating, (B,): the regression variant of the reward model."""
    return (pred - target) ** 2


DPO_LOSSES = ("sigmoid", "ipo", "hinge", "norm", "reference_free", "simpo")


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1,
             loss_type="sigmoid", label_smoothing=0.0, chosen_lengths=None, rejected_lengths=None,
             simpo_gamma=0.5):
    """The DPO family. Inputs are summed response log-probs, each (B,); returns (losses, chosen_rewards,
    rejected_rewards), each (B,), the rewards detached.

    With h = [log pi(y_c) - log ref(y_c)] - [log pi(y_r) - log ref(y_r)]:
      sigmoid         -(1-eps) log sigma(beta h) - eps log sigma(-beta h)   DPO (Rafailov et al. 2023, eq. 7);
                      eps = label_smoothing > 0 is conservative DPO (cDPO). The paper's loss, beta = 0.1.
      hinge           max(0, 1 - beta h)                                    SLiC-HF's calibration loss
      ipo             (h_avg - 1/(2 beta))^2, h_avg from length-*averaged* log-probs, as IPO's authors define
                      it (Azar et al. 2023; summed log-probs make the target margin length-dependent)
      norm            the sigmoid loss on length-averaged log-probs (length-normalised DPO)
      reference_free  the sigmoid loss with the reference terms dropped: h = log pi(y_c) - log pi(y_r)
      simpo           -log sigma(beta (avg log pi(y_c) - avg log pi(y_r)) - gamma), reference-free (Meng et al.
                      2024; use beta around 2, gamma = simpo_gamma)
    Implicit rewards are beta * (log pi - log ref) on the same (summed or averaged) log-probs the loss uses.
    ipo, norm and simpo need chosen_lengths and rejected_lengths (response tokens, EOS included)."""
    if loss_type not in DPO_LOSSES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; known: {DPO_LOSSES}")
    pc, pr, rc, rr = policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    if loss_type in ("ipo", "norm", "simpo"):
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"loss_type {loss_type} needs chosen_lengths and rejected_lengths")
        pc, rc = pc / chosen_lengths, rc / chosen_lengths
        pr, rr = pr / rejected_lengths, rr / rejected_lengths
    if loss_type in ("reference_free", "simpo"):
        rc, rr = torch.zeros_like(rc), torch.zeros_like(rr)
    chosen_ratio, rejected_ratio = pc - rc, pr - rr  # (B,)
    h = chosen_ratio - rejected_ratio
    if loss_type in ("sigmoid", "norm", "reference_free"):
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:  # simpo
        losses = -F.logsigmoid(beta * h - simpo_gamma)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
