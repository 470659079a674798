"""Supervised fine-tuning: next-token loss on assistant tokens only (EOS included), chat-formatted.

    python train_sft.py                     # the embedded world: builds it (cached), trains the `tiny` preset from
                                            # scratch, evaluates per category; ~2-3 min on a 2-core CPU
    python train_sft.py --data=tulu.jsonl --init=/ckpts/llama-2-7b-hf --out_dir=out/sft-7b --dtype=bfloat16
    torchrun --nproc_per_node=8 train_sft.py --data=tulu.jsonl --init=... --dtype=bfloat16     # FSDP2

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
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from nanopref.checkpoint import load_model, load_tokenizer, save_model
from nanopref.common import (MetricsLog, fill_defaults, parse_config, print0, print_config, seed_all, write_json,
                             write_jsonl)
from nanopref.data import load_sft, pad_right, tokenize_sft
from nanopref.evals import world as world_eval
from nanopref.evals.lm import NanoprefLM
from nanopref.losses import sft_loss
from nanopref.model import Transformer, model_args, num_params
from nanopref.tokenizer import Tokenizer
from nanopref.training import (all_reduce_sum, batch_order, finish_distributed, full_state_dict, init_distributed,
                               load_run, lr_at, make_optimizer, micro_batches, save_run, shard_model, unsharded)
from nanopref.world.build import build_world, load_world


@dataclass
class Config:
    data: str = "world"         # "world", or a JSONL of {"messages": [...]} conversations
    init: str = ""              # checkpoint to fine-tune (HF or Meta layout); "" = from scratch with `preset` (world)
    preset: str = "tiny"        # model size when training from scratch
    world_seed: int = 0         # which world to build/use
    out_dir: str = "out/sft"
    template: str = "tulu"      # chat template: tulu or llama2
    max_len: int = 0            # longest conversation in tokens (0: 256 on the world, 4096 otherwise)
    batch_size: int = 0         # sequences per optimizer step, over all ranks (0: 32 world, 128 paper)
    micro_batch: int = 0        # sequences per forward on each rank (0: 32 world, 4 otherwise)
    epochs: int = 0             # (0: 3 world, 2 paper)
    max_steps: int = 0          # stop after this many optimizer steps (0 = all epochs)
    lr: float = 0.0             # peak learning rate (0: 3e-3 world, 2e-5 paper), linear warmup then decay to 0
    warmup: float = 0.03        # fraction of steps
    adam_beta2: float = 0.99
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 0         # steps between world evaluations (0 = only at the end)
    eval_limit: int = 0         # prompts per category for evaluation (0 = the whole eval set: 200)
    save_every: int = 200       # steps between resumable checkpoints
    stop_after: int = 0         # exit after this many steps, as if killed (to try out resuming)
    seed: int = 1337
    device: str = "auto"
    dtype: str = "float32"      # float32 | bfloat16 (autocast; master weights stay fp32)
    log_every: int = 10


WORLD = dict(max_len=256, batch_size=32, micro_batch=32, epochs=3, lr=3e-3)
PAPER = dict(max_len=4096, batch_size=128, micro_batch=4, epochs=2, lr=2e-5)

cfg = parse_config(Config)
fill_defaults(cfg, WORLD if cfg.data == "world" else PAPER)
rank, world_size, device = init_distributed(cfg.device)
if cfg.batch_size % (cfg.micro_batch * world_size):
    raise SystemExit(f"batch_size {cfg.batch_size} is not divisible by micro_batch {cfg.micro_batch} x "
                     f"{world_size} ranks")
print_config(cfg)
seed_all(cfg.seed)

# -----------------------------------------------------------------------------
# data, tokenizer and model
world = None
if cfg.data == "world":
    wdir = build_world(cfg.world_seed)
    world = load_world(wdir)
    rows = load_sft(os.path.join(wdir, "sft.jsonl"))
    tok = Tokenizer(os.path.join(wdir, "tokenizer.model"))
else:
    if not cfg.init:
        raise SystemExit("--init=CHECKPOINT is required with --data=FILE (a real model to fine-tune)")
    rows = load_sft(cfg.data)
if cfg.init:
    model = load_model(cfg.init, device="cpu")
    tok = load_tokenizer(cfg.init, model) if cfg.data != "world" else tok
else:
    model = Transformer(model_args(cfg.preset, vocab_size=tok.vocab_size))
    model.init_weights()
model.train().to(device)
print0(f"model: {num_params(model) / 1e6:.2f}M parameters, vocab {tok.vocab_size}, on {device}")
examples, dropped = tokenize_sft(tok, rows, cfg.max_len, cfg.template)
print0(f"data: {len(examples)} conversations ({dropped} longer than {cfg.max_len} tokens dropped)")
model = shard_model(model)
optimizer = make_optimizer(model, cfg.lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)
batches = batch_order(len(examples), cfg.batch_size, cfg.epochs, cfg.seed, lengths=[len(e[0]) for e in examples])
total = min(len(batches), cfg.max_steps or len(batches))
autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else nullcontext()
start, _ = load_run(cfg.out_dir, model, optimizer)
log = MetricsLog(os.path.join(cfg.out_dir, "metrics.jsonl"), resume=start > 0)


def evaluate(step):
    if world is None:
        return None
    policy = unsharded(model)  # under FSDP: a full copy on rank 0 (all ranks must call this)
    if rank != 0:
        return None
    policy.eval()
    metrics, records = world_eval.run(NanoprefLM(policy, tok, cfg.template, batch_size=128), world,
                                      limit=cfg.eval_limit or None, desc="eval")
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
    mine = batches[step][rank::world_size]
    n_tokens = all_reduce_sum(sum(sum(examples[i][1]) for i in mine)).item()  # response tokens in the whole batch
    loss_sum = 0.0
    for mb in micro_batches(mine, cfg.micro_batch):
        tokens, loss_mask, _ = pad_right([examples[i][0] for i in mb], [examples[i][1] for i in mb], tok.pad_id)
        tokens, loss_mask = tokens.to(device), loss_mask.to(device)
        with autocast:
            logits = model(tokens)  # right padding: real tokens never attend to pads, so no mask is needed
        nll, _ = sft_loss(logits, tokens, loss_mask)
        # divide by the batch's token count (all micro-batches, all ranks); x world_size because FSDP averages
        (nll / n_tokens * world_size).backward()
        loss_sum += nll.item()
        tokens_seen += tokens.numel()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step % cfg.log_every == 0 or step == total - 1:
        loss = all_reduce_sum(loss_sum).item() / n_tokens
        log.log(step, loss=loss, ppl=math.exp(min(loss, 20)), lr=lr, grad_norm=float(grad_norm),
                tok_per_s=round(tokens_seen * world_size / (time.time() - t0)))
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
    save_model(model, os.path.join(cfg.out_dir, "model"), tokenizer=tok, state=state)
    shutil.rmtree(os.path.join(cfg.out_dir, "ckpt"), ignore_errors=True)  # finished: no resume state needed
    print0(f"saved {cfg.out_dir}/model ({time.time() - t0:.0f}s of training)")
metrics = evaluate(total)
if metrics is not None:
    write_json(os.path.join(cfg.out_dir, "eval_world.json"), metrics)
finish_distributed()
