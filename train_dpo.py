"""Direct Preference Optimization (Rafailov et al. 2023) from preference pairs, against a frozen reference model.

    python train_dpo.py                     # the embedded world: policy and reference from out/sft (make it with
                                            # `python train_sft.py`), pairs from the world's uf_fine; 270 steps,
                                            # ~5-7 min on a shared 2-core CPU
    python train_dpo.py --data=hh_human --out_dir=out/dpo_hh           # any world dataset (see nanopref/world/prefs.py)
    python train_dpo.py --recipe=paper --data=../shared/data/ultrafeedback/train_prefs.sample500.jsonl \
        --init=/ckpts/tulu-2-7b \
        --eval_pairs=/work/shared/data/ultrafeedback/test_prefs.sample500.jsonl --out_dir=out/dpo-7b --dtype=bfloat16
    torchrun --nproc_per_node=8 train_dpo.py --recipe=paper --data=uf.jsonl --init=... --dtype=bfloat16  # FSDP2

--data is a world dataset name or a JSONL of pairs: UltraFeedback-binarized message lists, HH-RLHF transcripts or
TRL's explicit-prompt rows (nanopref/data.py); the counts of the rows used and dropped go to data_stats.json.
The run directory: out_dir/model (HF layout + tokenizer.model), metrics.jsonl (one row per step), eval_world.json
and eval_world_samples.jsonl (world only), and ckpt/ while training: a killed run restarts from its last
checkpoint when run again with the same arguments. Reference log-probs are cached in ref_cache
(nanopref/cache.py), one file per (reference weights, tokenized pairs, template, max_len, dtype, code), so reruns and
other loss types reuse them.

Departures from the paper's DPO (EasyLM llama_train_dpo.py: sigmoid loss, beta 0.1, lr 5e-7 with 10% warmup then
linear decay to 0, 3 epochs, batch 32, AdamW (0.9, 0.95) without weight decay, clip 1.0, summed log-probs):
  1. On the world the policy is a ~1M-parameter model trained from scratch, so it gets a much larger learning rate
     (1e-4; dev/LOG.md, issue 5). Everything else, beta included, is the paper's.
  2. Reference log-probs are computed once before training (EasyLM's precalculate_reference_logps=True; the paper
     ran a reference forward every step). Same numbers up to float rounding (a test checks it), half the forwards.
     --precompute_ref=false gives the live reference.
  3. Pairs whose prompt + longer response exceed max_len are dropped (and counted), not truncated.
  4. The loss is the mean over all pairs of a batch, however the batch is split into micro-batches and ranks.
"""
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from nanopref.cache import reference_logps, score_pairs
from nanopref.checkpoint import check_same_tokenizer, load_model, load_tokenizer, model_config
from nanopref.common import OUT_DIR, MetricsLog, print0, seed_all, source_hash, write_json, write_jsonl
from nanopref.config import check_config, parse_config, print_config, require_recipe
from nanopref.data import data_summary, load_preferences, pad_right, pair_batch, tokenize_pairs
from nanopref.evals import world as world_eval
from nanopref.evals.lm import NanoprefLM
from nanopref.generate import generate
from nanopref.losses import DPO_LOSSES, dpo_loss, sequence_logps
from nanopref.model import num_params
from nanopref.runs import load_run, open_run, save_final, save_run
from nanopref.training import (all_reduce_sum, batch_order, check_schedule, finish_distributed, full_state_dict,
                               init_distributed, lr_at, make_optimizer, micro_batches, shard_model, stop_if_nonfinite)
from nanopref.world.build import build_world, load_world
from nanopref.onpolicy import ensure_prefs
from nanopref.world.prefs import DATASETS


