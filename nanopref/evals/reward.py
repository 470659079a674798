"""Reward-model evaluation: pairwise accuracy on held-out pairs, per section, and Best-of-N against ground truth.
train_rm.py's end-of-run evaluation and evaluate.py both call these, so their numbers agree by construction.

    load_pairs(path)                               -> preference examples (UltraFeedback, HH-RLHF or RewardBench rows)
    pairwise_accuracy(model, tok, examples)        -> {section: {"acc", "stderr", "n"}, ..., "all": {...}}, records
    sample_candidates(lm, world, n=16)             -> per prompt: greedy + n samples, each with its ground truth
    best_of_n(records, rm)                         -> {category: {method: {"score", "stderr", "n"}}}, overall incl.

Sections: a row's "section", else RewardBench's section of its "subset" (Chat, Chat Hard, Safety, Reasoning),
else its "category" (the world's), else "all". A pair counts 1 if r_chosen > r_rejected, 0.5 on an exact tie
(RewardBench counts a tie as wrong; with ties at 0.5, a constant RM scores exactly chance). Pairs that share a
prompt (the world's test_gold: the best response against each worse one) are not independent, so standard
errors are clustered by prompt.
"""
import glob
import hashlib
import inspect
import json
import math
import os

import torch

from nanopref.cache import fingerprint
from nanopref.common import OUT_DIR, read_jsonl, write_jsonl
from nanopref.data import load_preferences, pad_right, tokenize_pairs
from nanopref.evals.world import mean_se
from nanopref.model import last_real_index
from nanopref.world import CATEGORIES, overall, rate, score

# RewardBench v1's subsets per section (allenai/reward-bench). RewardBench's own section score weights subsets by
# their sizes, except Reasoning, where math-prm counts as much as all of the code subsets together; here every
# section is the plain mean over its pairs.
REWARDBENCH_SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
_SECTION_OF_SUBSET = {s: sec for sec, subsets in REWARDBENCH_SECTIONS.items() for s in subsets}


def section_of(ex):
    return ex.get("section") or _SECTION_OF_SUBSET.get(ex.get("subset")) or ex.get("category") or "all"


def load_pairs(path, limit=None):
    """-> (examples, n_skipped). RewardBench rows {"prompt": str, "chosen": str, "rejected": str, "subset"} become
    single-turn examples; anything else goes through data.load_preferences (UltraFeedback / HH-RLHF / world)."""
    rows = read_jsonl(path, required=("chosen", "rejected"))[:limit]
    if rows and isinstance(rows[0].get("prompt"), str) and isinstance(rows[0]["chosen"], str) and "subset" in rows[0]:
        return [dict(prompt=[dict(role="user", content=r["prompt"])], chosen=r["chosen"], rejected=r["rejected"],
                     **{k: v for k, v in r.items() if k not in ("prompt", "chosen", "rejected")}) for r in rows], 0
    return load_preferences(path, limit)


@torch.no_grad()
def score_sequences(model, seqs, pad_id, batch_size=64, desc=None):
    """Token-id lists -> [reward], each read at the sequence's last real token. Batches are formed from sequences
    of similar length (less padding); the score of a sequence does not depend on what else is in its batch."""
    device = model.tok_embeddings.weight.device
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    chunks = [order[b:b + batch_size] for b in range(0, len(order), batch_size)]
    if desc:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc=desc, leave=False)
    out = [0.0] * len(seqs)
    for idx in chunks:
        tokens, _, attn = pad_right([seqs[i] for i in idx], [[0] * len(seqs[i]) for i in idx], pad_id)
        tokens, attn = tokens.to(device), attn.to(device)
        # right padding: real tokens never attend to pads, so the plain causal forward (no (B, T, T) mask, the
        # fast attention path) gives what score_last(model, tokens, attn) gives; read at the last real token
        scores = model(tokens)  # (B, T)
        r = scores.float().gather(1, last_real_index(attn)[:, None]).squeeze(1).tolist()  # (B,)
        for i, x in zip(idx, r):
            out[i] = x
    return out


def clustered_mean_se(values, clusters):
    """Mean of `values` and its standard error when values sharing a cluster id may be correlated (the
    cluster-robust "sandwich" estimate: sum over clusters of the squared summed residuals, / n^2)."""
    n = len(values)
    m = sum(values) / n
    by = {}
    for v, c in zip(values, clusters):
        by[c] = by.get(c, 0.0) + (v - m)
    g = len(by)
    if g < 2:
        return m, 0.0
    return m, math.sqrt(g / (g - 1) * sum(s * s for s in by.values())) / n


