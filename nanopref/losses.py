"""Every objective as a pure function: token log-probs, SFT, Bradley-Terry and regression reward losses, DPO and
its variants, and PPO's pieces (KL estimators, rewards, GAE, whitening, clipped policy and value losses). Scripts
call them; tests hit them directly.

One masking convention, stated once: `tokens` (B, T) are the input ids and `loss_mask` (B, T) is 1 on the
response tokens we score (EOS included), 0 on prompt and padding. The logit at position t-1 predicts token t, so
a sequence log-prob is sum_t loss_mask[t] * log p(tokens[t] | tokens[<t]) for t >= 1. Log-softmax is always taken
in fp32.
"""
import torch
import torch.nn.functional as F

from nanopref.model import last_real_index


def logprobs(logits, temperature=1.0):
    """log softmax(logits / temperature) in fp32, (..., V) -> (..., V): the distribution a sampler at this
    temperature draws from. Every scored log-prob goes through here, so PPO's ratio and KL penalty are those
    of the distribution that sampled (entropy() below is that distribution's entropy)."""
    return (logits.float() / temperature).log_softmax(-1)


def token_logps(logits, tokens, temperature=1.0):
    """log p(tokens[t] | tokens[<t]) under logits / temperature, (B, T) with position 0 set to 0.
    logits: (B, T, V) in any dtype; the log-softmax runs in fp32 one row at a time for low-precision logits,
    so a (B, T, V) fp32 copy is never materialised."""
    logits = logits[:, :-1]  # (B, T-1, V): position t-1 predicts token t
    targets = tokens[:, 1:, None]  # (B, T-1, 1)
    if logits.dtype == torch.float32:
        out = logprobs(logits, temperature).gather(-1, targets).squeeze(-1)
    else:
        out = torch.stack([logprobs(row, temperature).gather(-1, t).squeeze(-1)
                           for row, t in zip(logits, targets)])
    return F.pad(out, (1, 0))  # (B, T)


def response_logps(logits, tokens, prompt_len, temperature=1.0):
    """Log-probs (B, N) of the response tokens tokens[:, prompt_len:] under softmax(logits / temperature), for
    sequences laid out as a (left-padded) prompt of prompt_len columns and then the response: the sampler's
    layout, so with its temperature these are the log-probs it sampled with. logits: (B, prompt_len + N, V)."""
    # slice from the last prompt column, whose logits predict the first response token; drop its own (prompt) score
    return token_logps(logits[:, prompt_len - 1:], tokens[:, prompt_len - 1:], temperature)[:, 1:]


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


# -----------------------------------------------------------------------------
# PPO for language models (Schulman et al. 2017; as RLHF uses it: Ziegler et al. 2019, Ouyang et al. 2022). Per
# response token: tensors are (B, N) over the N response tokens of B rollouts, and `mask` (B, N) is 1 on a row's
# real response tokens (EOS included), contiguous from position 0 (right padding). Per-token losses come back
# unreduced (0 where mask is 0): the script divides their sum by the minibatch's token count.


def kl_estimate(logps, ref_logps, kind="k1"):
    """Per-token estimates of KL(pi || ref) from tokens sampled from pi (Schulman, "Approximating KL divergence"):
      k1 = log pi - log ref                unbiased, but negative whenever ref likes a token more than pi does
      k2 = (log pi - log ref)^2 / 2        biased, non-negative
      k3 = (r - 1) - log r, r = ref / pi   unbiased and non-negative
    The paper's reward penalty is k1 (EasyLM: kl = logp_policy - logp_ref)."""
    log_ratio = logps - ref_logps
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; known: k1 k2 k3")


def penalise_missing_eos(scores, last_tokens, eos_id, penalty=-10.0):
    """The paper's score: the reward model's score where a response ends with EOS, else `penalty` (EasyLM: -10,
    "If the last token is not EOS, then we set the reward to -10"), so truncated rambling never pays. (B,)"""
    return torch.where(last_tokens == eos_id, scores, torch.full_like(scores, penalty))


def ppo_rewards(scores, kl, mask, kl_coef=0.05):
    """Per-token rewards (B, N): -kl_coef * kl on every response token, plus the sequence's score (B,) on its last
    real token (the EOS the reward model read, or the last token of a truncated response)."""
    rewards = -kl_coef * kl * mask
    return rewards.scatter_add(1, last_real_index(mask)[:, None], scores[:, None].to(rewards.dtype))


