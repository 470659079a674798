"""Preference datasets of controlled quality: responses from the world's other writers (off-policy, as the paper's
sources were) or from the SFT policy itself (on-policy, the `_onpolicy` sets), rated by the oracle, then labelled by
simulated annotators that mimic the paper's data sources.

    python -m nanopref.world.prefs --world_seed=0     # build the off-policy sets (no model; ~30 s) and print the
                                                      # agreement table of every set in the directory
    python -m nanopref.sampling --sft=out/sft         # also the on-policy sets, from the SFT policy's samples
(cached in out/world/seed<N>/prefs/, rebuilt whenever the world or the code making the prefs changes; the on-policy
sets also when the SFT checkpoint changes)

Candidates per prompt, by source (pool.py describes the writers):
  UltraFeedback-like (uf_*)  four completions from four distinct writers of the pool drawn per prompt (UltraFeedback
                             drew 4 of its 17 models per prompt)
  HH-like (hh_human)         two samples of HH_ASSISTANT, one helpful assistant of middling quality (HH-RLHF
                             compares two samples of Anthropic's context-distilled 52B model)
  web-like (web_length)      two answers by WEB, people whose answers vary in length and quality (SHP: Reddit)
  arena-like (arena)         two distinct strong-ish chat models of ARENA (Chatbot Arena's pairs)
  on-policy (*_onpolicy)     two samples of the SFT policy at temperature 1, one perturbed (worse) variant of the
                             first, and one written response, good or flawed in equal measure; hh/web/arena-like
                             annotators compare the two policy samples. The construction before the pool existed
                             (study 5 of issue 10 compares the two)
Identical texts are rated once: a pair of copies carries no signal.
Two knobs for reward-model experiments, off by default (dev/LOG.md, issue 4): MATH_SAMPLES > 2 samples more
policy responses for math prompts (on-policy only), and categories in ALL_PAIRS pair the chosen response with
*every* worse candidate in the UF datasets instead of one random one. test_gold keeps the first four candidates.

Datasets, in the schema of UltraFeedback-binarized (prompt, chosen/rejected message lists, score_chosen/rejected)
plus category, the annotator's aspect ratings, the oracle's true scores and the writers of both sides:
  uf_fine     fine-grained synthetic (UltraFeedback "mean of aspects"): a careful rater scores each aspect 1-5 with
              small noise; chosen = highest mean, rejected = a random lower one of the others
  uf_overall  overall-score synthetic (UltraFeedback "overall"): one holistic 1-10 score with more noise
  hh_human    human-like (HH-RLHF): the better of two picked with 30% annotator disagreement; helpful/harmless
              prompts (chat and safety weighted up)
  web_length  web-like (SHP / StackExchange): votes follow a proxy, length: the longer answer wins 90% of the time
  arena       arena-like (Chatbot Arena): users vote for what literally helps them, so on harmful requests the
              compliant answer wins; elsewhere the better one with 20% noise
  test_gold   held-out prompts, the UF candidates labelled by the oracle itself (ties dropped): the RM's test set
              (test_gold_onpolicy: the same from the policy's candidates)
  math_steps  PRM800k-like (Tulu 2.5's preference data has a prm800k_pairs_phase2 split): written solutions to fresh
              math prompts, a correct one against one with a single mistake (an operand copied wrong, a slipped
              result carried to the end, a wrong bare answer), labelled by the oracle. The world RM trains on
              uf_fine + math_steps: uf_fine alone does not teach a 1M-parameter RM arithmetic (dev/LOG.md, issue 4)
"""
import hashlib
import os
import random
from dataclasses import dataclass

from nanopref.common import read_json, read_jsonl, write_json, write_jsonl
from nanopref.world import ASPECTS, CATEGORIES, flawed_response, good_response, overall, perturb, rate
from nanopref.world.build import build_world, load_world
from nanopref.world.pool import ARENA, HH_ASSISTANT, POOL, WEB, math_pairs, write

ANNOTATED = ("uf_fine", "uf_overall", "hh_human", "web_length", "arena")
ONPOLICY = tuple(n + "_onpolicy" for n in ANNOTATED)  # the same annotators on the SFT policy's samples
DATASETS = ANNOTATED + ("math_steps",) + ONPOLICY
MATH_STEPS = 8000  # prompts of math_steps (3 pairs each)
MATH_SAMPLES = 2  # policy samples per math prompt (2 for the other categories): see the docstring
ALL_PAIRS = ()    # categories where the UF datasets pair the chosen response with every worse candidate
HH_WEIGHTS = {"chat": 3, "safety": 3, "truth": 1, "ifeval": 1, "math": 1}  # relative prompt weights for hh_human


def _rated(ex, text, writer, kb):
    aspects = rate(ex, text, kb)
    return dict(text=text, writer=writer, aspects=aspects, true=overall(aspects))


