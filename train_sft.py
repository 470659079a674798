"""Supervised fine-tuning: next-token loss on assistant tokens only (EOS included), chat-formatted.

    python train_sft.py                     # the embedded world: builds it (cached), trains the `tiny` preset from
                                            # scratch, evaluates per category; ~2-3 min on a 2-core CPU
    python train_sft.py --recipe=paper --data=tulu.jsonl --init=/ckpts/llama-2-7b-hf --out_dir=out/sft-7b \
        --dtype=bfloat16
    torchrun --nproc_per_node=8 train_sft.py --recipe=paper --data=tulu.jsonl --init=... --dtype=bfloat16     # FSDP2

The run directory: out_dir/model (HF layout + tokenizer.model: the input of train_rm.py and train_dpo.py; any
script also accepts out_dir itself), metrics.jsonl, eval_world.json, and ckpt/ while training: a killed run
restarts from its last checkpoint when run again with the same arguments.

Departures from the paper's SFT (Tulu 2: lr 2e-5, batch 128, 2 epochs, warmup 3%, length 8192, no weight decay):
  1. On the world the model is trained from scratch, so it gets a much higher learning rate and more epochs.
  2. Conversations longer than max_len are dropped (and counted), not truncated.
  3. The loss is the mean over all response tokens of a batch (open-instruct's "sum" reduction), however the
     batch is split into micro-batches and ranks.
"""
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from nanopref.checkpoint import check_tokenizer, load_model, load_tokenizer, model_config
from nanopref.common import MetricsLog, print0, seed_all, write_json, write_jsonl
from nanopref.config import check_config, parse_config, print_config, require_recipe
from nanopref.data import data_summary, load_sft, pad_right, tokenize_sft
from nanopref.evals import world as world_eval
from nanopref.evals.lm import NanoprefLM
from nanopref.losses import sft_loss
from nanopref.model import Transformer, model_args, num_params
from nanopref.runs import load_run, open_run, save_final, save_run
from nanopref.tokenizer import Tokenizer
from nanopref.training import (all_reduce_sum, batch_order, check_schedule, finish_distributed, full_state_dict,
                               init_distributed, lr_at, make_optimizer, micro_batches, shard_model, stop_if_nonfinite,
                               unsharded)
from nanopref.world.build import build_world, load_world


@dataclass
class Config:
    data: str = "world"         # "world", or a JSONL of {"messages": [...]} conversations
    init: str | None = None     # checkpoint to fine-tune (HF or Meta layout); None: from scratch with `preset` (world)
    preset: str = "tiny"        # model size when training from scratch (nanopref/model.py PRESETS)
    world_seed: int = 0         # which world to build or use
    out_dir: str = "out/sft"    # run directory
    recipe: str = "world"       # world: the values below; paper: Tulu 2's (PAPER, under any flag given)
    template: str = "tulu"      # chat template: tulu or llama2
    max_len: int = 256          # longest conversation in tokens; longer ones are dropped and counted
    batch_size: int = 32        # sequences per optimizer step, over all ranks
    micro_batch: int = 32       # sequences per forward on each rank
    epochs: int = 3             # passes over the data
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    lr: float = 3e-3            # peak learning rate, linear warmup then linear decay to 0
    warmup: float = 0.03        # fraction of steps
    adam_beta2: float = 0.99    # AdamW's beta2
    weight_decay: float = 0.0   # AdamW's, on matrices only
    grad_clip: float = 1.0      # global gradient-norm clip
    eval_every: int = 0         # steps between world evaluations (0: only at the end)
    eval_limit: int | None = None  # world prompts per category for evaluation (None: all 200)
    eval_split: str = "val"     # world prompts evaluated during training: val (choices are made on it) | test
    save_every: int = 200       # steps between resumable checkpoints (0: never)
    stop_after: int | None = None  # exit after this many steps, as if killed (to try out resuming)
    resume: str = "auto"        # auto: a rerun continues a killed run (same arguments only); force: even with other
                                # arguments; no: delete out_dir's checkpoint and model and start over
    seed: int = 1337            # batch order and initialisation
    device: str = "auto"        # auto (cuda if available), cpu, cuda, cuda:N
    dtype: str = "float32"      # float32 | bfloat16 (bf16 compute; fp32 master weights, reductions and log-softmax)
    grad_ckpt: bool = False     # activation checkpointing per block: less memory for ~1/3 more compute (docs/scale.md)
    log_every: int = 10         # steps between log lines


# Tulu 2's SFT (Ivison et al. 2023), applied by --recipe=paper
PAPER = dict(max_len=4096, batch_size=128, micro_batch=4, epochs=2, lr=2e-5)

cfg = parse_config(Config, paper=PAPER)
check_config(cfg)
if cfg.data != "world":
    require_recipe(cfg, PAPER, f"--data={cfg.data}")
    if cfg.init is None:
        raise SystemExit("--init=CHECKPOINT is required with --data=FILE (a real model to fine-tune)")
if cfg.init is not None:
    model_config(cfg.init, head="lm", flag="--init")  # its config, before any work: missing, unreadable, a reward model
rank, n_ranks, device = init_distributed(cfg.device)
if cfg.batch_size % (cfg.micro_batch * n_ranks):
    raise SystemExit(f"--batch_size={cfg.batch_size} is not divisible by --micro_batch={cfg.micro_batch} x "
                     f"{n_ranks} ranks")
print_config(cfg)
seed_all(cfg.seed)
start = open_run(cfg)  # locks out_dir; the step a killed run left off at (refused if the arguments changed)

# -----------------------------------------------------------------------------
# data, tokenizer and model
world = None
if cfg.data == "world":
    wdir = build_world(cfg.world_seed)
    world = load_world(wdir)
    data_path = os.path.join(wdir, "sft.jsonl")
    tok = Tokenizer(os.path.join(wdir, "tokenizer.model"))
