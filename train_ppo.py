"""PPO with GAE and a separate value model, from a reward model: the paper's recipe (EasyLM
llama_train_ppo.py).

    python train_ppo.py                 # the embedded world: policy and reference from out/sft, reward
                                        # and value models from out/rm, the world's ppo_general prompts;
                                        # ~3-4 min on a CPU
    python train_ppo.py --prompts=math  # the world's math-targeted prompts (the paper's "mixed prompts" runs)
    python train_ppo.py --recipe=paper --prompts=uf_prompts.jsonl --policy=/ckpts/tulu-2-7b \
        --reward=/ckpts/tulu-2-7b-uf-rm \
        --out_dir=out/ppo-7b --dtype=bfloat16 --micro_batch=4 --gen_batch=64 --compile=true
    torchrun --nproc_per_node=8 train_ppo.py --recipe=paper --prompts=... --policy=... --reward=... \
        --dtype=bfloat16                                                                       # FSDP2

One step: (1) the current policy samples one response per prompt of a rollout batch (temperature 0.7).
(2) The reward model scores prompt + response at its last token (the EOS it was trained to score); a
response without EOS (cut at max_new_tokens) scores -10 instead. (3) Per-token rewards are
-beta (log pi - log ref), with the score added on the last token; GAE (gamma 1, lambda 0.95) over the value
model's per-token values gives advantages and returns. (4) In minibatches, the clipped PPO objective updates
the policy and the clipped value loss the value model (joint loss pg + 0.1 vf, separate parameters and
optimizers), advantages whitened per minibatch. (5) One log line. --prompts is "general" or "math" (world),
or a JSONL of {"messages": [..., user turn]} or {"prompt": "..."} rows.

The run directory: out_dir/model (the policy, HF layout + tokenizer.model), metrics.jsonl (one row per step),
eval_world.json and eval_world_samples.jsonl (world), rollouts.jsonl (each step's responses and scores, every
rank's), reward_norm.json (--reward_norm), and ckpt/ (policy, and the
value model in ckpt/value) while training: a killed run restarts from its last checkpoint when run again with the
same arguments.

Under FSDP each rank samples its share of the prompts from its own whole copy of the policy
(training.sampling_copy: gathered one tensor at a time, in bf16 under --dtype=bfloat16), so ranks never wait
on each other inside the decode loop; every forward for scoring and training runs on the sharded models.

Choices and departures from the paper (EasyLM: lr 1e-6 for policy and value with 10% warmup then constant,
AdamW (0.9, 0.95) wd 0, clip 1.0, 512 prompts per step, minibatch 64, 1 PPO epoch, beta 0.05 fixed,
missing-EOS score -10, no reward normalisation, max 1024 new tokens, 1 pass over the prompts):
  1. Standard PPO bookkeeping: old log-probs, values and rewards are scored once per rollout batch, with the
     parameters that sampled it, before the first update; minibatch k then has ratio pi_k / pi_0 and is
     clipped. EasyLM re-scores each minibatch with the current, already partly updated, parameters just before
     its update, so its ratio is exactly 1 (clipping never acts with 1 PPO epoch) and later minibatches are
     off-policy with no correction. --recompute=true runs that loop instead (dev/LOG.md compares the two).
  2. Log-probs are scored under the sampling distribution, softmax(logits / temperature) (losses.logprobs),
     for the policy, the old policy and the reference, so the ratio and the KL penalty are those of the
     distribution that sampled. EasyLM samples at 0.7 but scores raw logits (the N-details post: "scale the
     logits by sampling temperature").
  3. Sampling uses the full tempered softmax, no top-k. The paper's sampling had HF's default top_k 50 (which
     its scoring ignored); with top-k the scored log-prob of a sampled token becomes -inf once an update
     pushes it out of the top 50, and the reference's is -inf for tokens outside its own top 50, so ratio and
     KL are undefined.
  4. On the world, a ~1M-parameter policy: lr 1e-4 (the world's DPO/RM scale), 64 prompts per step in
     minibatches of 16 (4 updates per step), at most 96 new tokens, 2 passes over the 1200 prompts (36 steps,
     ~3-4 min on a CPU).
  5. Prompts longer than max_prompt_len are dropped (EasyLM: remove_truncated_samples), and counted.
  6. Prompts start with BOS, tokenized exactly as SFT, RM and DPO data are (EasyLM's PPO prompts may lack it:
     PAPER_NOTES 1.4 item 5). Gradients are clipped per model, each having its own optimizer (as in EasyLM).
Knobs practitioners use at small scale, off by default (the paper's setting):
  --reward_norm=true  gain and bias that give the RM's scores of the initial policy's samples mean 0 and std 1
     (lm-human-preferences), fitted once at the start on reward_norm_prompts training prompts, kept in
     reward_norm.json and the checkpoint (a resumed run reuses them). They apply before the missing-EOS
     penalty, so the penalty is in normalised units ("10 standard deviations below a typical SFT sample")
     whatever the RM's scale, and never enters the fit (after it, the share of truncated samples would set
     the scale).
  --kl_target=K  adaptive beta (Ziegler et al. 2019): after each step beta *= 1 + clip(KL / kl_target - 1,
     -0.2, 0.2) * batch_size / kl_horizon, starting from kl_coef; KL is objective/kl, the step's mean summed
     KL per response. Logged as objective/kl_coef; resumed from the checkpoint.
"""
import os
import random
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from nanopref import losses  # every objective as a pure function: losses.gae, losses.ppo_policy_loss, ...
from nanopref.checkpoint import check_same_tokenizer, load_model, load_tokenizer, model_config
from nanopref.common import MetricsLog, print0, seed_all, write_json, write_jsonl
from nanopref.config import check_config, parse_config, print_config, require_recipe
from nanopref.data import data_summary, load_prompts
from nanopref.evals import world as world_eval
from nanopref.evals.lm import NanoprefLM
from nanopref.generate import generate
from nanopref.model import last_real_index, num_params
from nanopref.ppo_stats import PPOStats
from nanopref.runs import load_run, open_run, save_final, save_run
from nanopref.tokenizer import encode_chat
from nanopref.training import (all_reduce_sum, batch_order, check_schedule, finish_distributed, full_state_dict,
                               init_distributed, lr_at, make_optimizer, micro_batches, sampling_copy, shard_model,
                               stop_if_nonfinite, unsharded)