def pool_candidates(source, prompts, kb, seed):
    """Off-policy candidates [[{"text", "writer", "aspects", "true"}]] per prompt from `source`'s writers: "uf" (4
    distinct writers of the pool), "hh" (2 samples of HH_ASSISTANT), "web" (2 of WEB), "arena" (2 of ARENA)."""
    rng = random.Random(f"pool-{source}-{seed}")
    out = []
    for ex in prompts:
        names = rng.sample(sorted(POOL), 4) if source == "uf" else rng.sample(ARENA, 2) if source == "arena" else None
        writers = [POOL[n] for n in names] if names else [{"hh": HH_ASSISTANT, "web": WEB}[source]] * 2
        out.append([_rated(ex, write(w, ex, kb, rng), w.name, kb) for w in writers])
    return out


def policy_candidates(prompts, samples, kb, seed):
    """On-policy candidates per prompt from the policy's samples (samples[k]: 2 texts, or MATH_SAMPLES for math):
    the two samples, the first perturbed, a written response, then any further samples."""
    rng = random.Random(f"candidates-{seed}")
    cands = []
    for ex, (s1, s2, *more) in zip(prompts, samples):
        written = good_response(ex, kb, rng) if rng.random() < 0.5 else flawed_response(ex, kb, rng)
        texts = [(s1, "policy"), (s2, "policy"), (perturb(ex, s1, kb, rng), "perturbed"), (written, "written")]
        cands.append([_rated(ex, t, w, kb) for t, w in texts + [(t, "policy") for t in more]])
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
    categories in ALL_PAIRS). The hh/web/arena annotators compare candidates 0 and 1."""
    name = name.removesuffix("_onpolicy")
    if name in ("uf_fine", "uf_overall"):
        keep = distinct(cands)
        if name == "uf_fine":
            noisy = {i: {a: min(5, max(1, round(cands[i]["aspects"][a] + rng.gauss(0, 0.5)))) for a in ASPECTS}
                     for i in keep}
            scores = {i: sum(n.values()) / len(ASPECTS) for i, n in noisy.items()}
        else:
            noisy, scores = None, {i: min(10, max(1, round(2 * cands[i]["true"] + rng.gauss(0, 1.5)))) for i in keep}
        return [(i, j, scores, noisy) for i, j in _binarize(scores, rng, all_pairs=ex["category"] in ALL_PAIRS)]
    a, b = 0, 1
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


def _row(ex, cands, i, j, scores, aspects, source):
    msg = lambda t: [dict(role="user", content=ex["prompt"]), dict(role="assistant", content=t)]  # noqa: E731
    return dict(prompt=ex["prompt"], prompt_id=ex["id"], chosen=msg(cands[i]["text"]), rejected=msg(cands[j]["text"]),
                score_chosen=scores[i], score_rejected=scores[j], category=ex["category"], subtype=ex["subtype"],
                source=source, aspects_chosen=aspects[i] if aspects else None,
                aspects_rejected=aspects[j] if aspects else None, true_chosen=cands[i]["true"],
                true_rejected=cands[j]["true"], writer_chosen=cands[i].get("writer"),
                writer_rejected=cands[j].get("writer"))


def make_sets(prompts, kb, seed=0, samples=None, test_frac=0.15):
    """{dataset: rows} from the preference prompts: the off-policy sets and test_gold, or, given the policy's
    `samples` per prompt, the on-policy sets and test_gold_onpolicy. Both split the prompts alike."""
    order = list(range(len(prompts)))
    random.Random(f"prefs-split-{seed}").shuffle(order)
    n_test = int(test_frac * len(order))
    test, train = order[:n_test], order[n_test:]
    if samples is not None:
        cands = policy_candidates(prompts, samples, kb, seed)
        sources = {name: lambda keep: cands for name in ANNOTATED}  # noqa: E731
    else:
        uf = pool_candidates("uf", prompts, kb, seed)
        sources = {name: lambda keep, s=s: dict(zip(keep, pool_candidates(s, [prompts[k] for k in keep], kb, seed)))
                   for name, s in [("hh_human", "hh"), ("web_length", "web"), ("arena", "arena")]}
        sources.update(uf_fine=lambda keep: uf, uf_overall=lambda keep: uf)
        cands = uf
    suffix = "" if samples is None else "_onpolicy"
    gold = []
    for k in test:  # oracle-labelled pairs: best vs each strictly worse candidate
        c = cands[k]
        best = max(range(4), key=lambda i: c[i]["true"])
        gold += [_row(prompts[k], c, best, j, [x["true"] for x in c], None, "oracle")
                 for j in range(4) if c[j]["true"] < c[best]["true"]]
    sets = {"test_gold" + suffix: gold}
    for name in ANNOTATED:
        drng = random.Random(f"prefs-{name}-{seed}")
        keep = train
        if name == "hh_human":  # HH-RLHF's prompts are dialogue and red-teaming: reweight categories
            keep = [k for k in train if drng.random() < HH_WEIGHTS[prompts[k]["category"]] / 3]
        c = sources[name](keep)
        sets[name + suffix] = [_row(prompts[k], c[k], i, j, scores, aspects, name + suffix)
                               for k in keep for i, j, scores, aspects in label(name, prompts[k], c[k], drng)]
    return sets


def math_steps(kb, n, seed, exclude):
    """The math_steps rows for n fresh math prompts (none in `exclude`): pool.math_pairs, a right solution against
    one with a single mistake. Pairs whose two sides the oracle does not rate apart (a mistake that lands on the
    right answer) are dropped."""
    rows = []
    for ex, right, wrong in math_pairs(kb, n, seed, exclude):
        cands = [dict(text=t, true=overall(rate(ex, t, kb)), writer="math_steps") for t in (right, wrong)]
        if cands[0]["true"] > cands[1]["true"]:
            rows.append(_row(ex, cands, 0, 1, [c["true"] for c in cands], None, "math_steps"))
    return rows


def agreement(rows):
    """Share of pairs whose chosen response is truly better (oracle overall; true ties left out), the share of true
    ties, the mean true score of the chosen and the rejected responses and of their gap."""
    n = max(1, len(rows))
    better = sum(r["true_chosen"] > r["true_rejected"] for r in rows)
    ties = sum(r["true_chosen"] == r["true_rejected"] for r in rows)
    chosen, rejected = sum(r["true_chosen"] for r in rows) / n, sum(r["true_rejected"] for r in rows) / n
    return dict(n=len(rows), agree=better / max(1, len(rows) - ties), ties=ties / n, chosen=chosen,
                rejected=rejected, gap=chosen - rejected)


def stats(prefs_dir):
    """Agreement of each dataset's labels with the oracle, overall and per category, for the sets that exist."""
    table = {}
    for name in DATASETS + ("test_gold", "test_gold_onpolicy"):
        path = os.path.join(prefs_dir, f"{name}.jsonl")
        if os.path.exists(path):
            rows = read_jsonl(path)
            table[name] = dict(all=agreement(rows), **{c: agreement([r for r in rows if r["category"] == c])
                                                       for c in CATEGORIES if any(r["category"] == c for r in rows)})
    return table