def pairwise_accuracy(model, tok, examples, max_len=None, template="tulu", batch_size=64, desc=None):
    """Score both sides of every pair with the reward model. -> (metrics, records): metrics maps each section and
    "all" to {"acc", "stderr", "n"} (and "dropped": pairs over max_len, not scored); records hold each pair's
    rewards."""
    model.eval()
    pairs, dropped = tokenize_pairs(tok, examples, max_len or model.args.max_seq_len, template)
    seqs = [p["prompt"] + p[side] for side in ("chosen", "rejected") for p in pairs]
    r = score_sequences(model, seqs, tok.pad_id, batch_size, desc)
    records = []
    for i, p in enumerate(pairs):
        rc, rr = r[i], r[len(pairs) + i]
        ex = p["example"]
        records.append(dict(section=section_of(ex), cluster=str(ex["prompt"]), r_chosen=rc, r_rejected=rr,
                            correct=1.0 if rc > rr else 0.5 if rc == rr else 0.0))
    metrics = {}
    for sec in sorted({x["section"] for x in records}) + ["all"]:
        rows = [x for x in records if sec in ("all", x["section"])]
        m, se = clustered_mean_se([x["correct"] for x in rows], [x["cluster"] for x in rows])
        metrics[sec] = dict(acc=m, stderr=se, n=len(rows))
    metrics["all"]["dropped"] = dropped
    return metrics, records


def format_accuracy(metrics, title="RM accuracy"):
    secs = [s for s in metrics if s != "all"] + ["all"]
    lines = [f"{title:>12} | " + " | ".join(f"{s:>13}" for s in secs)]
    lines.append(f"{'':>12} | " + " | ".join(f"{metrics[s]['acc']:6.3f} ± {metrics[s]['stderr']:.3f}" for s in secs))
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# Best-of-N on the world


def sample_candidates(lm, world, n=16, limit=None, categories=CATEGORIES, max_new_tokens=96, temperature=1.0,
                      seed=0):
    """For each eval prompt (the first `limit` per category): the policy's greedy response and n samples at
    `temperature`, each with its ground-truth score (world.score), the oracle judge's overall rating, and whether it
    ended with EOS (`eos`, from lm.eos after each generate; False: cut at max_new_tokens)."""
    kb = world["kb"]
    rows = [ex for c in categories for ex in world["eval"][c][:limit]]
    prompts = [lm.chat(ex["prompt"]) for ex in rows]
    greedy = lm.generate(prompts, max_new_tokens, temperature=0.0, desc="greedy")
    torch.manual_seed(seed)
    samples = lm.generate(prompts, max_new_tokens, temperature=temperature, n=n, desc=f"sampling {n} per prompt")
    records = []
    for ex, (g,), outs, eos in zip(rows, greedy, samples, lm.eos):
        records.append(dict(id=ex["id"], category=ex["category"], prompt=ex["prompt"], greedy=g,
                            greedy_score=score(ex, g, kb), samples=outs, scores=[score(ex, o, kb) for o in outs],
                            oracle=[overall(rate(ex, o, kb)) for o in outs], eos=list(eos)))
    return records


# what the cached candidates depend on besides the policy and the settings: the world's code (its scorers, oracle
# and the IFEval checks they use) and the sampling path; a change to any of these files is a new cache entry
_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_FILES = sorted(glob.glob(os.path.join(_PKG, "world", "**", "*.py"), recursive=True)) + [
    os.path.join(_PKG, f) for f in ("ifeval_checks.py", "ifeval_lang.py", "evals/lm.py", "generate.py")]


