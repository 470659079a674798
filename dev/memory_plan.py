"""Per-GPU memory of the paper's recipe under FSDP2, computed from nanopref's own model built on the meta device.

    python dev/memory_plan.py                    # every stage on 8x80 GB and 8x141 GB: the configuration to use
    python dev/memory_plan.py --stage=ppo --gpus=8 --mem_gib=79 --grad_ckpt=true --micro_batch=2 --gen_batch=16

What is counted, per GPU (FSDP2 as training.shard_model sets it up: bf16 compute, fp32 master weights):
  trainable model: fp32 parameter shard 4P/W + fp32 gradient shard 4P/W + AdamW m and v 8P/W = 16P/W bytes. The
      fp32 shard *is* the master copy: FSDP2 all-gathers a bf16 cast of it for compute; no third copy exists.
  frozen model (reference, reward): stored in bf16, 2P/W; 0 on the GPU when offloaded (then 2P/W of host memory).
  working set: two gathered bf16 blocks (the one computing, the one prefetched), the gathered root (embedding and
      head), and in backward one block's unsharded bf16 gradient plus its fp32 copy for the reduce-scatter.
  activations (trainable models; per micro-batch of R rows of T tokens, bf16 compute, C dim, F FFN, K*D kv dim):
      bytes autograd saves per token per block, read off the code (tests/test_scale.py checks them on CPU):
        2 RMSNorms x (x.float() 4C + rsqrt 4 + normalised x 2C + output 2C)  = 16C + 8
        attention: q, k after rotary, v (bf16); the output, which is also  = 4C + 4KD + 4H
          wo's input (a view); the fp32 logsumexp
        SwiGLU: w1 out, silu(w1 out), w3 out, their product (w2's input)     = 8F
      (rotary's fp32 products save only the shared cos/sin tables: 4D per token for the whole model). Head per
      token: final norm 8C + 4, the token ids 8, and for the lm head its fp32 log-softmax 4V and targets 8.
      Saved: R*T*(n_layers * block + head) without checkpointing; R*T*(n_layers * 2C + head) with it (each block
      keeps only its bf16 input). Transient at the peak of backward, an estimate: one block's worth of gradients
      (two with checkpointing: the recomputed block too), and for the lm head the bf16 logits and their gradient,
      2 x 2V. Attention is flash / memory-efficient, so nothing is T x T.
  PPO only: the bf16 sampling copy of the whole policy on every rank (training.sampling_copy) and its KV cache,
      gen_batch x (prompt + response) x 2 x n_layers x K*D x 2 bytes.
A configuration fits when the sum is at most 90% of (GPU memory - 2 GiB): the CUDA context and NCCL buffers take
~2 GiB, and the caching allocator's fragmentation the rest. Times assume 35% MFU (6N FLOPs per token plus causal
attention, 8N with checkpointing) and batch-1-like decoding at 70% of memory bandwidth: targets, not measurements.
"""
import argparse
import functools
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanopref.model import Transformer, model_args  # noqa: E402

GiB = 2 ** 30
GPUS = {80: dict(name="H100 80GB", mem_gib=79.0, tflops=989, tbs=3.35),     # memory as torch reports it
        141: dict(name="H200 141GB", mem_gib=139.8, tflops=989, tbs=4.8)}  # bf16 dense TFLOP/s, HBM TB/s
MFU, BW_FRACTION = 0.35, 0.70

# The paper's stages (Ivison et al. 2024; EasyLM's commands): models (role, preset, head, trainable), the longest
# row in tokens, rows per item (a pair is 2 rows), items per optimizer step (over all ranks), items per run.
M13, M70 = "llama2-13b", "llama2-70b"
STAGES = {
    "sft": dict(models=[("policy", M13, "lm", True)], seq=4096, rows=1, batch=128,
                note="Tulu 2 SFT: 2 epochs of tulu-v2-sft-mixture (326k conversations), lr 2e-5"),
    "rm": dict(models=[("reward", M13, "scalar", True)], seq=4096, rows=2, batch=512, items=60_800,
               note="UltraFeedback mean-of-aspects pairs, 1 epoch, lr 1e-5 -> 1e-6"),
    "dpo": dict(models=[("policy", M13, "lm", True), ("reference", M13, "lm", False)], seq=4096, rows=2, batch=32,
                items=3 * 60_800, note="3 epochs, lr 5e-7, beta 0.1; reference live (precompute_ref frees it)"),
    "ppo": dict(models=[("policy", M13, "lm", True), ("reference", M13, "lm", False),
                        ("reward", M13, "scalar", False), ("value", M13, "scalar", True)],
                seq=2048, rows=1, batch=64, prompts=512, steps=116, note="512 rollouts/step, minibatch 64, ~116 steps"),
    "ppo_70b_rm": dict(models=[("policy", M13, "lm", True), ("reference", M13, "lm", False),
                               ("reward", M70, "scalar", False), ("value", M70, "scalar", True)],
                       seq=2048, rows=1, batch=64, prompts=512, steps=116, note="13B policy, 70B reward and value"),
}
TOKENS_PER_PAIR = 1150  # UltraFeedback sample (500 pairs, Llama-2 tokenizer): 2 x the longer side, i.e. padded


