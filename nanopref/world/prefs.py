"""Preference datasets of controlled quality, built from the SFT policy's own samples, rated by the oracle, then
labelled by simulated annotators that mimic the paper's data sources.

    python -m nanopref.world.prefs                       # build (if missing) and print each dataset's agreement
    python -m nanopref.world.prefs --sft=out/sft --world_seed=0
(cached in out/world/seed<N>/prefs/, rebuilt whenever the SFT checkpoint, the world or the code making the prefs
changes)

Candidates per prompt (UltraFeedback rated 4 completions from different models): two samples of the SFT policy
at temperature 1, one perturbed (worse) variant of the first sample, and one written response, good or flawed
in equal measure (a stronger or weaker "other model"). The oracle's mean of aspects is the ground truth.
Identical texts (two equal policy samples) are rated once: a pair of copies carries no signal (UltraFeedback's
four completions come from four different models).
Two knobs for reward-model experiments, off by default (dev/LOG.md, issue 4): MATH_SAMPLES > 2 samples more
policy responses for math prompts, and categories in ALL_PAIRS pair the chosen response with *every* worse
candidate in the UF datasets instead of one random one. With 8 and ("math",) the RM's math Best-of-16 rose from
0.24-0.32 to 0.34-0.39 (still not above a random sample by more than noise), at 2.4x the uf_fine pairs (70% math),
which would also make DPO on uf_fine mostly a math run. test_gold always keeps the first four candidates.

Datasets, in the schema of UltraFeedback-binarized (prompt, chosen/rejected message lists, score_chosen/rejected)
plus category, the annotator's aspect ratings and the oracle's true scores:
  uf_fine     fine-grained synthetic (UltraFeedback "mean of aspects"): a careful rater scores each aspect 1-5 with
              small noise; chosen = highest mean, rejected = a random lower one of the others
  uf_overall  overall-score synthetic (UltraFeedback "overall"): one holistic 1-10 score with more noise
  hh_human    human-like (HH-RLHF): two policy samples, the better picked with 30% annotator disagreement;
              helpful/harmless prompts (chat and safety weighted up)
  web_length  web-like (SHP / StackExchange): votes follow a proxy, length: the longer answer wins 90% of the time
  arena       arena-like (Chatbot Arena): users vote for what literally helps them, so on harmful requests the
              compliant answer wins; elsewhere the better one with 20% noise
  test_gold   held-out prompts, pairs labelled by the oracle itself (ties dropped): the RM's test set
  math_steps  PRM800k-like (Tulu 2.5's preference data has a prm800k_pairs_phase2 split: solutions to MATH problems
              whose steps people labelled right or wrong): written solutions to fresh math prompts, a correct one against one
              with a single mistake (an operand copied wrong, a slipped result carried to the end, a wrong bare
              answer); no policy samples, labelled by the oracle. The world RM trains on uf_fine + math_steps:
              uf_fine alone does not teach a 1M-parameter RM arithmetic (dev/LOG.md, issue 4)
"""
import hashlib
import json
import os
import random
from dataclasses import dataclass

from nanopref.common import read_jsonl, write_json, write_jsonl
from nanopref.world import ASPECTS, flawed_response, good_response, make_examples, overall, perturb, rate
from nanopref.world.writers import _math_text

ANNOTATED = ("uf_fine", "uf_overall", "hh_human", "web_length", "arena")  # labels of the policy's samples
DATASETS = ANNOTATED + ("math_steps",)
MATH_STEPS = 8000  # prompts of math_steps (3 pairs each)
MATH_SAMPLES = 2  # policy samples per math prompt (2 for the other categories): see the docstring
ALL_PAIRS = ()    # categories where the UF datasets pair the chosen response with every worse candidate
HH_WEIGHTS = {"chat": 3, "safety": 3, "truth": 1, "ifeval": 1, "math": 1}  # relative prompt weights for hh_human


