"""Training mechanism shared by the train_*.py scripts: distributed init and FSDP2 sharding, the optimizer and LR
schedule, and a deterministic resumable batch order (run directories and their checkpoints: nanopref/runs.py).

Distributed mode is detected from torchrun's environment, so every script runs unchanged under `python` and
`torchrun --nproc_per_node=N`. All sharding is `shard_model`, used for policy, reference, reward and value models.
"""
import math
import os
import random
import sys

import torch
import torch.distributed as dist

from nanopref.common import autodevice, dist_info


def init_distributed(device="auto"):
    """-> (rank, world_size, device). Starts the process group under torchrun (nccl on GPU, gloo on CPU)."""
    rank, local_rank, world = dist_info()
    dev = autodevice(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def finish_distributed(leave=True):
    """End of a script under torchrun: wait for every rank, tear the process group down, then (leave) exit at once.
    A finished 2-rank gloo job's interpreter shutdown intermittently aborts a rank ("terminate called without an
    active exception", a C++ thread destroyed while joinable: 3 runs in 32 here), which torchrun reports as a failed
    run; os._exit skips that teardown. Everything has been written (files are closed) by then. leave=False: only the
    teardown, for rank 0 to go on alone. Outside torchrun: nothing."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if leave and dist_info()[2] > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def shard_model(model, device=None, param_dtype=None, grad_ckpt=False, offload=False, reshard_after_forward=True):
    """FSDP2: shard each transformer block, then the root (embeddings, final norm, head); returns the model on
    `device` (None: where it is). Load the model on the CPU first: under torchrun fully_shard moves only this rank's shards to the GPU
    (a whole 13B model per rank would not fit beside the others). Outside torchrun the model is moved whole, and
    only grad_ckpt applies (it is as useful on one GPU). The memory each choice saves is
    computed by dev/memory_plan.py; docs/scale.md says which to use for each stage of the paper's recipe.

    param_dtype: e.g. torch.bfloat16: what each block is all-gathered in for compute. The sharded fp32 parameters
        stay the master weights the optimizer updates (its m and v are fp32 too), and gradients are reduce-scattered
        in fp32 (reduce_dtype): a bf16 sum over many ranks would lose the small updates. None: compute in the
        parameters' own dtype (fp32, or autocast's bf16 matmuls on fp32 weights, gathered in fp32: twice the bytes).
    grad_ckpt: activation checkpointing per block (TransformerBlock.grad_ckpt): a block keeps only its input and
        recomputes the rest in backward: one more forward (~1/3 more compute) for ~5% of the activations (13B).
    offload: FSDP2's CPUOffloadPolicy, for frozen models only (reference, reward): their shards live in (pinned) host
        memory and each block is copied in as it is gathered, trading PCIe time for GPU memory. A trainable model
        would take its optimizer step on the CPU, hence the error.
    reshard_after_forward: True (ZeRO-3): free each gathered block after its forward and gather it again in
        backward, the least memory. False (ZeRO-2-like): keep it gathered until backward, one all-gather per block
        less per micro-batch for a whole unsharded model in memory. An int (e.g. 8, the GPUs of a node): keep a copy
        sharded over that many ranks only, so backward's all-gather stays inside a node. A frozen model always
        reshards (it has no backward, so a kept block would stay gathered until its next forward).
    """
    frozen = not any(p.requires_grad for p in model.parameters())
    if offload and not frozen:
        raise ValueError("shard_model(offload=True) is for frozen models (reference, reward): this model has "
                         "trainable parameters, whose optimizer step would then run on the CPU")
    for layer in model.layers:
        layer.grad_ckpt = grad_ckpt
    if not dist.is_initialized():
        return model if device is None else model.to(device)
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
    # cast_forward_inputs=False: a block's floating inputs are the residual stream (already in param_dtype, from the
    # embedding) and the rotary cos/sin tables, which stay fp32 (apply_rope computes in fp32)
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)
    placement = CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if offload else OffloadPolicy()
    reshard = True if frozen else reshard_after_forward
    for layer in model.layers:
        fully_shard(layer, mp_policy=mp, offload_policy=placement, reshard_after_forward=reshard)
    # the root stays gathered between forward and backward when trained (FSDP2's default for the root: backward
    # starts with the head, right away); a frozen model's root reshards like its blocks
    root = dict(reshard_after_forward=True) if frozen else {}
    fully_shard(model, mp_policy=mp, offload_policy=placement, **root)
    return model


def full_state_dict(model):
    """A plain (unsharded, CPU) state dict; under FSDP every rank must call it (one all-gather per tensor, in the
    same order everywhere) and only rank 0 gets the tensors."""
    if not dist.is_initialized():
        return model.state_dict()
    state = {}
    for name, t in model.state_dict().items():
        full = t.full_tensor() if hasattr(t, "full_tensor") else t
        if dist.get_rank() == 0:
            state[name] = full.detach().cpu()
    return state


def unsharded(model):
    """The model itself outside torchrun; under FSDP a full copy on rank 0 (None elsewhere), built from the
    gathered state dict, for evaluation and sampling that only rank 0 does. Collective: every rank calls it."""
    if not dist.is_initialized():
        return model
    from nanopref.model import Transformer
    state = full_state_dict(model)
    if dist.get_rank() != 0:
        return None
    device = next(iter(model.parameters())).device
    with torch.device("meta"):
        copy = Transformer(model.args)
    copy.load_state_dict(state, assign=True)
    if model.args.tie_embeddings:
        copy.output.weight = copy.tok_embeddings.weight
    copy.init_rope()
    return copy.to(device).eval()


@torch.no_grad()
def sampling_copy(model, dtype=None, into=None):
    """A whole model on *every* rank, for sampling there (PPO rollouts: each rank generates for its own prompts with
    no collective inside the decode loop, so ranks may stop at different lengths). Under FSDP the parameters are
    all-gathered one tensor at a time and cast to `dtype` (e.g. bf16): the cost is one copy in that dtype. Pass the
    previous copy as `into` to refresh it in place (no new allocation; a compiled decode step keeps its graphs).
    Outside torchrun, and in the model's own dtype, the model itself. Collective under FSDP: every rank calls it."""
    w = next(iter(model.parameters()))
    dtype = dtype or w.dtype
    if not dist.is_initialized() and dtype == w.dtype:
        return model
    if into is None:
        from nanopref.model import Transformer
        with torch.device("meta"):
            into = Transformer(model.args).to(dtype)
        into = into.to_empty(device=w.device)  # allocated directly in `dtype`
        if model.args.tie_embeddings:
            into.output.weight = into.tok_embeddings.weight
        into.init_rope()
    target = into.state_dict()
    for name, t in model.state_dict().items():  # the same order on every rank: the all-gathers pair up
        target[name].copy_(t.full_tensor() if hasattr(t, "full_tensor") else t)
    return into.eval()