@functools.lru_cache(maxsize=None)
def meta_model(preset, head="lm"):
    """The model with no storage: shapes only, the same code path as a real one (built once per preset)."""
    with torch.device("meta"):
        return Transformer(model_args(preset, head=head))


def shard_numel(shape, world, rank):
    """Elements of a parameter on `rank` when FSDP2 shards dim 0 over `world` ranks (torch.chunk's split:
    ceil(d0 / world) rows each, the last ranks shorter or empty)."""
    rows = math.ceil(shape[0] / world)
    mine = max(0, min(rows, shape[0] - rank * rows))
    return mine * math.prod(shape[1:])


@functools.lru_cache(maxsize=None)
def rank_numel(model, world, rank):
    return sum(shard_numel(p.shape, world, rank) for p in model.parameters())


@functools.lru_cache(maxsize=None)
def count(model):
    """-> (all parameters, one block's, the root's: embedding, final norm and head)."""
    total = sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for p in model.layers[0].parameters())
    return total, block, total - block * len(model.layers)


def state_bytes(model, world, rank, trainable, master=4, frozen=2, offload=False):
    """Resident bytes of one model on one rank: dict(params, grads, optim) (frozen: only params)."""
    n = rank_numel(model, world, rank)
    if not trainable:
        return dict(params=0 if offload else frozen * n, grads=0, optim=0)
    return dict(params=master * n, grads=master * n, optim=2 * master * n)  # AdamW: exp_avg, exp_avg_sq


def block_act_per_token(a, p=2):
    """Bytes one block saves for backward per token, compute dtype of p bytes (the docstring's table)."""
    C, KD, F, H = a.dim, a.n_kv_heads * a.head_dim, a.ffn_hidden, a.n_heads
    norms = 2 * (4 * C + 4 + 2 * p * C)  # per RMSNorm: x.float(), rsqrt, normalised x (for the weight's grad), output
    attention = p * (C + 2 * KD) + p * C + 4 * H  # q, k, v; output (also wo's input); logsumexp
    return norms + attention + 4 * p * F  # SwiGLU's four (B, T, F) tensors


def head_act_per_token(a, p=2):
    """Final norm and the token ids (the embedding's); for the lm head the loss's int64 targets (gather's index). Its
    fp32 log-softmax, 4V for T - 1 positions of each row, is added by activation_bytes."""
    return 4 * a.dim + 4 + 2 * p * a.dim + 8 + (8 if a.head == "lm" else 0)


def activation_bytes(a, rows, seq, grad_ckpt, p=2, transient=True):
    """Activation bytes of one micro-batch of rows x seq tokens: saved for backward, plus (transient) the peak's
    gradient buffers and logits."""
    block = block_act_per_token(a, p)
    saved = a.n_layers * (p * a.dim if grad_ckpt else block) + head_act_per_token(a, p) + 4 * a.head_dim
    lm = a.head == "lm"
    extra = (2 if grad_ckpt else 1) * block + (2 * p * a.vocab_size if lm else 0)
    return rows * seq * (saved + (extra if transient else 0)) + (rows * (seq - 1) * 4 * a.vocab_size if lm else 0)


def working_bytes(model, trainable, p=2):
    _, block, root = count(model)
    return 2 * p * block + p * root + ((p + 4) * block if trainable else 0)