from nanopref.world import score as ground_truth
from nanopref.world.build import build_world, load_world


@dataclass
class Config:
    prompts: str = "general"    # world prompts: general (the category mix) | math (math-targeted); or a JSONL
    policy: str | None = None   # SFT checkpoint: the policy's init and the frozen reference (None: out/sft)
    reward: str | None = None   # reward model, scalar head (None: out/rm on the world)
    value: str | None = None    # value model init, scalar head (None: the reward model, as in the paper)
    world_seed: int = 0         # which world to build or use
    out_dir: str | None = None  # run directory (None: out/ppo, out/ppo_math, or out/ppo_<file name>)
    recipe: str = "world"       # world: the values below; paper: the paper's (PAPER, under any flag given)
    template: str = "tulu"      # chat template: tulu or llama2
    max_prompt_len: int = 128   # longer prompts are dropped and counted
    max_new_tokens: int = 96    # longest response; a response cut here gets missing_eos_score
    temperature: float = 0.7    # sampling temperature, also applied to every scored log-prob
    batch_size: int = 64        # prompts per rollout step over all ranks, one response each
    minibatch: int = 16         # rollouts per optimizer step over all ranks
    micro_batch: int = 16       # sequences per forward on each rank
    gen_batch: int | None = None  # prompts per generate() call on each rank (None: all of the rank's at once)
    ppo_epochs: int = 1         # passes over each rollout batch
    epochs: int = 2             # passes over the prompts
    max_steps: int | None = None  # stop after this many rollout steps (None: all epochs)
    lr: float = 1e-4            # policy and value learning rate, warmup then constant
    warmup: float = 0.1         # fraction of optimizer steps, linear from 0
    adam_beta2: float = 0.95    # EasyLM's default
    weight_decay: float = 0.0   # AdamW's, on matrices only
    grad_clip: float = 1.0      # global grad-norm clip, per model
    kl_coef: float = 0.05       # beta of the per-token KL penalty, or its start with kl_target (the paper:
                                # 0.0325 with its 70B RM)
    kl_target: float | None = None  # adaptive beta steering objective/kl here (None: fixed beta, the paper's)
    kl_horizon: int = 10000     # the adaptive beta's horizon in rollouts (Ziegler et al. 2019's 10000)
    reward_norm: bool = False   # RM scores -> mean 0, std 1 on the initial policy's samples (the paper: off)
    reward_norm_prompts: int = 256  # training prompts (a seeded sample) whose responses fit --reward_norm
    missing_eos_score: float = -10.0  # the score of a response that does not end with EOS
    gamma: float = 1.0          # GAE discount
    lam: float = 0.95           # GAE lambda
    cliprange: float = 0.2      # policy ratio clip
    cliprange_value: float = 0.2  # value clip
    vf_coef: float = 0.1        # loss = pg + vf_coef * vf
    recompute: bool = False     # EasyLM's loop: re-score each minibatch with the current parameters (ratio 1)
    eval_every: int = 10        # world: steps between ground-truth evaluations, and at the start (0: the end)
    eval_limit: int | None = None  # world prompts per category for evaluation (None: all 200)
    eval_split: str = "val"     # world prompts evaluated during training: val (choices are made on it) | test
    save_every: int = 50        # steps between resumable checkpoints (0: never)
    stop_after: int | None = None  # exit after this many steps, as if killed (to try out resuming)
    resume: str = "auto"        # auto: a rerun continues a killed run (same arguments only); force: even with other
                                # arguments; no: delete out_dir's checkpoint and model and start over
    seed: int = 1337            # prompt order and sampling
    device: str = "auto"        # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"      # float32 | bfloat16 (autocast, bf16 sampling; fp32 weights and log-softmax)
    compile: bool = False       # compile the sampler's decode step with CUDA graphs (GPU only)
    grad_ckpt: bool = False     # activation checkpointing per block: less memory for ~1/3 more compute (docs/scale.md)
    offload_frozen: bool = False  # under torchrun: reference and reward shards in host memory (docs/scale.md)
    log_every: int = 1          # steps between log lines