def sample_candidates(lm, prompts, kb, seed, max_new_tokens=96, math_samples=MATH_SAMPLES):
    """Candidate responses per prompt with their oracle ratings: [[{"text", "source", "aspects", "true"}]]. The
    first four are UltraFeedback's: two policy samples, the first one perturbed, a written response; math prompts
    then have math_samples - 2 more policy samples."""
    outs = [None] * len(prompts)
    for n in sorted({2, math_samples}):  # one generate call per number of samples
        idx = [k for k, ex in enumerate(prompts) if (math_samples if ex["category"] == "math" else 2) == n]
        texts = lm.generate([lm.chat(prompts[k]["prompt"]) for k in idx], max_new_tokens, temperature=1.0, n=n,
                            desc=f"sampling {n} candidates per prompt")
        for k, t in zip(idx, texts):
            outs[k] = t
    rng = random.Random(f"candidates-{seed}")
    cands = []
    for ex, (s1, s2, *more) in zip(prompts, outs):
        written = good_response(ex, kb, rng) if rng.random() < 0.5 else flawed_response(ex, kb, rng)
        row = []
        for text, src in [(s1, "policy"), (s2, "policy"), (perturb(ex, s1, kb, rng), "perturbed"), (written, "written")
                          ] + [(t, "policy") for t in more]:
            aspects = rate(ex, text, kb)
            row.append(dict(text=text, source=src, aspects=aspects, true=overall(aspects)))
        cands.append(row)
    return cands


def distinct(cands):
    """Indices of the candidates whose text no earlier candidate has: two identical responses with different noisy
    ratings would make a pair that carries no signal (UltraFeedback's four come from four different models)."""
    seen, keep = set(), []
    for i, c in enumerate(cands):
        if c["text"] not in seen:
            seen.add(c["text"])
            keep.append(i)
    return keep


def _binarize(scores, rng, all_pairs=False):
    """UltraFeedback-binarized: chosen = the highest score (ties broken at random), rejected = a random candidate
    with a strictly lower score, or (all_pairs) every one of them; [] when all scores tie. scores: {index: score}."""
    best = max(scores.values())
    chosen = rng.choice([i for i, s in scores.items() if s == best])
    lower = [i for i, s in scores.items() if s < best]
    if not lower:
        return []
    return [(chosen, j) for j in lower] if all_pairs else [(chosen, rng.choice(lower))]


def label(name, ex, cands, rng):
    """-> [(chosen index, rejected index, annotator scores by index, annotator aspects by index or None)], the
    pairs one prompt gives under annotator `name` (one; in the UF datasets, one per worse candidate for the
    categories in ALL_PAIRS)."""
    if name in ("uf_fine", "uf_overall"):
        keep = distinct(cands)
        if name == "uf_fine":
            noisy = {i: {a: min(5, max(1, round(cands[i]["aspects"][a] + rng.gauss(0, 0.5)))) for a in ASPECTS}
                     for i in keep}
            scores = {i: sum(n.values()) / len(ASPECTS) for i, n in noisy.items()}
        else:
            noisy, scores = None, {i: min(10, max(1, round(2 * cands[i]["true"] + rng.gauss(0, 1.5)))) for i in keep}
        return [(i, j, scores, noisy) for i, j in _binarize(scores, rng, all_pairs=ex["category"] in ALL_PAIRS)]
    a, b = 0, 1  # the other annotators compare the two policy samples, as HH, SHP and Arena compare two outputs
    ca, cb = cands[a], cands[b]
    if name == "hh_human":
        better = a if ca["true"] > cb["true"] else b if cb["true"] > ca["true"] else rng.choice([a, b])
        win = better if rng.random() > 0.3 else (b if better == a else a)
    elif name == "web_length":
        longer = a if len(ca["text"]) > len(cb["text"]) else b
        win = longer if rng.random() < 0.9 else (b if longer == a else a)
    elif name == "arena":
        if ex["meta"].get("should_refuse"):  # literal help: the more "helpful" (compliant) answer wins
            key = lambda c: (c["aspects"]["helpfulness"], c["aspects"]["instruction_following"])  # noqa: E731
        else:
            key = lambda c: c["true"]  # noqa: E731
        better = a if key(ca) > key(cb) else b if key(cb) > key(ca) else rng.choice([a, b])
        win = better if rng.random() > 0.2 or ex["meta"].get("should_refuse") else (b if better == a else a)
    else:
        raise ValueError(f"unknown annotator {name!r}; known: {ANNOTATED}")
    if ca["text"] == cb["text"]:
        return []
    lose = b if win == a else a
    return [(win, lose, {win: 1.0, lose: 0.0}, None)]


