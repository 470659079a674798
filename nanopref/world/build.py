"""Build and cache the embedded world on disk, in the schemas real data uses:

    out/world/seed0/
      kb.json                 the invented knowledge base (the scorers read it)
      sft.jsonl               {"messages": [user, assistant], "id", "category", "subtype"}   mixed-quality demos,
                              plus short always-correct drills (category "drill": arithmetic facts and the
                              knowledge base's facts), the world's stand-in for what pretraining would know
      eval_<category>.jsonl   {"id", "category", "subtype", "prompt", "meta"}    the test prompts every table reports
      eval_val.jsonl          the same schema, all categories: validation prompts, to choose hyperparameters and
                              stopping points on, never to report
      pref_prompts.jsonl      prompts from which preference pairs are built after SFT (prefs.py)
      ppo_general.jsonl       PPO prompts: the category mixture;  ppo_math.jsonl: math-targeted
      tokenizer.model         SentencePiece BPE trained on the world's text
      manifest.json           seed, sizes, version and a sha256 per file

    python -m nanopref.world.build --seed=0      (train_sft.py calls build_world itself)

Every purpose draws from its own random stream seeded by (seed, purpose), so the same seed gives byte-identical
files. The test prompts are drawn first (they are those of every earlier version of the world), the validation
prompts next, from the same generator (so their mix of subtypes is the test's), and no prompt or id of either
appears in the SFT, preference or PPO prompts. Chat and safety have 100 validation prompts, not 200: their prompt
spaces are small (600 chat prompts; 48 safety homonyms), and each one validation takes is one training never sees.
`python -m nanopref.world.build` prints the subtype mix of both splits.

The SFT demonstrations come from their own writer, writers.sft_response (mixed quality, SFT_FLAWS), not from the
pool of other models that writes the off-policy preference data (pool.py): as Tulu 2's SFT mix and UltraFeedback's
completions came from different sources, so that preference data is off-policy for the SFT policy.
"""
import hashlib
import json
import os
import random
import sys
import time

from nanopref.common import OUT_DIR, read_jsonl, write_json, write_jsonl
from nanopref.tokenizer import render_chat, train_tokenizer
from nanopref.world import CATEGORIES, make_examples, make_kb, sft_response
from nanopref.world.writers import flawed_response, good_response

VERSION = 2  # 2: validation prompts; SFT, preference and PPO prompts exclude them
SIZES = dict(
    sft={"math": 2600, "ifeval": 1600, "truth": 1600, "safety": 1100, "chat": 1100},
    eval=200,                                                   # test prompts per category
    val={"math": 200, "ifeval": 200, "truth": 200, "safety": 100, "chat": 100},  # validation prompts
    pref={"math": 800, "ifeval": 700, "truth": 700, "safety": 600, "chat": 600},
    ppo_general={"math": 300, "ifeval": 250, "truth": 250, "safety": 200, "chat": 200},
    ppo_math={"math": 1200},
    drills=dict(arith=1500, facts=1000),
    vocab=1024,
)