def reward_gain_bias(scores, mean=0.0, std=1.0):
    """Reward normalisation (lm-human-preferences' set_reward_norm): floats (gain, bias) such that
    gain * scores + bias has this mean and (population) standard deviation over `scores` (N,), the RM's raw
    scores of samples from the initial policy."""
    scores = scores.double()
    sd = scores.std(correction=0).item()
    if not sd > 0:
        raise ValueError(f"reward normalisation: {len(scores)} calibration scores with no spread (std {sd})")
    gain = std / sd
    return gain, mean - gain * scores.mean().item()


def adaptive_kl_coef(kl_coef, kl, target, horizon, n_rollouts):
    """Ziegler et al. 2019's proportional controller of beta (lm-human-preferences' AdaptiveKLController):
        e = clip(kl / target - 1, -0.2, 0.2)        beta <- beta * (1 + e * n_rollouts / horizon)
    kl: the mean summed KL per response of the n_rollouts just scored; horizon is counted in rollouts, so beta
    moves by at most 20% every `horizon` rollouts. -> the beta of the next step."""
    error = min(max(kl / target - 1, -0.2), 0.2)
    return kl_coef * (1 + error * n_rollouts / horizon)


def gae(rewards, values, mask, gamma=1.0, lam=0.95):
    """Generalised advantage estimation (Schulman et al. 2016), vectorised over the batch, backwards over time:
      delta_t = r_t + gamma V_{t+1} - V_t        A_t = delta_t + gamma lam A_{t+1}        returns_t = A_t + V_t
    Past a row's last real token V and A are 0: the episode ends there (at EOS, or at truncation, which the
    missing-EOS score penalises rather than bootstraps). rewards, values, mask: (B, N) -> advantages, returns
    (B, N), 0 where mask is 0."""
    mask = mask.to(rewards.dtype)
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])  # (B,)
    N = rewards.shape[1]
    for t in reversed(range(N)):
        next_value = values[:, t + 1] if t + 1 < N else torch.zeros_like(next_adv)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
    return advantages, (advantages + values) * mask


def whiten(x, mask, shift_mean=True, eps=1e-8, all_reduce=None):
    """(x - mean) / sqrt(var + eps) over the entries where mask is 1, the variance unbiased (n - 1), as
    lm-human-preferences and EasyLM whiten advantages; shift_mean=False adds the mean back (their option for
    rewards). all_reduce: a function summing a tensor over ranks, so that under FSDP the statistics are those of
    the whole minibatch, not of one rank's share. -> (B, N), 0 where mask is 0."""
    all_reduce = all_reduce or (lambda t: t)
    mask = mask.to(x.dtype)
    total, n = all_reduce(torch.stack([(x * mask).sum(), mask.sum()])).unbind()
    mean = total / n
    var = all_reduce(((x - mean) ** 2 * mask).sum()) / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask


def ppo_policy_loss(logps, old_logps, advantages, mask, clip=0.2):
    """PPO's clipped surrogate per token: max(-A r, -A clip(r, 1 - clip, 1 + clip)), r = pi / pi_old =
    exp(logps - old_logps). -> (loss (B, N), clipped (B, N) bool: where the clipped term is the larger, i.e. the
    token gives no gradient; lm-human-preferences' pg_clipfrac), both 0 where mask is 0."""
    ratio = torch.exp(logps - old_logps)
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1 - clip, 1 + clip)
    return torch.max(loss1, loss2) * mask, (loss2 > loss1) & mask.bool()


def ppo_value_loss(values, old_values, returns, mask, clip=0.2):
    """Clipped value loss per token: 0.5 max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, -clip,
    clip) (lm-human-preferences, EasyLM). -> (loss (B, N), clipped (B, N) bool: vf_clipfrac), 0 where mask is 0."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    loss1 = (values - returns) ** 2
    loss2 = (clipped_values - returns) ** 2
    return 0.5 * torch.max(loss1, loss2) * mask, (loss2 > loss1) & mask.bool()


def entropy(logits, temperature=1.0):
    """Entropy of softmax(logits / temperature) over the last dimension, in fp32: (..., V) -> (...). The
    distribution of logprobs(); from the probabilities, since entr(p) = -p log p is 0 at p = 0."""
    return torch.special.entr((logits.float() / temperature).softmax(-1)).sum(-1)