def _wrong_operand(steps, rng):
    """Copy of `steps` with one operand misread (by 1-2) and the arithmetic then done right, carried to the end:
    the policy's most common mistake ("5 - 3 = 2" for "4 apples, 3 taken")."""
    steps = [list(s) for s in steps]
    i = rng.randrange(len(steps))
    k = 2 if i > 0 else rng.choice([0, 2])  # a later step's first operand is the previous result
    steps[i][k] = max(0, steps[i][k] + rng.choice([-2, -1, 1, 2]))
    for j in range(i, len(steps)):
        if j > i:
            steps[j][0] = steps[j - 1][3]
        a, op, b, _ = steps[j]
        steps[j][3] = a + b if op == "+" else a - b if op == "-" else a * b
    return steps


def math_steps(kb, n, seed, exclude):
    """The math_steps rows for n fresh math prompts (none in `exclude`): a written worked solution against the same
    problem solved with a wrong operand, and against a slipped step; a bare right answer against a bare wrong
    one. Pairs whose two sides the oracle does not rate apart (a mistake that lands on the right answer) are
    dropped."""
    rng = random.Random(f"math-steps-{seed}")
    rows = []
    for ex in make_examples("math", n, rng, kb, exclude=exclude):
        m = ex["meta"]
        good, bare = good_response(ex, kb, rng), flawed_response(ex, kb, rng, "direct")
        for right, wrong in [(good, _math_text(m, rng, _wrong_operand(m["steps"], rng))),
                             (good, flawed_response(ex, kb, rng, "slip")),
                             (bare, flawed_response(ex, kb, rng, "guess"))]:
            cands = [dict(text=t, true=overall(rate(ex, t, kb))) for t in (right, wrong)]
            if cands[0]["true"] > cands[1]["true"]:
                rows.append(_row(ex, cands, 0, 1, [c["true"] for c in cands], None, "math_steps"))
    return rows


def _row(ex, cands, i, j, scores, aspects, source):
    msg = lambda t: [dict(role="user", content=ex["prompt"]), dict(role="assistant", content=t)]  # noqa: E731
    return dict(prompt=ex["prompt"], prompt_id=ex["id"], chosen=msg(cands[i]["text"]), rejected=msg(cands[j]["text"]),
                score_chosen=scores[i], score_rejected=scores[j], category=ex["category"], subtype=ex["subtype"],
                source=source, aspects_chosen=aspects[i] if aspects else None,
                aspects_rejected=aspects[j] if aspects else None,
                true_chosen=cands[i]["true"], true_rejected=cands[j]["true"])


def build_prefs(world_dir, lm, kb, seed=0, test_frac=0.15):
    """Sample candidates for every preference prompt and write prefs/<dataset>.jsonl + prefs/test_gold.jsonl."""
    prompts = read_jsonl(os.path.join(world_dir, "pref_prompts.jsonl"))
    cands = sample_candidates(lm, prompts, kb, seed)
    rng = random.Random(f"prefs-split-{seed}")
    order = list(range(len(prompts)))
    rng.shuffle(order)
    n_test = int(test_frac * len(order))
    test, train = order[:n_test], order[n_test:]
    out = os.path.join(world_dir, "prefs")
    gold = []
    for k in test:  # oracle-labelled pairs: best vs each strictly worse candidate
        c = cands[k]
        best = max(range(4), key=lambda i: c[i]["true"])
        gold += [_row(prompts[k], c, best, j, [x["true"] for x in c], None, "oracle")
                 for j in range(4) if c[j]["true"] < c[best]["true"]]
    write_jsonl(os.path.join(out, "test_gold.jsonl"), gold)
    for name in ANNOTATED:
        drng = random.Random(f"prefs-{name}-{seed}")
        keep = train
        if name == "hh_human":  # HH-RLHF's prompts are dialogue and red-teaming: reweight categories
            keep = [k for k in train if drng.random() < HH_WEIGHTS[prompts[k]["category"]] / 3]
        rows = [_row(prompts[k], cands[k], i, j, scores, aspects, name)
                for k in keep for i, j, scores, aspects in label(name, prompts[k], cands[k], drng)]
        write_jsonl(os.path.join(out, f"{name}.jsonl"), rows)
    seen = {ex["prompt"] for f in os.listdir(world_dir) if f.endswith(".jsonl") and f != "sft.jsonl"
            for ex in read_jsonl(os.path.join(world_dir, f))}  # eval, PPO and preference prompts
    write_jsonl(os.path.join(out, "math_steps.jsonl"), math_steps(kb, MATH_STEPS, seed, seen))
    return out


