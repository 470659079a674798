"""On-policy preference data: the world's annotators applied to the SFT policy's own samples (the `*_onpolicy` sets
of nanopref.world.prefs), the way every world preference dataset was built before the pool of other writers
existed; study 5 of issue 10 compares them with the off-policy sets. This module samples the policy, which the
world cannot (nanopref/world imports no model code); the world turns the samples into datasets.

    python -m nanopref.onpolicy --sft=out/sft      # build the off- and on-policy sets, print every set's agreement
(the on-policy sets are cached beside the off-policy ones, rebuilt when the SFT checkpoint, the world or the code
making the prefs changes)
"""
import os
from dataclasses import dataclass

import torch

from nanopref.cache import fingerprint
from nanopref.common import read_json, read_jsonl, write_json
from nanopref.evals.lm import NanoprefLM
from nanopref.world import prefs
from nanopref.world.build import load_world


def policy_samples(lm, prompts, max_new_tokens=96, math_samples=prefs.MATH_SAMPLES):
    """Temperature-1 samples of `lm` per prompt: two, or `math_samples` for math prompts. -> [[text, ...]]"""
    outs = [None] * len(prompts)
    for n in sorted({2, math_samples}):  # one generate call per number of samples
        idx = [k for k, ex in enumerate(prompts) if (math_samples if ex["category"] == "math" else 2) == n]
        texts = lm.generate([lm.chat(prompts[k]["prompt"]) for k in idx], max_new_tokens, temperature=1.0, n=n,
                            desc=f"sampling {n} candidates per prompt")
        for k, t in zip(idx, texts):
            outs[k] = t
    return outs


def ensure_prefs(sft, world_seed=0, names=prefs.DATASETS):
    """The world's preference datasets as nanopref.world.prefs.ensure_prefs builds them, plus the on-policy sets
    from the SFT checkpoint `sft` when `names` asks for any of them; -> the prefs directory."""
    out = prefs.ensure_prefs(world_seed=world_seed)
    if not set(names) & set(prefs.ONPOLICY):
        return out
    if not os.path.exists(sft):
        raise SystemExit(f"no SFT checkpoint at {sft}: run `python train_sft.py` first (the on-policy sets sample it)")
    wdir = os.path.dirname(out)
    key = dict(sft=fingerprint(sft), world=read_json(os.path.join(wdir, "manifest.json"))["spec"],
               code=prefs.code_hash())
    manifest = os.path.join(out, "manifest_onpolicy.json")
    if os.path.exists(manifest) and read_json(manifest) == key:
        return out
    print(f"building the on-policy preference datasets from {sft}'s samples (cached in {out} until it changes)")
    prompts = read_jsonl(os.path.join(wdir, "pref_prompts.jsonl"))
    torch.manual_seed(world_seed)
    samples = policy_samples(NanoprefLM.load(sft, batch_size=128), prompts)
    prefs.write_sets(out, prefs.make_sets(prompts, load_world(wdir)["kb"], world_seed, samples=samples))
    write_json(manifest, key)
    return out


@dataclass
class Config:
    sft: str = "out/sft"   # the SFT policy whose samples become the on-policy candidates
    world_seed: int = 0


if __name__ == "__main__":
    from nanopref.config import parse_config
    cfg = parse_config(Config)
    print(prefs.format_stats(prefs.stats(ensure_prefs(cfg.sft, cfg.world_seed))))