# The paper's PPO (EasyLM llama_train_ppo.py), applied by --recipe=paper
PAPER = dict(max_prompt_len=1024, max_new_tokens=1024, batch_size=512, minibatch=64, micro_batch=4, epochs=1,
             lr=1e-6, eval_every=0)

cfg = parse_config(Config, paper=PAPER)
check_config(cfg)
on_world = cfg.prompts in ("general", "math")
rank, n_ranks, device = init_distributed(cfg.device)
if cfg.batch_size % cfg.minibatch or cfg.minibatch % n_ranks:
    raise SystemExit(f"--batch_size={cfg.batch_size} must be a multiple of --minibatch={cfg.minibatch}, and "
                     f"the minibatch a multiple of {n_ranks} ranks")
if cfg.reward_norm_prompts < n_ranks:
    raise SystemExit(f"--reward_norm_prompts={cfg.reward_norm_prompts}: must be at least {n_ranks} (a prompt "
                     f"per rank)")
if on_world:
    cfg.policy, cfg.reward = cfg.policy or "out/sft", cfg.reward or "out/rm"
    for path, cmd in ((cfg.policy, "python train_sft.py"), (cfg.reward, "python train_rm.py")):
        if not os.path.exists(path):
            raise SystemExit(f"no checkpoint at {path}: make it first with `{cmd}`")
else:
    require_recipe(cfg, PAPER, f"--prompts={cfg.prompts}")
    if not cfg.policy or not cfg.reward:
        raise SystemExit("--policy=SFT_CHECKPOINT and --reward=RM_CHECKPOINT are needed with --prompts=FILE")