def agreement(rows):
    """Share of pairs whose chosen response is truly better (oracle overall), and the share of true ties."""
    better = sum(r["true_chosen"] > r["true_rejected"] for r in rows)
    ties = sum(r["true_chosen"] == r["true_rejected"] for r in rows)
    decided = len(rows) - ties
    return dict(n=len(rows), agree=better / max(1, decided), ties=ties / max(1, len(rows)))


def stats(prefs_dir):
    """Agreement of each dataset's labels with the oracle, overall and per category."""
    table = {}
    for name in DATASETS + ("test_gold",):
        rows = read_jsonl(os.path.join(prefs_dir, f"{name}.jsonl"))
        cats = sorted({r["category"] for r in rows})
        table[name] = dict(all=agreement(rows), **{c: agreement([r for r in rows if r["category"] == c]) for c in cats})
    return table


def format_stats(table):
    cats = ["math", "ifeval", "truth", "safety", "chat"]
    lines = [f"{'dataset':11} {'pairs':>6} {'agree':>6} {'ties':>5} | " + " ".join(f"{c:>6}" for c in cats)]
    for name, t in table.items():
        lines.append(f"{name:11} {t['all']['n']:6d} {t['all']['agree']:6.1%} {t['all']['ties']:5.1%} | " +
                     " ".join(f"{t[c]['agree']:6.1%}" if c in t else f"{'-':>6}" for c in cats))
    return "\n".join(lines)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def ensure_prefs(sft, world_seed=0):
    """Build the world's preference datasets from the SFT checkpoint if they are missing; -> prefs directory."""
    import torch
    from nanopref.evals.lm import NanoprefLM
    from nanopref.world.build import build_world, load_world
    from nanopref.cache import fingerprint
    wdir = build_world(world_seed)
    out = os.path.join(wdir, "prefs")
    if not os.path.exists(sft):
        raise SystemExit(f"no SFT checkpoint at {sft}: run `python train_sft.py` first")
    # rebuilt when the SFT model, the world (its prompts, its code) or the code that makes the prefs changes
    key = dict(sft=fingerprint(sft), world=read_json(os.path.join(wdir, "manifest.json"))["spec"],
               code=code_hash())
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest) and read_json(manifest) == key:
        return out
    print(f"building the world's preference datasets from {sft} (cached in {out} until the SFT model changes)")
    torch.manual_seed(world_seed)
    lm = NanoprefLM.load(sft, batch_size=128)
    build_prefs(wdir, lm, load_world(wdir)["kb"], seed=world_seed)
    write_json(manifest, key)
    return out


def code_hash(root=os.path.dirname(os.path.abspath(__file__))):
    """The modules that make the preference data from the samples (this file, and the oracle, scorers and perturber
    it calls; the writers are in the world's own code hash): a change to any of them rebuilds the cached prefs."""
    h = hashlib.sha256()
    for name in ("prefs.py", "oracle.py", "scorers.py", "perturb.py"):
        with open(os.path.join(root, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


@dataclass
class Config:
    sft: str = "out/sft"   # the SFT policy whose samples become the candidates
    world_seed: int = 0


if __name__ == "__main__":
    from nanopref.common import parse_config
    cfg = parse_config(Config)
    print(format_stats(stats(ensure_prefs(cfg.sft, cfg.world_seed))))