else:
    data_path = cfg.data
rows, dropped = load_sft(data_path, template=cfg.template)  # every row checked: file:line and field on error
if cfg.init is not None:
    model = load_model(cfg.init, device="cpu", head="lm")
    tok = load_tokenizer(cfg.init) if cfg.data != "world" else tok
    check_tokenizer(tok, model)
else:
    model = Transformer(model_args(cfg.preset, vocab_size=tok.vocab_size))
    model.init_weights()
seed_all(cfg.seed + rank)  # the init above is the same on every rank; from here each rank has its own stream
model.train()
print0(f"model: {num_params(model) / 1e6:.2f}M parameters, vocab {tok.vocab_size}, on {device}")
if cfg.max_len > model.args.max_seq_len:
    raise SystemExit(f"--max_len={cfg.max_len} exceeds the model's context, max_seq_len {model.args.max_seq_len}")
examples, n_long = tokenize_sft(tok, rows, cfg.max_len, cfg.template)
stats = data_summary("conversations", data_path, len(examples),
                     {f"longer than {cfg.max_len} tokens": n_long, **dropped})  # 0 usable: an error with the counts
if rank == 0:
    write_json(os.path.join(cfg.out_dir, "data_stats.json"), dict(train=stats))
model = shard_model(model, device, param_dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else None,
                    grad_ckpt=cfg.grad_ckpt)  # placed on the device (under torchrun: this rank's shards only)
optimizer = make_optimizer(model, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
batches = batch_order(len(examples), cfg.batch_size, cfg.epochs, cfg.seed, lengths=[len(e[0]) for e in examples])
total = min(len(batches), cfg.max_steps or len(batches))
check_schedule(total, cfg.warmup)
if total == 0:  # never save the initial weights as a trained model
    raise SystemExit(f"{len(examples)} usable conversations make no batch of {cfg.batch_size}: nothing to train")
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()
start, _ = load_run(cfg.out_dir, model, optimizer)
log = MetricsLog(os.path.join(cfg.out_dir, "metrics.jsonl"), start)  # rows of steps >= start dropped


def evaluate(step):
    if world is None:
        return None
    policy = unsharded(model)  # under FSDP: a full copy on rank 0 (all ranks must call this)
    if rank != 0:
        return None
    policy.eval()
    metrics, records = world_eval.run(NanoprefLM(policy, tok, cfg.template, batch_size=128), world,
                                      limit=cfg.eval_limit, desc="eval", split=cfg.eval_split)
    model.train()
    log.log(step, quiet=True, **{f"eval/{c}": m["score"] for c, m in metrics.items()})
    write_jsonl(os.path.join(cfg.out_dir, "eval_world_samples.jsonl"), records)
    print0(world_eval.format_table(metrics, f"step {step}"))
    for r in records[::max(1, len(records) // 5)][:5]:
        print0(f"  [{r['category']}] {r['prompt'][:70]!r} -> {r['output'][:90]!r} (score {r['score']:.2f})")
    return metrics


# -----------------------------------------------------------------------------
# training loop
t0, tokens_seen = time.time(), 0
for step in range(start, total):
    lr = lr_at(step, total, cfg.lr, cfg.warmup)
    for g in optimizer.param_groups:
        g["lr"] = lr
    mine = batches[step][rank::n_ranks]
    n_tokens = all_reduce_sum(sum(sum(examples[i][1]) for i in mine)).item()  # response tokens in the whole batch
    loss_sum = 0.0
    mbs = micro_batches(mine, cfg.micro_batch)
    for j, mb in enumerate(mbs):
        if dist.is_initialized():  # FSDP2: reduce-scatter gradients only after the last micro-batch, not each one
            model.set_requires_gradient_sync(j == len(mbs) - 1)
        tokens, loss_mask, _ = pad_right([examples[i][0] for i in mb], [examples[i][1] for i in mb], tok.pad_id)
        tokens, loss_mask = tokens.to(device), loss_mask.to(device)
        with autocast:
            logits = model(tokens)  # right padding: real tokens never attend to pads, so no mask is needed
        nll, _ = sft_loss(logits, tokens, loss_mask)
        # divide by the batch's token count (all micro-batches, all ranks); x n_ranks because FSDP averages
        (nll / n_tokens * n_ranks).backward()
        loss_sum += nll.item()
        tokens_seen += tokens.numel()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    stop_if_nonfinite(step, batches[step], cfg.data, loss=loss_sum, grad_norm=grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step % cfg.log_every == 0 or step == total - 1:
        loss = all_reduce_sum(loss_sum).item() / n_tokens
        log.log(step, loss=loss, ppl=math.exp(min(loss, 20)), lr=lr, grad_norm=float(grad_norm),
                tok_per_s=round(tokens_seen * n_ranks / (time.time() - t0)))
    if cfg.eval_every and step > 0 and step % cfg.eval_every == 0:
        evaluate(step)
    if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
        save_run(cfg.out_dir, model, optimizer, step + 1, asdict(cfg), tok)
    if cfg.stop_after and step + 1 == cfg.stop_after:
        raise SystemExit(f"stopping after step {step + 1} as asked (--stop_after); run again to resume")

# -----------------------------------------------------------------------------
# final model (HF layout + tokenizer) and evaluation
state = full_state_dict(model)
if rank == 0:
    save_final(cfg.out_dir, model, state, tok, asdict(cfg), total)  # marked finished; the checkpoint deleted
    print0(f"saved {cfg.out_dir}/model ({time.time() - t0:.0f}s of training)")
metrics = evaluate(total)
if metrics is not None:
    write_json(os.path.join(cfg.out_dir, "eval_world.json"), metrics)
finish_distributed()