def plan_bytes(models, gpus, rows, seq, grad_ckpt, offload, sampler=None, gen_batch=0, rank=0):
    """-> dict of byte counts on one GPU (rank 0 holds the largest shards). models: (meta model, trainable) pairs,
    every trainable one running a micro-batch of rows x seq tokens at once (PPO's policy and value models are
    alive together: one joint backward); sampler: the policy whose bf16 copy and KV cache PPO keeps on every rank."""
    out = dict(params=0, grads=0, optim=0, frozen=0, host=0, working=0, activations=0, sampler=0)
    for m, trainable in models:
        s = state_bytes(m, gpus, rank, trainable, offload=offload)
        out["params" if trainable else "frozen"] += s["params"]
        out["grads"] += s["grads"]
        out["optim"] += s["optim"]
        if offload and not trainable:
            out["host"] += 2 * rank_numel(m, gpus, rank)
        out["working"] = max(out["working"], working_bytes(m, trainable))
        if trainable:
            out["activations"] += activation_bytes(m.args, rows, seq, grad_ckpt)
    if sampler is not None:
        a = sampler.args
        out["sampler"] = 2 * count(sampler)[0] + gen_batch * seq * 2 * a.n_layers * a.n_kv_heads * a.head_dim * 2
    out["total"] = sum(v for k, v in out.items() if k != "host")
    return out


def plan(stage, gpus, grad_ckpt, offload, micro_batch, gen_batch=16, rank=0):
    """plan_bytes for one configuration of one of the paper's stages."""
    st = STAGES[stage]
    models = [(meta_model(preset, head), trainable) for _, preset, head, trainable in st["models"]]
    sampler = meta_model(st["models"][0][1]) if stage.startswith("ppo") else None
    return plan_bytes(models, gpus, micro_batch * st["rows"], st["seq"], grad_ckpt, offload, sampler, gen_batch, rank)


def budget(mem_gib):
    return 0.9 * (mem_gib - 2) * GiB


def train_flops_per_token(a, seq, grad_ckpt=False, forward_only=False):
    """Matmul FLOPs per token: 2N forward (N without the embedding, a lookup), 6N forward and backward, 8N when each
    block's forward runs again in backward; plus causal attention, 2 n_layers C T per token forward (QK^T and AV
    over T/2 keys on average), times 3 (or 4) likewise."""
    n = a.n_layers * (2 * a.dim * a.n_heads * a.head_dim + 2 * a.dim * a.n_kv_heads * a.head_dim +
                      3 * a.dim * a.ffn_hidden) + a.dim * (a.vocab_size if a.head == "lm" else 1)
    per_fwd = 2 * n + 2 * a.n_layers * a.dim * seq
    return per_fwd * (1 if forward_only else 4 if grad_ckpt else 3)


def flops_per_token(stage, grad_ckpt):
    """A stage's FLOPs per token, at its longest rows (an upper bound on the attention term): training for the
    trained models, a forward for the frozen ones, and in PPO also the rollout's scoring forward of the trained ones."""
    st, total = STAGES[stage], 0
    for _, preset, head, trainable in st["models"]:
        a = meta_model(preset, head).args
        total += train_flops_per_token(a, st["seq"], grad_ckpt) if trainable else 0
        if not trainable or stage.startswith("ppo"):
            total += train_flops_per_token(a, st["seq"], forward_only=True)
    return total