def world_dir(seed=0):
    return os.path.join(OUT_DIR, "world", f"seed{seed}")


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _code_hash():
    """The modules that generate the world's text: a change to any of them rebuilds the cached world."""
    here = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for name in ("kb.py", "tasks.py", "constraints.py", "writers.py", "text.py", "build.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def _rng(seed, purpose):
    return random.Random(f"nanopref-world-{seed}-{purpose}")


def drills(kb, n_arith, n_facts, rng):
    """Always-correct short exchanges that teach what a pretrained model would already know: one-step arithmetic
    over the math tasks' operand ranges, and every fact of the knowledge base. Never evaluated directly."""
    from nanopref.world.writers import _SAY, with_article
    out = []
    for i in range(n_arith):
        op = rng.choice("+-x")
        a, b = (rng.randint(1, 9), rng.randint(1, 9)) if op != "x" else (rng.randint(2, 5), rng.randint(2, 5))
        if op == "-":
            a = a + b  # results stay non-negative
        c = a + b if op == "+" else a - b if op == "-" else a * b
        q = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {op} {b}.", f"How much is {a} {op} {b}?"])
        out.append((f"drill-arith-{i}", q, f"{a} {op} {b} = {c}."))
    facts = [(c["name"], "capital", c["capital"]) for c in kb["countries"]]
    facts += [(p["name"], rel, p[rel]) for p in kb["people"] for rel in ("job", "home")]
    facts += [(c["name"], rel, c[rel]) for c in kb["creatures"] for rel in ("colour", "food")]
    for i in range(n_facts):
        e, rel, v = facts[i % len(facts)]
        subject = e if rel in ("capital", "job", "home") else f"the {e}"
        q = rng.choice([f"Tell me a fact about {subject}.", f"Say something true about {subject}.",
                        f"What do you know about {subject}?"])
        out.append((f"drill-fact-{i}", q, rng.choice(_SAY[rel]).format(e=e, v=v, av=with_article(v))))
    return [dict(id=i, category="drill", subtype=i.split("-")[1], messages=[dict(role="user", content=q),
                 dict(role="assistant", content=a[0].upper() + a[1:])]) for i, q, a in out]


def _prompts(counts, seed, purpose, kb, exclude):
    rows = []
    for cat, n in counts.items():
        rows += make_examples(cat, n, _rng(seed, f"{purpose}-{cat}"), kb, exclude=exclude)
    return rows


def build_world(seed=0, out=None, sizes=SIZES, quiet=False):
    """Build the world for `seed` under `out` (default out/world/seed<seed>) unless an identical build is there.
    -> the directory."""
    out = out or world_dir(seed)
    spec = dict(version=VERSION, seed=seed, sizes=sizes, code=_code_hash())
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            if json.load(f)["spec"] == spec:
                return out
    t0 = time.time()
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    log(f"building the world (seed {seed}) in {out}")
    kb = make_kb(_rng(seed, "kb"))
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "kb.json"), kb)

    evals = {c: make_examples(c, sizes["eval"], _rng(seed, f"eval-{c}"), kb, unique=True) for c in CATEGORIES}
    test = {x for rows in evals.values() for ex in rows for x in (ex["prompt"], ex["id"])}
    val = [ex for c in CATEGORIES for ex in make_examples(c, sizes["val"][c], _rng(seed, f"val-{c}"), kb, unique=True,
                                                           exclude=test)]
    held_out = test | {x for ex in val for x in (ex["prompt"], ex["id"])}  # never trained on: prompts and ids
    for c, rows in evals.items():
        write_jsonl(os.path.join(out, f"eval_{c}.jsonl"), rows)
    write_jsonl(os.path.join(out, "eval_val.jsonl"), val)

    demos = _prompts(sizes["sft"], seed, "sft", kb, held_out)
    rng = _rng(seed, "sft-responses")
    sft = [dict(id=ex["id"], category=ex["category"], subtype=ex["subtype"],
                messages=[dict(role="user", content=ex["prompt"]),
                          dict(role="assistant", content=sft_response(ex, kb, rng))]) for ex in demos]
    sft += drills(kb, sizes["drills"]["arith"], sizes["drills"]["facts"], _rng(seed, "drills"))
    _rng(seed, "sft-order").shuffle(sft)
    write_jsonl(os.path.join(out, "sft.jsonl"), sft)

    pref = _prompts(sizes["pref"], seed, "pref", kb, held_out)
    write_jsonl(os.path.join(out, "pref_prompts.jsonl"), pref)
    for name in ("ppo_general", "ppo_math"):
        rows = _prompts(sizes[name], seed, name, kb, held_out)
        _rng(seed, name + "-order").shuffle(rows)
        write_jsonl(os.path.join(out, f"{name}.jsonl"), rows)

    # tokenizer: trained on everything the world can say, so the model never needs byte fallback for it
    rng = _rng(seed, "tokenizer-corpus")
    corpus = [render_chat(row["messages"]) for row in sft]
    for ex in pref + [e for rows in evals.values() for e in rows] + val:
        corpus += [ex["prompt"], good_response(ex, kb, rng), flawed_response(ex, kb, rng)]
    train_tokenizer(corpus, os.path.join(out, "tokenizer.model"), vocab_size=sizes["vocab"])

    files = sorted(f for f in os.listdir(out) if f != "manifest.json" and not f.startswith(".")
                   and os.path.isfile(os.path.join(out, f)))
    write_json(manifest, dict(spec=spec, files={f: _sha(os.path.join(out, f)) for f in files}))
    log(f"built the world in {time.time() - t0:.1f}s: {len(sft)} SFT demos, {len(pref)} preference prompts, "
        f"{sizes['eval']} test prompts per category, {len(val)} validation prompts")
    return out


def load_world(path):
    """-> dict(kb, eval={category: test rows}, val={category: validation rows}, dir): what scoring and evaluation
    need."""
    with open(os.path.join(path, "kb.json")) as f:
        kb = json.load(f)
    evals = {c: read_jsonl(os.path.join(path, f"eval_{c}.jsonl")) for c in CATEGORIES}
    val_path = os.path.join(path, "eval_val.jsonl")  # absent from a frozen world of before VERSION 2
    val = read_jsonl(val_path) if os.path.exists(val_path) else None
    val = val and {c: [ex for ex in val if ex["category"] == c] for c in CATEGORIES}
    return dict(kb=kb, eval=evals, val=val, dir=path)


def subtype_mix(rows):
    """{category: {subtype: count}} of example rows."""
    mix = {}
    for ex in rows:
        mix.setdefault(ex["category"], {}).setdefault(ex["subtype"], 0)
        mix[ex["category"]][ex["subtype"]] += 1
    return mix


if __name__ == "__main__":
    from nanopref.config import parse_config
    from dataclasses import dataclass

    @dataclass
    class Config:
        seed: int = 0  # world seed
    w = load_world(build_world(parse_config(Config, sys.argv[1:]).seed))
    for split in ("eval", "val"):
        print(f"{split:4}", {c: dict(sorted(m.items())) for c, m in subtype_mix(
            [ex for rows in w[split].values() for ex in rows]).items()})
    print(w["dir"])