@dataclass
class Config:
    data: str = "uf_fine"       # a world dataset (nanopref/world/prefs.py DATASETS) or a JSONL of pairs
    init: str | None = None     # policy checkpoint (None: out/sft on the world; required with a JSONL)
    ref: str | None = None      # reference checkpoint (None: init, as in the paper)
    eval_pairs: str | None = None  # held-out pairs for implicit-reward accuracy (None: the world's test_gold; off)
    prefs_dir: str | None = None  # a world's prefs/ directory, inside that world's directory (None: built from init)
    world_seed: int = 0         # which world to build or use
    out_dir: str = "out/dpo"    # run directory
    recipe: str = "world"       # world: the values below; paper: the paper's (PAPER, under any flag given)
    template: str = "tulu"      # chat template: tulu or llama2
    max_len: int = 256          # longest prompt + response in tokens; longer pairs are dropped and counted
    max_pairs: int | None = None  # use only the first N training pairs (None: all)
    loss_type: str = "sigmoid"  # sigmoid (DPO; cDPO with label_smoothing) ipo hinge norm reference_free simpo
    beta: float = 0.1           # KL strength: implicit reward = beta * (log pi - log ref)
    label_smoothing: float = 0.0  # cDPO's eps: the share of labels assumed flipped
    simpo_gamma: float = 0.5    # SimPO's target margin
    batch_size: int = 32        # pairs per optimizer step, over all ranks (the paper's 8 x 4 accumulation)
    micro_batch: int = 32       # pairs per forward on each rank
    epochs: int = 3             # passes over the pairs
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    lr: float = 1e-4            # peak learning rate, linear warmup then linear decay to 0
    warmup: float = 0.1         # fraction of steps
    adam_beta2: float = 0.95    # EasyLM's default
    weight_decay: float = 0.0   # AdamW's, on matrices only
    grad_clip: float = 1.0      # global gradient-norm clip
    precompute_ref: bool = True  # reference log-probs once before training (cached on disk), else a forward per step
    ref_cache: str | None = None  # directory of cached reference log-probs (None: $NANOPREF_OUT/cache/ref_logps)
    eval_every: int = 100       # steps between evaluations (0: only at the end)
    eval_limit: int | None = None  # world prompts per category (None: all 200)
    eval_split: str = "val"     # world prompts evaluated during training: val (choices are made on it) | test
    save_every: int = 200       # steps between resumable checkpoints (0: never)
    resume: str = "auto"        # auto: a rerun continues a killed run (same arguments only); force: even with other
                                # arguments; no: delete out_dir's checkpoint and model and start over
    seed: int = 1337            # batch order
    device: str = "auto"        # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"      # float32 | bfloat16 (bf16 compute; fp32 master weights, reductions and log-softmax)
    grad_ckpt: bool = False     # activation checkpointing per block: less memory for ~1/3 more compute (docs/scale.md)
    offload_frozen: bool = False  # under torchrun: the reference's shards in host memory (docs/scale.md)
    log_every: int = 1          # steps between log lines


# The paper's DPO (EasyLM llama_train_dpo.py), applied by --recipe=paper
PAPER = dict(max_len=4096, micro_batch=4, lr=5e-7)

cfg = parse_config(Config, paper=PAPER)
check_config(cfg)
on_world = cfg.data in DATASETS
if cfg.loss_type not in DPO_LOSSES:
    raise SystemExit(f"unknown --loss_type={cfg.loss_type}; known: {', '.join(DPO_LOSSES)}")
if on_world:
    cfg.init = cfg.init or "out/sft"
    if not os.path.exists(cfg.init):
        raise SystemExit(f"no SFT checkpoint at {cfg.init}: make it first with `python train_sft.py`")
else:
    require_recipe(cfg, PAPER, f"--data={cfg.data}")
    if cfg.init is None:
        raise SystemExit("--init=CHECKPOINT is required with --data=FILE (the SFT model to start from)")
rank, n_ranks, device = init_distributed(cfg.device)
if cfg.batch_size % (cfg.micro_batch * n_ranks):
    raise SystemExit(f"--batch_size={cfg.batch_size} is not divisible by --micro_batch={cfg.micro_batch} x "
                     f"{n_ranks} ranks")
cfg.ref = cfg.ref or cfg.init
model_config(cfg.init, head="lm", flag="--init")  # the configs, before any work: unreadable, or a reward model
if cfg.ref != cfg.init:
    model_config(cfg.ref, head="lm", flag="--ref")
    check_same_tokenizer(cfg.ref, "--ref", cfg.init, "--init")  # the reference scores the policy's token ids
cfg.ref_cache = cfg.ref_cache or os.path.join(OUT_DIR, "cache", "ref_logps")
print_config(cfg)
seed_all(cfg.seed + rank)  # nothing is initialised at random here: each rank its own stream
start = open_run(cfg)  # locks out_dir; the step a killed run left off at (refused if the arguments changed)