cfg.value = cfg.value or cfg.reward
model_config(cfg.policy, head="lm", flag="--policy")  # the configs and tokenizers, before any model loads
for flag, path in (("--reward", cfg.reward), ("--value", cfg.value)):
    model_config(path, head="scalar", flag=flag)
    check_same_tokenizer(path, flag, cfg.policy, "--policy")  # it reads the policy's token ids
cfg.out_dir = cfg.out_dir or {"general": "out/ppo", "math": "out/ppo_math"}.get(
    cfg.prompts, f"out/ppo_{os.path.basename(cfg.prompts).split('.')[0]}")
print_config(cfg)
seed_all(cfg.seed + rank)  # each rank samples its own rollouts
start = open_run(cfg)  # locks out_dir; the step a killed run left off at (refused if the arguments changed)

# -----------------------------------------------------------------------------
# models: policy (trained), reference (frozen copy of the policy's init), reward (frozen), value (trained,
# from the RM). fp32 master weights; all four stay in eval mode throughout, PPO updates included: with dropout
# the update's log-probs would not be the rollout's (nanopref's model has no dropout anyway).
# Loaded on the CPU and placed by shard_model (under torchrun each rank keeps only its shards: four whole 13B models
# per GPU would not fit); the frozen two in the compute dtype, since they never need fp32 master weights.
param_dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else None  # what FSDP all-gathers for compute
policy = load_model(cfg.policy, dtype=torch.float32, head="lm")
tok = load_tokenizer(cfg.policy, policy)
ref = load_model(cfg.policy, dtype=param_dtype or torch.float32, head="lm").requires_grad_(False)
rm = load_model(cfg.reward, dtype=param_dtype or torch.float32, head="scalar").requires_grad_(False)
value = load_model(cfg.value, dtype=torch.float32, head="scalar")
print0(f"policy {num_params(policy) / 1e6:.2f}M from {cfg.policy}; reward {num_params(rm) / 1e6:.2f}M from "
       f"{cfg.reward}; value from {cfg.value}; on {device}")

# -----------------------------------------------------------------------------
# prompts
world = None
if on_world:
    wdir = build_world(cfg.world_seed)
    world = load_world(wdir)
    prompts_path = os.path.join(wdir, f"ppo_{cfg.prompts}.jsonl")
else:
    prompts_path = cfg.prompts
rows, prompts, dropped = load_prompts(prompts_path, cfg.template)  # every row checked: file:line and field on error
prompt_ids = [encode_chat(tok, msgs, cfg.template, add_generation_prompt=True)[0] for msgs in prompts]
keep = [i for i, p in enumerate(prompt_ids) if len(p) <= cfg.max_prompt_len]
if cfg.max_prompt_len + cfg.max_new_tokens > policy.args.max_seq_len:
    raise SystemExit(f"max_prompt_len {cfg.max_prompt_len} + max_new_tokens {cfg.max_new_tokens} exceed the "
                     f"model's max_seq_len {policy.args.max_seq_len}")
stats = data_summary("prompts", prompts_path, len(keep),
                     {f"longer than {cfg.max_prompt_len} tokens": len(rows) - len(keep), **dropped})
if rank == 0:
    write_json(os.path.join(cfg.out_dir, "data_stats.json"), dict(train=stats))