def candidates_key(policy_fingerprint, world, **settings):
    """The cache key of sample_candidates' records: the policy's weights, the world itself (knowledge base and
    eval prompts with their metadata), the code in CODE_FILES and sample_candidates' own source, and the settings."""
    h = hashlib.sha256()
    for path in CODE_FILES:
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, _PKG).encode() + b"\0" + f.read())
    h.update(inspect.getsource(sample_candidates).encode())
    world_data = json.dumps([world["kb"], world["eval"]], sort_keys=True)
    key = json.dumps([policy_fingerprint, hashlib.sha256(world_data.encode()).hexdigest(), h.hexdigest(), settings],
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cached_candidates(policy, world, n=16, limit=None, seed=0, device="cpu", max_new_tokens=96, temperature=1.0,
                      cache_dir=None):
    """sample_candidates from the checkpoint at `policy`, cached in out/cache under candidates_key (the policy's
    weights, the world and its scoring code, the sampling settings), so that every reward model (and evaluate.py)
    reranks the very same samples, and a changed scorer or world never reuses stale scores."""
    from nanopref.evals.lm import NanoprefLM
    key = candidates_key(fingerprint(policy), world, n=n, limit=limit, seed=seed,
                         max_new_tokens=max_new_tokens, temperature=temperature)
    path = os.path.join(cache_dir or os.path.join(OUT_DIR, "cache"), f"bon_{key}.jsonl")
    if os.path.exists(path):
        return read_jsonl(path)
    lm = NanoprefLM.load(policy, device=device, batch_size=256)
    records = sample_candidates(lm, world, n, limit, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    write_jsonl(path, records)
    return records


def _pick(values, scores):
    """Ground-truth score of the response with the highest value; ties broken at random, in expectation."""
    best = max(values)
    tied = [s for v, s in zip(values, scores) if v == best]
    return sum(tied) / len(tied)


METHODS = ("greedy", "random", "rm", "oracle", "best")


def best_of_n(records, rm, n=None, batch_size=256, missing_eos_score=-10.0):
    """Rerank each prompt's samples (the first n; all by default) with `rm` (anything with
    .score([(user, response)]) -> [reward], e.g. evals.lm.RewardScorer) and compare, on ground truth:
        greedy  the policy's greedy response
        random  a uniformly random sample (the mean over samples: the policy's expected sampled score)
        rm      the sample the reward model likes best (Best-of-N)
        oracle  the sample the oracle judge rates best (a perfect reward model of the judge behind uf_fine)
        best    the best sample by ground truth: the ceiling of any reranker
    A sample cut at max_new_tokens (its record's eos False) is scored as PPO scores it: missing_eos_score (train_ppo's
    default, EasyLM's -10) instead of the reward model's score, which would read the cut text as if it had ended.
    -> ({category: {method: {"score", "stderr", "n"}, "rm-greedy": ..., "rm-random": ...}, "overall": ...},
        per-prompt rows). Differences are paired per prompt, so their standard errors are those of paired means."""
    n = n or len(records[0]["samples"])
    for i, r in enumerate(records):
        if len(r.get("eos", ())) < n or len(r["samples"]) < n:
            raise ValueError(f"best_of_n: record {i} ({r.get('id', r['prompt'][:40])!r}) has {len(r['samples'])} "
                             f"samples and {len(r.get('eos', ()))} eos flags; {n} of each needed (sample_candidates "
                             "records them)")
    pairs = [(r["prompt"], s) for r in records for s in r["samples"][:n]]
    rewards = []
    for b in range(0, len(pairs), batch_size):
        rewards += rm.score(pairs[b:b + batch_size])
    rows = []
    for i, r in enumerate(records):
        rw = [x if ended else missing_eos_score for x, ended in zip(rewards[i * n:(i + 1) * n], r["eos"][:n])]
        sc = r["scores"][:n]
        rows.append(dict(category=r["category"], pick=max(range(n), key=lambda j: rw[j]), greedy=r["greedy_score"],
                         random=sum(sc) / n, rm=_pick(rw, sc), oracle=_pick(r["oracle"][:n], sc), best=max(sc),
                         cut=n - sum(r["eos"][:n])))
    metrics = {}
    for c in [c for c in CATEGORIES if any(x["category"] == c for x in rows)]:
        mine = [x for x in rows if x["category"] == c]
        metrics[c] = {}
        for k in METHODS + ("rm-greedy", "rm-random"):
            vals = [x["rm"] - x[k[3:]] if "-" in k else x[k] for x in mine]
            m, se = mean_se(vals)
            metrics[c][k] = dict(score=m, stderr=se, n=len(vals))
    cats = list(metrics)
    metrics["overall"] = {k: dict(score=sum(metrics[c][k]["score"] for c in cats) / len(cats),
                                  stderr=math.sqrt(sum(metrics[c][k]["stderr"] ** 2 for c in cats)) / len(cats),
                                  n=len(rows)) for k in metrics[cats[0]]}
    return metrics, rows


def format_best_of_n(metrics, n, title=""):
    cols = METHODS + ("rm-greedy",)
    head = dict(greedy="greedy", random="random", rm=f"RM Bo{n}", oracle=f"oracle Bo{n}", best="ceiling",
                **{"rm-greedy": "RM - greedy"})
    lines = [f"{title:>8} | " + " | ".join(f"{head[k]:>14}" for k in cols)]
    for c, m in metrics.items():
        lines.append(f"{c:>8} | " + " | ".join(f"{m[k]['score']:+7.3f} ± {m[k]['stderr']:.3f}" if k == "rm-greedy"
                                               else f"{m[k]['score']:6.3f} ± {m[k]['stderr']:.3f} "
                                               for k in cols))
    return "\n".join(lines)