# -----------------------------------------------------------------------------
# data, tokenizer and models
world, data_path, eval_path = None, cfg.data, cfg.eval_pairs
if on_world:
    prefs = cfg.prefs_dir
    if not prefs:  # built once and cached (the *_onpolicy sets from the SFT model's samples); rank 0 builds
        if rank == 0:
            prefs = ensure_prefs(cfg.init, cfg.world_seed, names=[cfg.data])
        if dist.is_initialized():
            dist.barrier()
        prefs = ensure_prefs(cfg.init, cfg.world_seed, names=[cfg.data])
    data_path = os.path.join(prefs, f"{cfg.data}.jsonl")
    eval_path = eval_path or os.path.join(prefs, "test_gold.jsonl")
    if n_ranks == 1:  # the world's evaluation generates, which needs the whole model in one process
        world = load_world(os.path.dirname(os.path.abspath(prefs)) if cfg.prefs_dir else build_world(cfg.world_seed))
model = load_model(cfg.init, device="cpu", head="lm")
tok = load_tokenizer(cfg.init, model)
model.train()
print0(f"policy: {num_params(model) / 1e6:.2f}M parameters from {cfg.init}, vocab {tok.vocab_size}, on {device}")
if cfg.max_len > model.args.max_seq_len:
    raise SystemExit(f"--max_len={cfg.max_len} exceeds the model's context, max_seq_len {model.args.max_seq_len}")


def pairs_of(path, what, limit=None):
    """Checked rows (file:line and field on error) -> tokenized pairs; the counts printed, 0 usable an error."""
    rows, dropped = load_preferences(path, limit=limit, template=cfg.template)
    pairs, n_long = tokenize_pairs(tok, rows, cfg.max_len, cfg.template)
    return pairs, data_summary(what, path, len(pairs), {f"longer than {cfg.max_len} tokens": n_long, **dropped})


pairs, stats = pairs_of(data_path, "pairs", limit=cfg.max_pairs)
eval_set, eval_stats = pairs_of(eval_path, "held-out pairs") if eval_path and eval_path != "off" else ([], None)
if rank == 0:
    write_json(os.path.join(cfg.out_dir, "data_stats.json"), dict(train=stats, eval=eval_stats))
param_dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else None  # what FSDP all-gathers for compute
model = shard_model(model, device, param_dtype=param_dtype, grad_ckpt=cfg.grad_ckpt)  # under torchrun: our shards
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()
ref_model = None


def get_ref():
    """The frozen reference: eval mode (no dropout), no gradients, sharded like the policy; loaded on first use."""
    global ref_model
    if ref_model is None:
        ref = load_model(cfg.ref, device="cpu", dtype=param_dtype or torch.float32, head="lm")
        ref_model = shard_model(ref.eval().requires_grad_(False), device, param_dtype, offload=cfg.offload_frozen)
    return ref_model


def pair_logps(net, batch):
    """Summed response log-probs of a list of pairs: chosen (B,), rejected (B,), chosen and rejected lengths (B,).
    Chosen and rejected go through one forward of 2B right-padded rows (real tokens never attend to pads)."""
    tokens, loss_mask, _ = pair_batch(batch, tok.pad_id)  # (2B, T)
    tokens, loss_mask = tokens.to(device), loss_mask.to(device)
    with autocast:
        logits = net(tokens)  # (2B, T, V)
    logps = sequence_logps(logits, tokens, loss_mask)  # (2B,), log-softmax in fp32
    n, lengths = len(batch), loss_mask.sum(-1).float()
    return logps[:n], logps[n:], lengths[:n], lengths[n:]


def all_logps(net, batch, desc=None):
    """Log-probs of every pair under `net` in eval mode, on every rank: chosen (N,), rejected (N,) fp64."""
    return score_pairs(pair_logps, net, batch, cfg.micro_batch, desc)


def cached_reference_logps(batch, name):
    """Reference log-probs of `batch` from ref_cache, or computed with the reference weights and cached."""
    compute = lambda: all_logps(get_ref(), batch, desc=f"reference log-probs of {name}")  # noqa: E731
    # the code that computes them is in the key too (micro_batch and the number of ranks change only padding, so
    # float rounding: such runs share a cache)
    code = source_hash(pair_logps, all_logps, score_pairs, sequence_logps, pair_batch, load_model, "nanopref.model")
    return reference_logps(batch, name, cfg.ref, compute, cfg.ref_cache, template=cfg.template,
                           max_len=cfg.max_len, dtype=cfg.dtype, code=code)


