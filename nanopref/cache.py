"""On-disk caches of what models compute, keyed by everything the result depends on.

    fingerprint(path)   -> sha256 of a checkpoint's files: the key of the caches below and of the world's
                           preference data (world/prefs.py) and Best-of-N samples (evals/reward.py), so a
                           changed model never hits a stale cache
    score_pairs(pair_logps, model, pairs, micro_batch)                -> log-probs of pairs, over all ranks
    reference_logps(pairs, name, ref, compute, cache_dir, **settings) -> DPO's reference log-probs, cached

DPO's reference log-probs are computed once before training (EasyLM's precalculate_reference_logps=True) and
kept in cache_dir, one file per (reference weights, tokenized pairs, settings such as template, max_len and
dtype), so reruns and other loss types reuse them.
"""
import hashlib
import json
import os

import torch
import torch.distributed as dist
from tqdm import tqdm

from nanopref.checkpoint import resolve
from nanopref.common import is_main, print0
from nanopref.training import all_reduce_sum

# a checkpoint's own files: weights (HF safetensors or bin, Meta pth), configs, tokenizer
_CHECKPOINT_FILES = (".safetensors", ".bin", ".pth", ".json", ".model")


def fingerprint(path):
    """sha256 (hex) over the names and every byte of a checkpoint's weight, config and tokenizer files;
    `path` is a checkpoint directory or a nanopref run directory (out/sft: its final model)."""
    path, h = resolve(path), hashlib.sha256()
    for f in sorted(os.listdir(path)):
        if f.endswith(_CHECKPOINT_FILES):
            h.update(f.encode())
            with open(os.path.join(path, f), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def score_pairs(pair_logps, model, pairs, micro_batch, desc=None):
    """pair_logps(model, some pairs) -> (chosen (b,), rejected (b,), ...) over all `pairs`, in eval mode,
    gathered on every rank: chosen (N,), rejected (N,) fp64 on the CPU. Under FSDP each rank scores its slice of
    every group of micro_batch x n_ranks pairs; all ranks run the same number of forwards (FSDP's all-gathers
    must pair up), a rank with nothing left scoring pair 0 and discarding it."""
    rank, n_ranks = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    was_training = model.training
    model.eval()
    out = torch.zeros(2, len(pairs), dtype=torch.float64)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i]["prompt"]) + len(pairs[i]["chosen"]))
    group = micro_batch * n_ranks
    for g in tqdm(range(0, len(order), group), desc=desc, disable=rank != 0 or desc is None, leave=False):
        idx = order[g:g + group][rank * micro_batch:(rank + 1) * micro_batch]
        chosen, rejected = pair_logps(model, [pairs[i] for i in idx or [0]])[:2]
        if idx:
            out[0, idx], out[1, idx] = chosen.double().cpu(), rejected.double().cpu()
    model.train(was_training)
    out = all_reduce_sum(out).cpu()
    return out[0], out[1]


def reference_logps(pairs, name, ref, compute, cache_dir, **settings):
    """Reference log-probs of `pairs` (tokenized: prompt, chosen, rejected id lists), (chosen (N,), rejected
    (N,)) fp64: from cache_dir, or compute() -> the same, then cached (rank 0 writes). The key covers everything
    they depend on: the reference checkpoint `ref`'s fingerprint, the token ids (so data, tokenizer, template
    and max_len) and **settings (the compute dtype, ...). name: what the pairs are, for the messages."""
    ids = hashlib.sha256(json.dumps([[p["prompt"], p["chosen"], p["rejected"]] for p in pairs]).encode())
    key = hashlib.sha256(json.dumps(dict(ref=fingerprint(ref), data=ids.hexdigest(), **settings),
                                    sort_keys=True).encode())
    path = os.path.join(cache_dir, f"{key.hexdigest()[:24]}.pt")
    n_ranks = dist.get_world_size() if dist.is_initialized() else 1
    if all_reduce_sum(float(os.path.exists(path))).item() == n_ranks:  # every rank sees it
        cached = torch.load(path, map_location="cpu")
        print0(f"reference log-probs of {name} ({len(pairs)} pairs) from {path}")
        return cached["chosen"], cached["rejected"]
    chosen, rejected = compute()
    if is_main():
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(dict(chosen=chosen, rejected=rejected, ref=ref, data=name, n=len(pairs)), tmp)
        os.replace(tmp, path)  # atomic: a killed run never leaves half a cache file
        print0(f"reference log-probs of {name} cached in {path}")
    return chosen, rejected