policy, value = (shard_model(m, device, param_dtype, grad_ckpt=cfg.grad_ckpt) for m in (policy, value))
ref, rm = (shard_model(m, device, param_dtype, offload=cfg.offload_frozen) for m in (ref, rm))
opt_policy = make_optimizer(policy, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
opt_value = make_optimizer(value, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
batches = batch_order(len(keep), cfg.batch_size, cfg.epochs, cfg.seed)
total = min(len(batches), cfg.max_steps or len(batches))
if total == 0:
    raise SystemExit(f"{len(keep)} prompts make no rollout batch of {cfg.batch_size}")
n_minibatches = cfg.batch_size // cfg.minibatch
n_updates = cfg.ppo_epochs * n_minibatches  # optimizer steps per rollout step
check_schedule(total * n_updates, cfg.warmup)
mb_size = cfg.minibatch // n_ranks  # rollouts of one minibatch on this rank
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()
log = MetricsLog(os.path.join(cfg.out_dir, "metrics.jsonl"), start)  # rows of steps >= start dropped
rollout_log = MetricsLog(os.path.join(cfg.out_dir, "rollouts.jsonl"), start)  # every step's rollouts, all ranks
start, resumed = load_run(cfg.out_dir, policy, opt_policy, others={"value": (value, opt_value)})  # one checkpoint
if cfg.reward_norm and start and "reward_norm" not in resumed:  # resumed: beta and the reward normalisation
    raise SystemExit(f"{cfg.out_dir}/ckpt was saved without --reward_norm: resume without it, or start over")

# -----------------------------------------------------------------------------
# the pieces of one PPO step: sample, score, update


sampler = None  # the policy, or under FSDP / bf16 sampling a whole copy on each rank, refreshed each step


def rollout(prompts):
    """Sample one response per prompt -> dict: seq (B, Tp + N) = left-padded prompt + right-padded response,
    attn (B, Tp + N), mask (B, N) on response tokens (EOS included), Tp, the sampler's log-probs (B, N)."""
    global sampler
    sampler = sampling_copy(policy, torch.bfloat16 if cfg.dtype == "bfloat16" else None, into=sampler)
    gens = [generate(sampler, prompts[i:i + (cfg.gen_batch or len(prompts))], cfg.max_new_tokens, tok.eos_id,
                     tok.pad_id, temperature=cfg.temperature, compile=cfg.compile)
            for i in range(0, len(prompts), cfg.gen_batch or len(prompts))]
    Tp = max(g.prompt_tokens.shape[1] for g in gens)
    N = max(int(g.mask.sum(1).max()) for g in gens)  # drop the all-pad tail of the sampler's static buffer

    def cat(xs, width, left, fill):  # (b, w) pieces -> (B, width): left- or right-padded (or cut) to `width`
        return torch.cat([F.pad(x, (width - x.shape[1], 0) if left else (0, width - x.shape[1]), value=fill)
                          for x in xs])
    prompt, prompt_mask = cat([g.prompt_tokens for g in gens], Tp, True, tok.pad_id), \
        cat([g.prompt_mask for g in gens], Tp, True, 0)
    tokens = cat([g.tokens for g in gens], N, False, tok.pad_id)
    mask = cat([g.mask for g in gens], N, False, 0)
    return dict(seq=torch.cat([prompt, tokens], 1), attn=torch.cat([prompt_mask, mask], 1), mask=mask, Tp=Tp,
                sampler_logps=cat([g.logprobs for g in gens], N, False, 0.0))


def forward(model, seq, attn):
    with autocast:
        return model(seq, mask=attn)


@torch.no_grad()
def rm_scores(seq, attn):
    """The reward model's raw score of each sequence (b, T), read at its last real token: (b,)."""
    return forward(rm, seq, attn).float().gather(1, last_real_index(attn)[:, None]).squeeze(1)


@torch.no_grad()
def score_rollouts(roll, idx, kl_coef):
    """Everything PPO needs about rollouts idx, from the *current* parameters: log-probs under the policy and
    the reference, values, scores, per-token rewards under kl_coef, GAE advantages and returns, entropy. Dict
    of (b, ...) tensors."""
    Tp, out = roll["Tp"], defaultdict(list)
    for mb in micro_batches(idx, cfg.micro_batch):
        seq, attn, mask = roll["seq"][mb], roll["attn"][mb], roll["mask"][mb]
        logits = forward(policy, seq, attn)
        out["logps"].append(losses.response_logps(logits, seq, Tp, cfg.temperature) * mask)
        out["entropy"].append(losses.entropy(logits[:, Tp - 1:-1], cfg.temperature) * mask)
        del logits
        out["ref_logps"].append(
            losses.response_logps(forward(ref, seq, attn), seq, Tp, cfg.temperature) * mask)
        out["values"].append(forward(value, seq, attn)[:, Tp - 1:-1].float() * mask)  # V(prompt + resp[:t])
        out["rm_scores"].append(rm_scores(seq, attn))
    out = {k: torch.cat(v) for k, v in out.items()}
    mask, seq = roll["mask"][idx], roll["seq"][idx]
    last_tokens = seq.gather(1, last_real_index(roll["attn"][idx])[:, None]).squeeze(1)
    out["eos"] = (last_tokens == tok.eos_id).float()
    scores = out["rm_scores"] if norm is None else norm["gain"] * out["rm_scores"] + norm["bias"]
    # the penalty replaces the normalised score: it is in normalised units (the docstring's knobs)
    out["scores"] = losses.penalise_missing_eos(scores, last_tokens, tok.eos_id, cfg.missing_eos_score)
    out["kl"] = losses.kl_estimate(out["logps"], out["ref_logps"], "k1") * mask
    rewards = losses.ppo_rewards(out["scores"], out["kl"], mask, kl_coef)
    out["advantages"], out["returns"] = losses.gae(rewards, out["values"], mask, cfg.gamma, cfg.lam)
    return out


reduce = lambda t: all_reduce_sum(t).to(t)  # noqa: E731  sum over ranks, in t's dtype and device


def ppo_update(roll, old, idx, update, stats):
    """One optimizer step of policy and value on rollouts idx (this rank's share of a minibatch), against
    `old`: their log-probs, values, advantages and returns as scored before the update. update: its number in
    the run (for the learning rate)."""
    mask = roll["mask"][idx]
    advantages = losses.whiten(old["advantages"], mask, shift_mean=True, all_reduce=reduce)  # whole minibatch
    n_tokens = reduce(mask.sum().float())  # the minibatch's response tokens on all ranks: the normaliser
    for opt in (opt_policy, opt_value):
        for g in opt.param_groups:
            g["lr"] = lr_at(update, total * n_updates, cfg.lr, cfg.warmup, decay="constant")
    mbs, loss_sum = micro_batches(list(range(len(idx))), cfg.micro_batch), 0.0
    for j, mb in enumerate(mbs):
        if dist.is_initialized():  # FSDP2: reduce-scatter gradients after the last micro-batch only
            policy.set_requires_gradient_sync(j == len(mbs) - 1)
            value.set_requires_gradient_sync(j == len(mbs) - 1)
        sel = [idx[i] for i in mb]
        seq, attn, mmask = roll["seq"][sel], roll["attn"][sel], mask[mb]
        logps = losses.response_logps(forward(policy, seq, attn), seq, roll["Tp"], cfg.temperature) * mmask
        vpred = forward(value, seq, attn)[:, roll["Tp"] - 1:-1].float()
        pg, pg_clipped = losses.ppo_policy_loss(logps, old["logps"][mb], advantages[mb], mmask, cfg.cliprange)
        vf, vf_clipped = losses.ppo_value_loss(vpred, old["values"][mb], old["returns"][mb], mmask,
                                        cfg.cliprange_value)
        # token mean over the whole minibatch however it is split (x n_ranks: FSDP averages over ranks);
        # one backward: the policy's parameters get pg's gradient, the value model's vf_coef * vf's
        loss = (pg.sum() + cfg.vf_coef * vf.sum()) / n_tokens * n_ranks
        loss.backward()
        loss_sum += loss.item()
        stats.update(pg, pg_clipped, vf, vf_clipped, logps, old["logps"][mb], mmask)
    norms = [torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip) for m in (policy, value)]
    stop_if_nonfinite(update // n_updates, [roll["rows"][i] for i in idx], cfg.prompts, loss=loss_sum,
                      grad_norm_policy=norms[0], grad_norm_value=norms[1])  # before any non-finite step is taken
    stats.grad_norms(*norms)
    for opt in (opt_policy, opt_value):
        opt.step()
        opt.zero_grad(set_to_none=True)


def minibatches():
    """This rank's rollout indices of each minibatch, ppo_epochs passes, in update order."""
    return [list(range(m * mb_size, (m + 1) * mb_size))
            for _ in range(cfg.ppo_epochs) for m in range(n_minibatches)]


def recompute_step(roll, step, kl_coef, stats):
    """EasyLM's loop (--recompute, departure 1): score each minibatch with the current, already partly
    updated, parameters right before its update (its ratio is 1). -> the first pass's scores, for the log."""
    scored = []
    for u, idx in enumerate(minibatches()):
        old = score_rollouts(roll, idx, kl_coef)
        scored += [old] if u < n_minibatches else []
        ppo_update(roll, old, idx, step * n_updates + u, stats)
    return {k: torch.cat([s[k] for s in scored]) for k in scored[0]}


@torch.no_grad()
def fit_reward_norm():
    """--reward_norm: the RM's raw scores of the initial policy's responses to a seeded sample of training
    prompts (each rank samples its share), all of them, EOS or not -> {gain, bias, n}, also written with the
    samples to reward_norm.json."""
    n = min(cfg.reward_norm_prompts, len(keep)) // n_ranks * n_ranks  # equal shares: FSDP forwards pair up
    held = sorted(random.Random(cfg.seed).sample(keep, n))
    roll = rollout([prompt_ids[i] for i in held[rank::n_ranks]])
    scores = torch.cat([rm_scores(roll["seq"][mb], roll["attn"][mb])
                        for mb in micro_batches(list(range(len(roll["seq"]))), cfg.micro_batch)]).cpu()
    responses = roll["seq"][:, roll["Tp"]:].cpu()
    samples = [dict(row=i, response=r[m.bool()].tolist(), score=s)
               for i, r, m, s in zip(held[rank::n_ranks], responses, roll["mask"].cpu(), scores.tolist())]
    if dist.is_initialized():
        gathered = [None] * n_ranks
        dist.all_gather_object(gathered, samples)
        samples = sorted((s for part in gathered for s in part), key=lambda s: s["row"])
    gain, bias = losses.reward_gain_bias(torch.tensor([s["score"] for s in samples]))
    out = dict(gain=gain, bias=bias, n=len(samples))
    print0(f"reward normalisation from {len(samples)} samples of the initial policy: gain {gain:.4g}, bias "
           f"{bias:.4g}")
    if rank == 0:
        write_json(os.path.join(cfg.out_dir, "reward_norm.json"), dict(out, samples=samples))
    return out


# -----------------------------------------------------------------------------
# evaluation and the rollout table


def texts(roll):
    """Decoded responses (EOS dropped) of a rollout."""
    resp = roll["seq"][:, roll["Tp"]:].cpu()
    return [tok.decode([t for t in r[m.bool()].tolist() if t != tok.eos_id])
            for r, m in zip(resp, roll["mask"].cpu())]


def evaluate(step):
    """World: greedy responses to the held-out prompts, ground-truth score per category (rank 0)."""
    if world is None:
        return None
    model = unsharded(policy)  # under FSDP a whole copy on rank 0 (every rank must call this)
    if rank != 0:
        return None
    metrics, records = world_eval.run(NanoprefLM(model, tok, cfg.template, batch_size=128), world,
                                      limit=cfg.eval_limit, desc="eval", split=cfg.eval_split)
    log.log(step, quiet=True, **{f"eval/{c}": m["score"] for c, m in metrics.items()},
            **{f"eval/{c}_stderr": m["stderr"] for c, m in metrics.items()},
            **{"eval/response_chars": sum(len(r["output"]) for r in records) / len(records)})
    write_jsonl(os.path.join(cfg.out_dir, "eval_world_samples.jsonl"), records)
    print0(world_eval.format_table(metrics, f"step {step}"))
    return metrics


def sample_table(step, roll, scored, responses, truth, n=4):
    print0(f"rollouts at step {step}: prompt | response | score" + (" | ground truth" if truth else ""))
    for i in range(min(n, len(responses))):
        prompt = tok.decode(roll["seq"][i, :roll["Tp"]].tolist())
        print0(f"  {prompt[-50:]!r:54} | {responses[i][:80]!r:84} | {scored['scores'][i].item():+.2f}" +
               (f" | {truth[i]:.2f}" if truth else ""))


# -----------------------------------------------------------------------------
# training loop: one rollout batch per step, ppo_epochs x n_minibatches optimizer steps on it
norm = (resumed["reward_norm"] if start else fit_reward_norm()) if cfg.reward_norm else None  # gain, bias
kl_coef = resumed.get("kl_coef", cfg.kl_coef) if cfg.kl_target else cfg.kl_coef  # beta, adapted each step
t0, seen = time.time(), 0
for step in range(start, total):
    if cfg.eval_every and step % cfg.eval_every == 0:
        evaluate(step)
    ids = [keep[i] for i in batches[step][rank::n_ranks]]
    roll = rollout([prompt_ids[i] for i in ids])  # 1. sample with the current policy
    roll["rows"] = ids  # which prompts (rows of the prompts file), for error messages
    stats = PPOStats()
    if cfg.recompute:  # 2-4. EasyLM's loop: each minibatch scored right before its update
        scored = recompute_step(roll, step, kl_coef, stats)
    else:
        scored = score_rollouts(roll, list(range(len(ids))), kl_coef)  # 2-3. score, rewards, advantages
        for u, idx in enumerate(minibatches()):  # 4. updates against the sampling parameters' scores
            ppo_update(roll, {k: v[idx] for k, v in scored.items()}, idx, step * n_updates + u, stats)
    seen += len(ids)

    # 5. one log line: rollout statistics (from the scoring), then the updates'
    responses = texts(roll)
    truth = [ground_truth(rows[i], r, world["kb"]) for i, r in zip(ids, responses)] if world else None
    stats.rollouts(scored, roll["mask"], None if cfg.recompute else roll["sampler_logps"], truth)
    metrics = stats.metrics(kl_coef, n_updates, n_ranks)
    mine = [dict(rank=rank, row=i, response=r, score=float(x), **({"truth": t, "category": rows[i]["category"]}
                                                                   if truth else {}))
            for i, r, x, t in zip(ids, responses, scored["scores"], truth or responses)]
    gathered = [mine]
    if dist.is_initialized():  # every rank's own samples (each rank samples with its own seed, seed + rank)
        gathered = [None] * n_ranks
        dist.all_gather_object(gathered, mine)
    rollout_log.log(step, quiet=True, rollouts=[r for part in gathered for r in part])
    if step % cfg.log_every == 0 or step == total - 1:
        lr = lr_at((step + 1) * n_updates - 1, total * n_updates, cfg.lr, cfg.warmup, decay="constant")
        log.log(step, **metrics, lr=lr, rollouts_per_s=round(seen * n_ranks / (time.time() - t0), 2))
    if cfg.kl_target:  # 6. Ziegler et al.'s controller: the next step's beta, from this step's KL
        kl_coef = losses.adaptive_kl_coef(kl_coef, metrics["objective/kl"], cfg.kl_target, cfg.kl_horizon,
                                          cfg.batch_size)
    if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step == total - 1:
        sample_table(step, roll, scored, responses, truth)
    if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
        save_run(cfg.out_dir, policy, opt_policy, step + 1, asdict(cfg), tok, others={"value": (value, opt_value)},
                 extra=dict(kl_coef=kl_coef, **({"reward_norm": norm} if norm else {})))
    if cfg.stop_after and step + 1 == cfg.stop_after:
        raise SystemExit(f"stopping after step {step + 1} as asked (--stop_after); run again to resume")

# -----------------------------------------------------------------------------
# final policy (HF layout + tokenizer) and evaluation
state = full_state_dict(policy)
if rank == 0:
    save_final(cfg.out_dir, policy, state, tok, asdict(cfg), total)  # marked finished; the checkpoint deleted
    print0(f"saved {cfg.out_dir}/model ({time.time() - t0:.0f}s of training)")
metrics = evaluate(total)
if metrics is not None:
    write_json(os.path.join(cfg.out_dir, "eval_world.json"), metrics)
finish_distributed()