if cfg.precompute_ref:
    ref_chosen, ref_rejected = cached_reference_logps(pairs, data_path)
    eval_ref = cached_reference_logps(eval_set, eval_path) if eval_set else None
    ref_model = None  # not needed any more: free its memory
else:
    get_ref()
    eval_ref = all_logps(ref_model, eval_set) if eval_set else None
optimizer = make_optimizer(model, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
batches = batch_order(len(pairs), cfg.batch_size, cfg.epochs, cfg.seed,
                      lengths=[len(p["prompt"]) + max(len(p["chosen"]), len(p["rejected"])) for p in pairs])
total = min(len(batches), cfg.max_steps or len(batches))
check_schedule(total, cfg.warmup)
if total == 0:  # never save the initial weights as a trained model
    raise SystemExit(f"{len(pairs)} usable pairs make no batch of {cfg.batch_size}: nothing to train")
log = MetricsLog(os.path.join(cfg.out_dir, "metrics.jsonl"), start)  # rows of steps >= start dropped
start, _ = load_run(cfg.out_dir, model, optimizer)


def loss_and_rewards(policy_chosen, policy_rejected, reference_chosen, reference_rejected, chosen_len, rejected_len):
    """Per-pair losses (B,) and implicit rewards beta * (log pi - log ref) of chosen and rejected (B,), (B,)."""
    return dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=cfg.beta,
                    loss_type=cfg.loss_type, label_smoothing=cfg.label_smoothing, chosen_lengths=chosen_len,
                    rejected_lengths=rejected_len, simpo_gamma=cfg.simpo_gamma)