def all_reduce_sum(x):
    """Sum a tensor (or float) over ranks; identity in a single process."""
    t = torch.as_tensor(x, dtype=torch.float64, device="cuda" if torch.cuda.is_available() else "cpu")
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


# -----------------------------------------------------------------------------


def make_optimizer(model, lr, betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8):
    """AdamW over trainable parameters; weight decay (if any) only on matrices, never on norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [dict(params=decay, weight_decay=weight_decay), dict(params=rest, weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_at(step, total, peak, warmup_frac=0.0, end=0.0, decay="linear"):
    """Learning rate for optimizer step `step` (0-based) of `total`, stepping exactly like EasyLM's optax schedule
    (`join_schedules([linear_schedule(0, peak, W), linear_schedule(peak, end, total - W)], [W])`, with
    W = ceil(warmup_frac * total) as EasyLM computes it): step 0 runs at lr 0, the peak is reached at step W, and
    `end` would be reached at step `total`, one past the last step (which runs at end + (peak - end) / (total - W)).
    decay="constant": peak after warmup (EasyLM's PPO sets end_lr = lr); "cosine": optax's
    warmup_cosine_decay_schedule."""
    warmup = math.ceil(warmup_frac * total)
    if step < warmup:  # optax.linear_schedule(0, peak, warmup) at count = step
        return peak * step / warmup
    decay_steps = total - warmup
    if decay == "constant" or decay_steps <= 0:  # optax: transition_steps <= 0 holds init_value
        return peak
    frac = min(step - warmup, decay_steps) / decay_steps  # optax clips the count to [0, transition_steps]
    if decay == "cosine":
        return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))
    return peak + (end - peak) * frac


def check_schedule(total, warmup_frac):
    """The schedule starts at lr 0 (step 0 of any warmup), so a one-step run with warmup would save its initial
    weights as trained: an error naming the flags instead."""
    if total == 1 and math.ceil(warmup_frac) >= 1:
        raise SystemExit(f"one optimizer step with --warmup={warmup_frac}: the schedule's step 0 runs at lr 0, so "
                         f"nothing would be trained; give more steps (--max_steps) or --warmup=0")


def batch_order(n, batch_size, epochs, seed, lengths=None, drop_last=True):
    """The whole run's batches as lists of example indices: each epoch a fresh seeded permutation. Resuming at
    step k is taking batches[k:], so a resumed run sees exactly the data an uninterrupted one would.
    lengths: group examples of similar length into the same batch (less padding): sort within windows of 64
    batches of the permutation, then shuffle the batches."""
    batches = []
    for epoch in range(epochs):
        rng = random.Random(seed * 1000 + epoch)
        idx = list(range(n))
        rng.shuffle(idx)
        if drop_last:
            idx = idx[:n - n % batch_size]
        if lengths is not None:
            w = 64 * batch_size
            idx = [i for s in range(0, len(idx), w) for i in sorted(idx[s:s + w], key=lambda i: lengths[i])]
        epoch_batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
        if lengths is not None:
            rng.shuffle(epoch_batches)
        batches += epoch_batches
    return batches


def micro_batches(batch, micro_size):
    return [batch[i:i + micro_size] for i in range(0, len(batch), micro_size)]


def stop_if_nonfinite(step, examples, source, **values):
    """Call before optimizer.step(): a NaN or infinite loss or gradient norm, on any rank, ends the run here, so no
    non-finite weights are ever trained on or saved, and the last checkpoint stays as it was. examples: the step's
    example indices into `source`'s usable rows. Collective under torchrun (every rank stops)."""
    bad = {k: float(v) for k, v in values.items() if not math.isfinite(float(v))}
    if not (all_reduce_sum(float(bool(bad))).item() if dist.is_initialized() else bad):
        return
    shown = ", ".join(f"{k} {v}" for k, v in bad.items()) or "non-finite values on another rank"
    more = f" ... ({len(examples)} in all)" if len(examples) > 16 else ""
    raise SystemExit(f"step {step}: {shown}, on the batch of examples {list(examples)[:16]}{more} of {source}: "
                     f"stopped before the optimizer step, nothing saved after the last checkpoint (fix the data or the "
                     f"settings, e.g. a lower --lr, and run again)")