def format_stats(table):
    lines = [f"{'dataset':18} {'pairs':>6} {'agree':>6} {'ties':>5} {'chosen':>6} {'rej.':>5} {'gap':>5} | " +
             " ".join(f"{c:>6}" for c in CATEGORIES)]
    for name, t in table.items():
        a = t["all"]
        lines.append(f"{name:18} {a['n']:6d} {a['agree']:6.1%} {a['ties']:5.1%} {a['chosen']:6.2f} "
                     f"{a['rejected']:5.2f} {a['gap']:5.2f} | " +
                     " ".join(f"{t[c]['agree']:6.1%}" if c in t else f"{'-':>6}" for c in CATEGORIES))
    return "\n".join(lines)


def write_sets(out, sets):
    for name, rows in sets.items():
        write_jsonl(os.path.join(out, f"{name}.jsonl"), rows)


def ensure_prefs(sft=None, world_seed=0):
    """Build the world's off-policy preference datasets (and math_steps) if they are missing or stale; -> the prefs
    directory. No model is needed: `sft` is accepted for callers that pass their SFT checkpoint and is unused (the
    on-policy sets are built by nanopref.onpolicy.ensure_prefs, which needs it)."""
    wdir = build_world(world_seed)
    out = os.path.join(wdir, "prefs")
    key = dict(world=read_json(os.path.join(wdir, "manifest.json"))["spec"], code=code_hash())
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest) and read_json(manifest) == key:
        return out
    print(f"building the world's off-policy preference datasets in {out}")
    kb = load_world(wdir)["kb"]
    write_sets(out, make_sets(read_jsonl(os.path.join(wdir, "pref_prompts.jsonl")), kb, world_seed))
    seen = {ex["prompt"] for f in os.listdir(wdir) if f.endswith(".jsonl") and f != "sft.jsonl"
            for ex in read_jsonl(os.path.join(wdir, f))}  # eval (test and val), PPO and preference prompts
    write_jsonl(os.path.join(out, "math_steps.jsonl"), math_steps(kb, MATH_STEPS, world_seed, seen))
    write_json(manifest, key)
    return out


def code_hash(root=os.path.dirname(os.path.abspath(__file__))):
    """The modules that make the preference data (this file, the pool, and the oracle, scorers and perturber it
    calls; the writers are in the world's own code hash): a change to any of them rebuilds the cached prefs."""
    h = hashlib.sha256()
    for name in ("prefs.py", "pool.py", "oracle.py", "scorers.py", "perturb.py"):
        with open(os.path.join(root, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


@dataclass
class Config:
    world_seed: int = 0


if __name__ == "__main__":
    from nanopref.config import parse_config
    print(format_stats(stats(ensure_prefs(world_seed=parse_config(Config).world_seed))))
