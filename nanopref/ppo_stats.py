"""PPO's logged statistics, kept out of train_ppo.py's loop: sums over this rank's tokens, rollouts and
updates during one step, all-reduced once, then divided by what each metric is a mean over. The names are
those of lm-human-preferences and TRL (objective/, policy/, val/, ...); each is a float in metrics.jsonl."""
from collections import defaultdict

import torch

from nanopref.losses import kl_estimate
from nanopref.training import all_reduce_sum


class PPOStats:
    def __init__(self):
        self.sums = defaultdict(float)  # on this rank: over the update tokens, rollouts, optimizer steps
        self.has_truth = False

    @torch.no_grad()
    def update(self, pg, pg_clipped, vf, vf_clipped, logps, old_logps, mask):
        """One micro-batch of a PPO update: per-token losses, clip flags and log-probs, (b, N) each."""
        log_ratio = (logps - old_logps) * mask
        s = self.sums
        s["pg_loss"] += pg.sum().item()
        s["vf_loss"] += vf.sum().item()
        s["pg_clipped"] += pg_clipped.sum().item()
        s["vf_clipped"] += vf_clipped.sum().item()
        s["approxkl"] += 0.5 * (log_ratio ** 2).sum().item()  # lm-human-preferences' approxkl
        s["ratio"] += (log_ratio.exp() * mask).sum().item()
        s["update_tokens"] += mask.sum().item()

    def grad_norms(self, policy, value):
        """One optimizer step's pre-clipping gradient norms of the two models."""
        self.sums["grad_norm_policy"] += float(policy)
        self.sums["grad_norm_value"] += float(value)

    def rollouts(self, scored, mask, sampler_logps=None, truth=None):
        """The step's rollouts as scored (train_ppo.score_rollouts: (B,) and (B, N) tensors), their response
        mask (B, N), the sampler's own log-probs (None: not comparable, as under --recompute) and ground-truth
        scores (None: no world)."""
        mask = mask.float()
        ret, err = scored["returns"], (scored["returns"] - scored["values"]) * mask
        sampler_err = 0.0 if sampler_logps is None else \
            ((sampler_logps - scored["logps"]).abs() * mask).sum().item()
        self.sums.update(
            rollouts=len(mask), tokens=mask.sum().item(), score=scored["scores"].sum().item(),
            rm_score=scored["rm_scores"].sum().item(), kl=scored["kl"].sum().item(),
            kl_k3=(kl_estimate(scored["logps"], scored["ref_logps"], "k3") * mask).sum().item(),
            entropy=scored["entropy"].sum().item(), eos=scored["eos"].sum().item(), ret=ret.sum().item(),
            ret2=(ret ** 2).sum().item(), err=err.sum().item(), err2=(err ** 2).sum().item(),
            truth=sum(truth or []), sampler_err=sampler_err)
        self.has_truth = truth is not None

    def metrics(self, kl_coef, n_updates, n_ranks):
        """All-reduce the sums (collective: every rank calls it) -> {name: value}, means over all ranks.
        kl_coef: the beta this step's rewards used; n_updates: optimizer steps per rank in the step."""
        keys = sorted(self.sums)
        tot = dict(zip(keys, all_reduce_sum(torch.tensor([self.sums[k] for k in keys],
                                                         dtype=torch.float64)).tolist()))
        n, n_tok, upd = tot["rollouts"], tot["tokens"], tot["update_tokens"]
        var = lambda x, x2: x2 / n_tok - (x / n_tok) ** 2  # noqa: E731  token variance from sums
        return {
            "objective/scores": tot["score"] / n,  # normalised, missing-EOS penalty: what PPO maximises
            "objective/rm_scores": tot["rm_score"] / n,  # the reward model's own score, penalty or not
            "objective/kl": tot["kl"] / n,  # k1 summed over a response, mean over responses
            "objective/kl_k3": tot["kl_k3"] / n,
            "objective/kl_coef": kl_coef,  # beta: fixed, or the adaptive controller's (--kl_target)
            "objective/rlhf_reward": (tot["score"] - kl_coef * tot["kl"]) / n,
            "objective/entropy": tot["entropy"] / n_tok,  # per token, of the tempered sampling distribution
            "policy/clipfrac": tot["pg_clipped"] / upd,
            "policy/approxkl": tot["approxkl"] / upd,
            "policy/ratio": tot["ratio"] / upd,
            "policy/sampler_logp_err": tot["sampler_err"] / n_tok,
            "loss/policy": tot["pg_loss"] / upd,
            "loss/value": tot["vf_loss"] / upd,
            "val/explained_var": 1 - var(tot["err"], tot["err2"]) / max(var(tot["ret"], tot["ret2"]), 1e-12),
            "val/clipfrac": tot["vf_clipped"] / upd,
            "response/length": n_tok / n,
            "response/eos_rate": tot["eos"] / n,
            **({"world/rollout_truth": tot["truth"] / n} if self.has_truth else {}),
            "grad_norm/policy": tot["grad_norm_policy"] / n_ranks / n_updates,
            "grad_norm/value": tot["grad_norm_value"] / n_ranks / n_updates}