def est_hours(stage, gpus, gpu, grad_ckpt, offload, micro_batch, gen_batch):
    """Hours for the stage (SFT: per billion tokens), from FLOPs at MFU, decoding at BW_FRACTION of memory bandwidth,
    and for offloaded frozen models their shard copied in over PCIe (25 GB/s) at every forward."""
    st, g = STAGES[stage], GPUS[gpu]
    flops = g["tflops"] * 1e12 * MFU * gpus
    frozen = [meta_model(m[1], m[2]) for m in st["models"] if not m[3]]
    pcie = sum(2 * count(m)[0] / gpus for m in frozen) / 25e9 if offload else 0.0  # seconds per forward of each
    if not stage.startswith("ppo"):
        tokens = 1e9 if stage == "sft" else st["items"] * TOKENS_PER_PAIR
        forwards = tokens / TOKENS_PER_PAIR / gpus / micro_batch  # each rank's micro-batches: a live reference's
        return (tokens * flops_per_token(stage, grad_ckpt) / flops + forwards * pcie) / 3600
    a = meta_model(st["models"][0][1]).args
    weights = 2 * count(meta_model(st["models"][0][1]))[0]
    per_rank = st["prompts"] // gpus
    kv = gen_batch * st["seq"] / 2 * 2 * a.n_layers * a.n_kv_heads * a.head_dim * 2  # half-full cache on average
    decode = math.ceil(per_rank / gen_batch) * (st["seq"] // 2) * (weights + kv) / (g["tbs"] * 1e12 * BW_FRACTION)
    train = st["prompts"] * st["seq"] * flops_per_token(stage, grad_ckpt) / flops
    return st["steps"] * (decode + train + per_rank / micro_batch * pcie) / 3600


def recommend(stage, gpus, gpu):
    """The configuration with the shortest estimated time that fits (checkpointing on or off, frozen models offloaded
    or not, micro-batch, PPO's generation batch); ties go to the larger micro-batch. None if none fits."""
    st = STAGES[stage]
    per_rank = st["batch"] // gpus
    mbs = [m for m in (16, 8, 4, 2, 1) if per_rank % m == 0]
    gens = [g for g in (64, 32, 16, 8, 4) if g <= st["prompts"] // gpus] if stage.startswith("ppo") else [0]
    offloads = (False, True) if any(not m[3] for m in st["models"]) else (False,)
    best = None
    for ckpt in (False, True):
        for off in offloads:
            for mb in mbs:
                for g in gens:
                    p = plan(stage, gpus, ckpt, off, mb, g)
                    if p["total"] > budget(GPUS[gpu]["mem_gib"]):
                        continue
                    h = est_hours(stage, gpus, gpu, ckpt, off, mb, g)
                    if best is None or (h, -mb) < (best["hours"] - 1e-9, -best["micro_batch"]):
                        best = dict(grad_ckpt=ckpt, offload=off, micro_batch=mb, gen_batch=g, plan=p, hours=h)
    return best


def smallest(stage, gpu):
    """(GPU count, configuration) for the fewest GPUs that fit: 8 (one node), or 16, 32, 64 (several nodes; counts
    that divide the batch, as the scripts require)."""
    for n in (8, 16, 32, 64):
        if STAGES[stage]["batch"] % n == 0 and (rec := recommend(stage, n, gpu)):
            return n, rec
    return None, None


def row(stage, gpus, gpu, rec):
    p = {k: v / GiB for k, v in rec["plan"].items()}
    cfg = f"ckpt {'on' if rec['grad_ckpt'] else 'off'}, offload {'on' if rec['offload'] else 'off'}, " \
          f"micro {rec['micro_batch']}" + (f", gen {rec['gen_batch']}" if rec["gen_batch"] else "")
    return (f"| {stage} | {gpus}x{gpu}GB | {cfg} | {p['params'] + p['grads'] + p['optim']:.1f} | {p['frozen']:.1f} | "
            f"{p['working']:.1f} | {p['activations']:.1f} | {p['sampler']:.1f} | {p['total']:.1f} / "
            f"{budget(GPUS[gpu]['mem_gib']) / GiB:.0f} | {rec['hours']:.1f}{'/Btok' if stage == 'sft' else ''} |")


HEADER = ("| stage | GPUs | recommended | trained (p+g+opt) | frozen | working | activations | sampler+KV | "
          "total / budget GiB | est. h |\n|---|---|---|---|---|---|---|---|---|---|")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=list(STAGES), help="one stage, with the options below (default: the table)")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mem_gib", type=float, default=GPUS[80]["mem_gib"])
    ap.add_argument("--grad_ckpt", default="false", choices=["true", "false"])
    ap.add_argument("--offload", default="false", choices=["true", "false"])
    ap.add_argument("--micro_batch", type=int, default=1)
    ap.add_argument("--gen_batch", type=int, default=16)
    args = ap.parse_args()
    if args.stage:
        p = plan(args.stage, args.gpus, args.grad_ckpt == "true", args.offload == "true", args.micro_batch,
                 args.gen_batch)
        for k, v in p.items():
            print(f"{k:12s} {v / GiB:8.2f} GiB")
        fits = "fits" if p["total"] <= budget(args.mem_gib) else "does NOT fit"
        print(f"{'budget':12s} {budget(args.mem_gib) / GiB:8.2f} GiB: {fits}")
        return
    print("parameters: " + ", ".join(f"{k} {count(meta_model(k))[0] / 1e9:.2f}B" for k in ("llama2-7b", M13, M70)))
    print(HEADER)
    for stage in STAGES:
        for gpu in GPUS:
            n, rec = smallest(stage, gpu)
            print(row(stage, n, gpu, rec) if rec else f"| {stage} | {gpu}GB | fits on no tried count |" + " |" * 7)


if __name__ == "__main__":
    main()
