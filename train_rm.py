"""Reward model: a Llama-2 with a scalar head, initialised from an SFT checkpoint, trained on preference pairs with
the Bradley-Terry loss -log sigma(r_chosen - r_rejected) (or, --loss=regression, fit to per-response ratings).

    python train_rm.py                          # the embedded world: RM from out/sft on uf_fine + math_steps, then
                                                # pairwise accuracy on test_gold per category and Best-of-16. On a
                                                # 2-core CPU: ~7 min of training, + ~2 min of sampling the first time
    python train_rm.py --data=hh_human          # other world datasets (uf_fine, uf_overall, hh_human, web_length,
                                                # arena, math_steps; "+" joins them) or JSONL files
    python train_rm.py --preset=small           # the larger world RM, from out/sft_small, made by
                                                # `python train_sft.py --preset=small --out_dir=out/sft_small`
    python train_rm.py --loss=regression        # fit the annotators' ratings (score_chosen / score_rejected)
    torchrun --nproc_per_node=8 train_rm.py --recipe=paper --data=uf.jsonl --sft=/ckpts/tulu-2-13b \
        --eval_data=rb.jsonl \
        --dtype=bfloat16                        # the paper's recipe (FSDP2); UltraFeedback / HH-RLHF JSONL

The run directory: out_dir/model (HF layout, LlamaForSequenceClassification + tokenizer.model: the input of PPO
and of evaluate.py), metrics.jsonl, eval_rm.json, and ckpt/ while training: a killed run restarts from its last
checkpoint when run again with the same arguments. The evaluation (nanopref/evals/reward.py) is what evaluate.py
calls too; Best-of-N samples are cached in out/cache, so every RM reranks the same samples.

The model. The SFT checkpoint's transformer is kept, its LM head dropped, and a new `score` head (C -> 1, no bias)
reads the final hidden state of the *last real token* of prompt + response (its EOS), found from the attention
mask, so left, right or no padding give the same reward (model.score_last; pad != eos). The head starts from
N(0, 1/sqrt(C+1)) (Ziegler et al.'s rule, as in lm-human-preferences): with unit-scale final hidden states the
initial rewards have about unit variance at any width. The paper's EasyLM uses N(0, 0.02), which at C = 5120 is
within 1.5x of ours (0.014); on the world's C = 128 it would start rewards 4x smaller. --head_std=0.02 gives it.

The larger RM (--preset=small: 5.87M parameters, 4.3x tiny's 1.38M). An RM must start from a policy of its own
size, so the larger RM is initialised from a `small` SFT model trained exactly like out/sft (same data and recipe,
more parameters). As in the paper's RM-size study, the policy whose samples are reranked stays the same (out/sft,
--policy) for every RM size.

Departures from the paper's RM recipe (EasyLM llama_train_rm.py: lr 1e-5 -> 1e-6 linear, warmup 3%, 1 epoch,
batch 512, AdamW wd 0 with EasyLM's b2 0.95 and clip 1.0, seq len 4096, over-long pairs dropped, margin off):
  1. On the world: batch 32, lr 1e-3 -> 1e-4, 3 epochs, max_len 256 (a 1M-parameter RM on ~25k pairs; a sweep
     over lr 3e-5..1e-3 and 2..8 epochs is in dev/LOG.md), and the data is uf_fine plus math_steps, PRM800k-like
     math pairs (Tulu 2.5's preference data has a prm800k_pairs_phase2 split, and its released preference-mix RMs
     train on a mixture of splits; the paper's main RM is UltraFeedback-only): on uf_fine alone the world's RM
     never learned to check arithmetic, and its Best-of-16 on math fell below a random sample (dev/LOG.md).
  2. The score head starts from N(0, 1/sqrt(C+1)), not N(0, 0.02) (above; --head_std=0.02 restores it).
  3. Batches group pairs of similar length (batch_order's length windows: less padding), not a plain shuffle.
  4. The regression variant (not in the paper) standardises its targets over the training responses (z-scores),
     so its rewards are on the scale BT rewards reach and its loss starts near 1.
  5. Accuracy counts a tie as half right (RewardBench counts it wrong); standard errors cluster pairs by prompt.
"""
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist

from nanopref.checkpoint import load_model, load_tokenizer, model_config
from nanopref.common import MetricsLog, print0, seed_all, write_json
from nanopref.config import check_config, parse_config, print_config, require_recipe
from nanopref.data import data_summary, load_preferences, pair_batch, tokenize_pairs
from nanopref.evals import reward as rm_eval
from nanopref.evals.lm import RewardScorer
from nanopref.losses import bradley_terry_loss, regression_loss
from nanopref.model import Transformer, last_real_index, num_params
from nanopref.runs import load_run, open_run, save_final, save_run
from nanopref.training import (all_reduce_sum, batch_order, check_schedule, finish_distributed, full_state_dict,
                               init_distributed, lr_at, make_optimizer, micro_batches, shard_model, stop_if_nonfinite)
from nanopref.world.build import load_world
from nanopref.onpolicy import ensure_prefs
from nanopref.world.prefs import DATASETS


@dataclass
class Config:
    data: str = "uf_fine+math_steps"  # world datasets joined by + (prefs.DATASETS), or JSONL files of pairs
    sft: str | None = None      # SFT checkpoint to start from (None: the preset's, out/sft or out/sft_small)
    preset: str = "tiny"        # world RM size: tiny (from out/sft) or small (from out/sft_small)
    policy: str = "out/sft"     # world: the policy whose samples make the preference data and the Best-of-N candidates
    world_seed: int = 0         # which world to build or use
    out_dir: str | None = None  # run directory (None: out/rm, out/rm_small, out/rm_<data or dir_file>, ..._reg)
    recipe: str = "world"       # world: the values below; paper: the paper's (PAPER, under any flag given)
    template: str = "tulu"      # chat template: tulu or llama2
    loss: str = "bt"            # bt (Bradley-Terry) | regression (squared error to per-response ratings)
    margin: float = 0.0         # bt: -log sigma(r_c - r_r - m), m = margin + margin_scale * (score_c - score_r)
    margin_scale: float = 0.0   # (0 in the paper: EasyLM's use_margin=False)
    target: str = "score"       # regression target: score (score_chosen/rejected: UF's mean of aspects, the world's
                                # annotator ratings) | true (the world's oracle rating, an upper bound)
    head_std: float | None = None  # init std of the new score head (None: 1/sqrt(dim+1); the paper's EasyLM: 0.02)
    max_len: int = 256          # longest prompt + response in tokens; longer pairs are dropped and counted
    batch_size: int = 32        # pairs per optimizer step over all ranks
    micro_batch: int = 32       # pairs per forward on each rank, 2x that many sequences
    epochs: int = 3             # passes over the pairs
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    lr: float = 1e-3            # peak learning rate, linear warmup then linear decay to lr * end_lr_ratio
    end_lr_ratio: float = 0.1   # the last step's lr over the peak (the paper: 1e-5 -> 1e-6)
    warmup: float = 0.03        # fraction of steps, linear from 0
    adam_beta2: float = 0.95    # EasyLM's default
    weight_decay: float = 0.0   # AdamW's, on matrices only
    grad_clip: float = 1.0      # global gradient-norm clip
    eval_data: str | None = None  # held-out pairs, comma-separated JSONLs (None: world test_gold, none on files; off)
    eval_every: int = 0         # steps between pairwise-accuracy evaluations (0: only at the end)
    eval_batch: int = 64        # sequences per scoring forward
    bon_n: int = 16             # world: Best-of-N at the end with this N (0: skip)
    bon_limit: int | None = 100  # world: prompts per category for Best-of-N (None: all 200)
    save_every: int = 200       # steps between resumable checkpoints (0: never)
    resume: str = "auto"        # auto: a rerun continues a killed run (same arguments only); force: even with other
                                # arguments; no: delete out_dir's checkpoint and model and start over
    seed: int = 1337            # batch order and the score head's initialisation
    device: str = "auto"        # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"      # float32 | bfloat16 (bf16 compute; fp32 master weights and reductions)
    grad_ckpt: bool = False     # activation checkpointing per block: less memory for ~1/3 more compute (docs/scale.md)
    log_every: int = 10         # steps between log lines


# The paper's RM (EasyLM llama_train_rm.py), applied by --recipe=paper
PAPER = dict(max_len=4096, batch_size=512, micro_batch=4, epochs=1, lr=1e-5)
PRESET_SFT = dict(tiny="out/sft", small="out/sft_small")

cfg = parse_config(Config, paper=PAPER)
check_config(cfg)
parts = cfg.data.split("+")
on_world = all(p in DATASETS for p in parts)
if not on_world:
    require_recipe(cfg, PAPER, f"--data={cfg.data}")