def sample_table(step, n=6):
    """Greedy responses to a few held-out prompts: prompt | response | score. On the world the score is the ground
    truth; on real data the implicit reward beta * (log pi - log ref) with a live reference, else log pi per token."""
    if world is not None:
        rows = [(r["prompt"], r["output"], r["score"]) for r in records[::max(1, len(records) // n)][:n]]
        head = "ground-truth score"
    else:
        prompts = (eval_set or pairs)[:n]
        room = min(128, model.args.max_seq_len - max(len(p["prompt"]) for p in prompts))  # the sampler's limit
        outs = generate(model, [p["prompt"] for p in prompts], room, tok.eos_id, tok.pad_id, temperature=0.0).lists()
        tokens, mask, _ = pad_right([p["prompt"] + o for p, o in zip(prompts, outs)],
                                    [[0] * len(p["prompt"]) + [1] * len(o) for p, o in zip(prompts, outs)], tok.pad_id)
        tokens, mask = tokens.to(device), mask.to(device)
        with torch.no_grad():
            score = sequence_logps(model(tokens), tokens, mask).cpu()
            if ref_model is not None:
                score = cfg.beta * (score - sequence_logps(ref_model(tokens), tokens, mask).cpu())
                head = "implicit reward"
            else:
                score, head = score / mask.sum(-1).cpu().clamp(min=1), "log pi per token"
        rows = [(tok.decode(p["prompt"]), tok.decode(o), x.item()) for p, o, x in zip(prompts, outs, score)]
    print0(f"samples at step {step}: prompt | response | {head}")
    for prompt, response, x in rows:
        print0(f"  {prompt[-60:]!r:64} | {response[:90]!r:94} | {x:+.3f}")


def evaluate(step):
    """Implicit-reward accuracy on held-out pairs, and on the world its ground truth per category (rank 0)."""
    global records
    model.eval()
    out = {}
    if eval_set:
        policy_chosen, policy_rejected = all_logps(model, eval_set)
        chosen_len = torch.tensor([len(p["chosen"]) for p in eval_set], dtype=torch.float64)
        rejected_len = torch.tensor([len(p["rejected"]) for p in eval_set], dtype=torch.float64)
        losses, chosen_r, rejected_r = loss_and_rewards(policy_chosen, policy_rejected, eval_ref[0], eval_ref[1],
                                                        chosen_len, rejected_len)
        out.update({"eval/loss": losses.mean().item(),
                    "eval/rewards/accuracies": (chosen_r > rejected_r).double().mean().item(),
                    "eval/rewards/margins": (chosen_r - rejected_r).mean().item(),
                    "eval/rewards/chosen": chosen_r.mean().item(), "eval/rewards/rejected": rejected_r.mean().item()})
    metrics = None
    if world is not None:
        metrics, records = world_eval.run(NanoprefLM(model, tok, cfg.template, batch_size=128), world,
                                          limit=cfg.eval_limit, desc="eval", split=cfg.eval_split)
        out.update({f"world/{c}": m["score"] for c, m in metrics.items()})
        out["world/response_chars"] = sum(len(r["output"]) for r in records) / len(records)  # length drift
        print0(world_eval.format_table(metrics, f"step {step}"))
    if out:
        log.log(step, **out)
    if n_ranks == 1:
        sample_table(step)
    model.train()
    return metrics


# -----------------------------------------------------------------------------
# training loop
t0, pairs_seen, records = time.time(), 0, []
for step in range(start, total):
    lr = lr_at(step, total, cfg.lr, cfg.warmup)
    for g in optimizer.param_groups:
        g["lr"] = lr
    mine = batches[step][rank::n_ranks]
    # sums over this rank's pairs: loss, chosen reward, rejected reward, correct, chosen logp, rejected logp
    sums = torch.zeros(6, dtype=torch.float64)
    mbs = micro_batches(mine, cfg.micro_batch)
    for j, mb in enumerate(mbs):
        if dist.is_initialized():  # FSDP2: reduce-scatter gradients only after the last micro-batch, not each one
            model.set_requires_gradient_sync(j == len(mbs) - 1)
        policy_chosen, policy_rejected, chosen_len, rejected_len = pair_logps(model, [pairs[i] for i in mb])
        if cfg.precompute_ref:
            reference_chosen = ref_chosen[mb].to(device, torch.float32)
            reference_rejected = ref_rejected[mb].to(device, torch.float32)
        else:
            with torch.no_grad():
                reference_chosen, reference_rejected, _, _ = pair_logps(ref_model, [pairs[i] for i in mb])
        losses, chosen_r, rejected_r = loss_and_rewards(policy_chosen, policy_rejected, reference_chosen,
                                                        reference_rejected, chosen_len, rejected_len)
        # the batch loss is the mean over its batch_size pairs, however they are split: each micro-batch adds its
        # sum / batch_size (x n_ranks because FSDP averages gradients over ranks)
        (losses.sum() / cfg.batch_size * n_ranks).backward()
        sums += torch.stack([losses.sum(), chosen_r.sum(), rejected_r.sum(), (chosen_r > rejected_r).sum(),
                             policy_chosen.sum(), policy_rejected.sum()]).detach().double().cpu()
        pairs_seen += len(mb)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    stop_if_nonfinite(step, batches[step], data_path, loss=sums[0], grad_norm=grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    s = (all_reduce_sum(sums) / cfg.batch_size).tolist()
    tol = 1e-3 if cfg.dtype == "float32" else 5e-2  # bf16 rounding depends on batch shapes
    if step == 0 and cfg.ref == cfg.init and cfg.loss_type not in ("reference_free", "simpo") and \
            max(abs(s[1]), abs(s[2])) > tol:  # the policy starts as the reference, so every reward must be 0
        print0(f"WARNING: step 0 rewards are {s[1]:.4g} / {s[2]:.4g}, not 0: the reference log-probs do not "
               f"belong to this policy (stale cache? dropout on? a different dtype?)")
    if step % cfg.log_every == 0 or step == total - 1:
        log.log(step, loss=s[0], **{"rewards/chosen": s[1], "rewards/rejected": s[2], "rewards/margins": s[1] - s[2],
                "rewards/accuracies": s[3], "logps/chosen": s[4], "logps/rejected": s[5]}, lr=lr,
                grad_norm=float(grad_norm), pairs_per_s=round(pairs_seen * n_ranks / (time.time() - t0), 1))
    if cfg.eval_every and step > 0 and step % cfg.eval_every == 0:
        evaluate(step)
    if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
        save_run(cfg.out_dir, model, optimizer, step + 1, asdict(cfg), tok)

# -----------------------------------------------------------------------------
# final model (HF layout + tokenizer) and evaluation
state = full_state_dict(model)
if rank == 0:
    save_final(cfg.out_dir, model, state, tok, asdict(cfg), total)  # marked finished; the checkpoint deleted
    print0(f"saved {cfg.out_dir}/model ({time.time() - t0:.0f}s of training)")
metrics = evaluate(total)
if metrics is not None:
    write_json(os.path.join(cfg.out_dir, "eval_world.json"), metrics)
    write_jsonl(os.path.join(cfg.out_dir, "eval_world_samples.jsonl"), records)
finish_distributed()