if cfg.preset not in PRESET_SFT:
    raise SystemExit(f"unknown --preset={cfg.preset}; known: {', '.join(PRESET_SFT)}")
if cfg.loss not in ("bt", "regression") or cfg.target not in ("score", "true"):
    raise SystemExit(f"--loss must be bt or regression (got {cfg.loss}); --target score or true (got {cfg.target})")
cfg.sft = cfg.sft or (PRESET_SFT[cfg.preset] if on_world else None)
if not cfg.out_dir:
    # a file is named by its directory and stem: .../helpful-base/test.jsonl.gz -> helpful-base_test, not just "test"
    name = "_".join(p if on_world else f"{os.path.basename(os.path.dirname(os.path.abspath(p)))}_"
                    f"{os.path.basename(p).split('.')[0]}" for p in parts)
    cfg.out_dir = os.path.join("out", "rm" + ("_small" if cfg.preset == "small" else "") +
                               ("" if cfg.data == Config.data else f"_{name}") +
                               ("_reg" if cfg.loss == "regression" else ""))
rank, n_ranks, device = init_distributed(cfg.device)
if cfg.batch_size % n_ranks:  # a rank's share may split into uneven micro-batches: the loss is summed, not averaged
    raise SystemExit(f"--batch_size={cfg.batch_size} is not divisible by {n_ranks} ranks")
print_config(cfg)
seed_all(cfg.seed + rank)  # the score head has its own generator: the same on every rank
if not on_world and not cfg.sft:
    raise SystemExit("--sft=CHECKPOINT is required with --data=FILE (the SFT model the RM starts from)")
if not os.path.exists(cfg.sft):
    how = f"`python train_sft.py{' --preset=small --out_dir=out/sft_small' if cfg.sft == 'out/sft_small' else ''}`"
    raise SystemExit(f"no SFT checkpoint at {cfg.sft}" + (f": make it with {how}" if cfg.sft in PRESET_SFT.values()
                                                          else ""))
model_config(cfg.sft, head="lm", flag="--sft")  # its config, before any work: unreadable, or already a reward model
if on_world and os.path.exists(cfg.policy):
    model_config(cfg.policy, head="lm", flag="--policy")  # it samples the world's preference data
start = open_run(cfg)  # locks out_dir; the step a killed run left off at (refused if the arguments changed)

# -----------------------------------------------------------------------------
# data


def label_sections(examples, path):
    """Rows without a section (HH-RLHF, UltraFeedback) are labelled by their file's directory (helpful-base, ...)."""
    for ex in examples:
        if rm_eval.section_of(ex) == "all":
            ex["section"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return examples


world = None
if on_world:
    prefs_dir = ensure_prefs(cfg.policy, cfg.world_seed, names=parts)  # cached; *_onpolicy sample the policy
    world = load_world(os.path.dirname(prefs_dir))
    train_paths = [os.path.join(prefs_dir, f"{p}.jsonl") for p in parts]
    eval_paths = cfg.eval_data.split(",") if cfg.eval_data else [os.path.join(prefs_dir, "test_gold.jsonl")]
    eval_paths = [] if cfg.eval_data == "off" else eval_paths
else:
    train_paths, eval_paths = parts, [p for p in (cfg.eval_data or "").split(",") if p and p != "off"]
examples, dropped = [], {f"longer than {cfg.max_len} tokens": 0}  # every row checked: file:line and field on error
for path in train_paths:
    rows, n_bad = load_preferences(path, template=cfg.template)
    examples += rows
    dropped.update({k: dropped.get(k, 0) + n for k, n in n_bad.items()})
train_path = " + ".join(train_paths)
eval_examples = [ex for p in eval_paths for ex in label_sections(rm_eval.load_pairs(p)[0], p)]

# -----------------------------------------------------------------------------
# model: the SFT transformer, LM head dropped, a fresh scalar head


def reward_model_from(lm, head_std, seed):
    args = replace(lm.args, head="scalar", tie_embeddings=False)
    state = {k: v for k, v in lm.state_dict().items() if k != "output.weight"}
    # its own generator: the head must not depend on whether this process just sampled the preference data
    head = torch.randn(1, args.dim, generator=torch.Generator().manual_seed(seed))
    state["score.weight"] = head * (head_std or (args.dim + 1) ** -0.5)
    with torch.device("meta"):
        rm = Transformer(args)
    rm.load_state_dict(state, assign=True)
    rm.init_rope()
    return rm


sft = load_model(cfg.sft, device="cpu", dtype=torch.float32, head="lm")  # fp32 master weights whatever the file's dtype
tok = load_tokenizer(cfg.sft, sft)
model = reward_model_from(sft, cfg.head_std, cfg.seed).train()
del sft
if cfg.max_len > model.args.max_seq_len:
    raise SystemExit(f"--max_len={cfg.max_len} exceeds the model's context, max_seq_len {model.args.max_seq_len}")
print0(f"model: {num_params(model) / 1e6:.2f}M parameters from {cfg.sft}, score head std "
       f"{model.score.weight.std().item():.4f}, on {device}")
pairs, dropped[f"longer than {cfg.max_len} tokens"] = tokenize_pairs(tok, examples, cfg.max_len, cfg.template)
stats = data_summary("pairs", train_path, len(pairs), dropped)  # 0 usable pairs: an error with the counts
print0(f"eval: {len(eval_examples)} held-out pairs from {', '.join(eval_paths) or '-'}")
if rank == 0:
    write_json(os.path.join(cfg.out_dir, "data_stats.json"), dict(train=stats))
if len(pairs) < cfg.batch_size:
    raise SystemExit(f"{len(pairs)} pairs are fewer than one batch of {cfg.batch_size}")


def field(ex, side):
    """A response's rating: the world's oracle (`true`), else the annotator's score_chosen / score_rejected."""
    key = f"true_{side}" if cfg.target == "true" else f"score_{side}"
    if ex.get(key) is None:
        raise SystemExit(f"{train_path}: --loss=regression / --margin_scale need field {key!r} in every row")
    return float(ex[key])


need = cfg.loss == "regression" or cfg.margin_scale
ratings = torch.tensor([[field(p["example"], s) for s in ("chosen", "rejected")] if need else [0.0, 0.0]
                        for p in pairs])  # (N, 2)
margins = cfg.margin + cfg.margin_scale * (ratings[:, 0] - ratings[:, 1])  # (N,)
t_mean, t_std = ratings.mean().item(), ratings.std().clamp(min=1e-6).item()
targets = (ratings - t_mean) / t_std  # (N, 2) z-scored ratings for the regression loss
if cfg.loss == "regression":
    print0(f"regression targets: {cfg.target} ratings, mean {t_mean:.3f} std {t_std:.3f} (z-scored)")

model = shard_model(model, device, param_dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else None,
                    grad_ckpt=cfg.grad_ckpt)  # placed on the device (under torchrun: this rank's shards only)
optimizer = make_optimizer(model, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
lengths = [len(p["prompt"]) + max(len(p["chosen"]), len(p["rejected"])) for p in pairs]
batches = batch_order(len(pairs), cfg.batch_size, cfg.epochs, cfg.seed, lengths=lengths)
total = min(len(batches), cfg.max_steps or len(batches))
check_schedule(total, cfg.warmup)
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()
log = MetricsLog(os.path.join(cfg.out_dir, "metrics.jsonl"), start)  # rows of steps >= start dropped
start, _ = load_run(cfg.out_dir, model, optimizer)


def evaluate(step, rm):
    """Pairwise accuracy on the held-out pairs. Under FSDP every rank scores the same pairs (collectives match)."""
    if not eval_examples:
        return None
    acc, _ = rm_eval.pairwise_accuracy(rm, tok, eval_examples, cfg.max_len, cfg.template, cfg.eval_batch,
                                       desc="scoring held-out pairs" if rank == 0 else None)
    rm.train()
    log.log(step, quiet=True, **{f"eval/acc_{s}": m["acc"] for s, m in acc.items()})
    print0(rm_eval.format_accuracy(acc, f"step {step}"))
    return acc


# -----------------------------------------------------------------------------
# training loop
t0, seen = time.time(), 0
for step in range(start, total):
    lr = lr_at(step, total, cfg.lr, cfg.warmup, end=cfg.lr * cfg.end_lr_ratio)
    for g in optimizer.param_groups:
        g["lr"] = lr
    mine = batches[step][rank::n_ranks]
    sums = torch.zeros(4, dtype=torch.float64)  # loss, correct, r_chosen, r_rejected summed over my pairs
    mbs = micro_batches(mine, cfg.micro_batch)
    for j, mb in enumerate(mbs):
        if dist.is_initialized():  # FSDP2: reduce-scatter gradients only after the last micro-batch, not each one
            model.set_requires_gradient_sync(j == len(mbs) - 1)
        tokens, _, attn = pair_batch([pairs[i] for i in mb], tok.pad_id)  # (2B, T): B chosen rows, then B rejected
        tokens, attn = tokens.to(device), attn.to(device)
        with autocast:
            scores = model(tokens)  # (2B, T); right padding: real tokens never attend to pads, so no mask is needed
        r = scores.float().gather(1, last_real_index(attn)[:, None]).squeeze(1)  # (2B,) read at the last real token
        chosen_r, rejected_r = r[:len(mb)], r[len(mb):]  # (B,), (B,)
        if cfg.loss == "bt":
            losses = bradley_terry_loss(chosen_r, rejected_r, margins[mb].to(device))  # (B,)
        else:  # each pair contributes the mean of its two responses' squared errors
            losses = regression_loss(r, targets[mb].T.reshape(-1).to(device)).view(2, -1).mean(0)  # (B,)
        # the step's loss is the mean over its batch_size pairs however they are split into micro-batches and
        # ranks: each micro-batch adds its sum / batch_size; x n_ranks because FSDP averages over ranks
        (losses.sum() / cfg.batch_size * n_ranks).backward()
        with torch.no_grad():
            right = (chosen_r > rejected_r).double() + 0.5 * (chosen_r == rejected_r).double()
            sums += torch.stack([losses.sum().double(), right.sum(), chosen_r.sum().double(),
                                 rejected_r.sum().double()]).cpu()
        seen += len(mb)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    stop_if_nonfinite(step, batches[step], train_path, loss=sums[0], grad_norm=grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step % cfg.log_every == 0 or step == total - 1:
        loss, acc, chosen_mean, rejected_mean = (all_reduce_sum(sums) / cfg.batch_size).tolist()
        log.log(step, loss=loss, **{"rewards/accuracies": acc, "rewards/chosen": chosen_mean,
                                    "rewards/rejected": rejected_mean, "rewards/margins": chosen_mean - rejected_mean},
                lr=lr, grad_norm=float(grad_norm),
                pairs_per_s=round(seen * n_ranks / (time.time() - t0), 1))
    if cfg.eval_every and step > 0 and step % cfg.eval_every == 0:
        evaluate(step, model)
    if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
        save_run(cfg.out_dir, model, optimizer, step + 1, asdict(cfg), tok)

# -----------------------------------------------------------------------------
# final model (HF layout + tokenizer), then evaluation of what was saved, on rank 0
state = full_state_dict(model)
final = os.path.join(cfg.out_dir, "model")
finish_distributed(leave=rank != 0)  # under torchrun the other ranks end here; rank 0 evaluates what it saved
save_final(cfg.out_dir, model, state, tok, dict(asdict(cfg), target_mean=t_mean, target_std=t_std), total)
print0(f"saved {final} ({time.time() - t0:.0f}s of training)")
rm = load_model(final, device=device, dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32)
results = dict(accuracy=evaluate(total, rm))
if world is not None and cfg.bon_n:
    records = rm_eval.cached_candidates(cfg.policy, world, n=cfg.bon_n, limit=cfg.bon_limit,
                                       seed=cfg.world_seed, device=device)
    bon, rows = rm_eval.best_of_n(records, RewardScorer(rm, tok, cfg.template, batch_size=cfg.eval_batch))
    results["best_of_n"] = dict(n=cfg.bon_n, limit=cfg.bon_limit, policy=cfg.policy, metrics=bon)
    log.log(total, quiet=True, **{f"bon/{c}_{k}": m[k]["score"] for c, m in bon.items() for k in ("rm", "greedy")})
    print0(rm_eval.format_best_of_n(bon, cfg.bon_n, f"Bo{cfg.bon_n}"))
    for rec, row in list(zip(records, rows))[::max(1, len(rows) // 4)][:4]:  # a few of the RM's picks
        print0(f"  [{rec['category']}] {rec['prompt'][:60]!r} -> {rec['samples'][row['pick']][:80]!r} "
               f"(truth {rec['scores'][row['pick']]:.2f}; greedy {rec['greedy_score']:.2f})")
write_json(os.path.join(cfg.out_dir, "eval_rm.json"), results)
finish_distributed()
