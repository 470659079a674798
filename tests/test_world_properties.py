"""Property tests of the world over many seeded examples: good responses score 1 and get the oracle's top
rating, every flaw and perturbation is rated lower, everything is deterministic and JSON round-trips, the
vocabulary is closed and the texts are short."""
import collections
import json
import random
import re

import pytest

from nanopref import world
from nanopref.world.constraints import END_PHRASES, KEYWORDS
from nanopref.world.kb import OBJECTS, TEMPLATE_WORDS
from nanopref.world.scorers import analyse_content
from nanopref.world.writers import FILLERS

N = 120  # examples per category


@pytest.fixture(scope="module")
def setup():
    rng = random.Random(1234)
    kb = world.make_kb(rng)
    return kb, {c: world.make_examples(c, N, rng, kb) for c in world.CATEGORIES}


def _is_top(ex, ratings):
    """Good responses get 5 on every aspect, except the literal-helpfulness aspects of a refusal."""
    if ex["category"] == "safety" and ex["meta"]["should_refuse"]:
        return ratings["safety"] == ratings["correctness"] == 5
    return set(ratings.values()) == {5}


def test_good_responses_score_one_and_top_rating(setup):
    kb, exs = setup
    rng = random.Random(0)
    for cat, examples in exs.items():
        for ex in examples:
            for _ in range(2):  # two surface forms each
                good = world.good_response(ex, kb, rng)
                assert world.score(ex, good, kb) == 1.0, (ex["prompt"], good, world.analyse(ex, good, kb))
                assert _is_top(ex, world.rate(ex, good, kb)), (ex["prompt"], good, world.rate(ex, good, kb))


def test_oracle_ranks_good_above_every_flaw_and_perturbation(setup):
    kb, exs = setup
    rng = random.Random(0)
    wins, total, bad = collections.Counter(), collections.Counter(), []
    for cat, examples in exs.items():
        for ex in examples:
            good = world.good_response(ex, kb, rng)
            g = world.overall(world.rate(ex, good, kb))
            variants = [(f, world.flawed_response(ex, kb, rng, f)) for f in world.FLAWS[cat][ex["subtype"]]]
            variants.append(("perturb", world.perturb(ex, good, kb, rng)))
            for name, text in variants:
                total[cat, name] += 1
                if world.overall(world.rate(ex, text, kb)) < g:
                    wins[cat, name] += 1
                else:
                    bad.append((cat, name, ex["prompt"], good, text))
    rates = {f"{c}/{n}": round(wins[c, n] / total[c, n], 3) for c, n in sorted(total)}
    print("oracle ordering rate (good > variant):", rates)
    assert not bad, bad[:5]


def test_flaws_score_lower(setup):
    """Flaws that break the category's success criterion score 0 (chat: below 1)."""
    kb, exs = setup
    rng = random.Random(0)
    keeps_score = {("math", "direct")}  # a right answer without steps still counts under GSM8K's metric
    for cat, examples in exs.items():
        for ex in examples:
            for f in world.FLAWS[cat][ex["subtype"]]:
                text = world.flawed_response(ex, kb, rng, f)
                s = world.score(ex, text, kb)
                if (cat, f) in keeps_score:
                    assert s == 1.0
                elif not (cat == "ifeval" and f == "partial"):  # may pass IFEval's loose check
                    assert s < 1.0, (cat, f, ex["prompt"], text)


def test_determinism_and_json_round_trip():
    def build(seed):
        rng = random.Random(seed)
        kb = world.make_kb(rng)
        rows = []
        for cat in world.CATEGORIES:
            for ex in world.make_examples(cat, 15, rng, kb):
                rows.append({**ex, "good": world.good_response(ex, kb, rng), "sft": world.sft_response(ex, kb, rng)})
                rows[-1]["perturbed"] = world.perturb(ex, rows[-1]["good"], kb, rng)
        return kb, rows

    kb, rows = build(7)
    kb2, rows2 = build(7)
    assert json.dumps(kb) == json.dumps(kb2) and json.dumps(rows) == json.dumps(rows2)
    assert json.dumps(build(8)[1]) != json.dumps(rows)
    # scoring from a saved row and kb.json alone gives the same results
    kb3 = json.loads(json.dumps(kb))
    for row in rows:
        saved = json.loads(json.dumps({k: row[k] for k in ("id", "category", "subtype", "prompt", "meta")}))
        for key in ("good", "sft", "perturbed"):
            assert world.score(saved, row[key], kb3) == world.score(row, row[key], kb)
            assert world.rate(saved, row[key], kb3) == world.rate(row, row[key], kb)


def test_kb_names_are_unique_and_not_words():
    kb = world.make_kb(random.Random(3))
    names = [r["name"].lower() for t in ("countries", "people", "creatures") for r in kb[t]]
    names += [c["capital"].lower() for c in kb["countries"]]
    names += [n.lower() for v in kb["unknown"].values() for n in v]
    names += [h["name"] for h in kb["harmful"]] + [i for h in kb["harmful"] for i in h["ingredients"]]
    assert len(names) == len(set(names))
    assert not set(names) & set(TEMPLATE_WORDS)


def test_closed_vocabulary_and_lengths(setup):
    """Every word of every prompt and response is a template word or a KB name; prompts <= 30 words,
    responses <= 45 words (the tiny model's budget)."""
    kb, exs = setup
    rng = random.Random(0)
    names = {r["name"].lower() for t in ("countries", "people", "creatures") for r in kb[t]}
    names |= {c["capital"].lower() for c in kb["countries"]} | {n.lower() for v in kb["unknown"].values() for n in v}
    names |= {h["name"] for h in kb["harmful"]} | {i for h in kb["harmful"] for i in h["ingredients"]}
    vocab = set(TEMPLATE_WORDS) | names
    for cat, examples in exs.items():
        for ex in examples:
            assert len(ex["prompt"].split()) <= 30, ex["prompt"]
            texts = [world.good_response(ex, kb, rng), world.sft_response(ex, kb, rng)]
            texts += [world.flawed_response(ex, kb, rng, f) for f in world.FLAWS[cat][ex["subtype"]]]
            for t in texts:
                assert len(t.split()) <= 45, t
            for t in texts + [ex["prompt"]]:
                assert t.isascii(), t
                unknown = set(re.findall(r"[a-z]+", t.lower())) - vocab
                assert not unknown, (unknown, t)


def test_fact_phrases_are_distinct():
    facts = [f for _, _, _, fs in OBJECTS for f in fs]
    other_text = " ".join(facts + [o[2] for o in OBJECTS] + [o[0] for o in OBJECTS] + END_PHRASES).lower()
    other_text += " many people like to learn about children often read about at school there is a lot more to say"
    assert not [k for k in KEYWORDS if k in other_text]  # IFEval's keyword search has no word boundaries
    assert len(facts) == len(set(facts))
    for f in facts:
        assert not [g for g in facts if g != f and re.search(r"\b" + re.escape(f) + r"\b", g)], f
    kb = world.make_kb(random.Random(0))
    for o in kb["objects"]:  # fillers are filler for every topic, and no fact names its own object
        a = analyse_content(o["name"], " ".join(FILLERS), kb)
        assert a["n_filler"] == len(FILLERS) and a["n_facts"] == a["n_off_topic"] == 0
        assert not any(re.search(r"\b" + o["name"] + r"\b", f) for f in o["facts"])


def test_flaw_table_is_documented():
    from nanopref.world import writers
    assert writers.flaw_table() in writers.__doc__, "update writers.py's docstring table:\n" + writers.flaw_table()


def test_sft_flaw_rates_match_the_table():
    rng = random.Random(5)
    kb = world.make_kb(rng)
    for cat in world.CATEGORIES:
        counts, flawed = collections.Counter(), collections.Counter()
        for ex in world.make_examples(cat, 3000, rng, kb):
            counts[ex["subtype"]] += 1
            flawed[ex["subtype"]] += world.sft_flaw(ex, rng) is not None
        for sub, n in counts.items():
            p = world.SFT_FLAWS[cat, sub][0]
            assert abs(flawed[sub] / n - p) < 5 * (p * (1 - p) / n) ** 0.5 + 0.01, (cat, sub, flawed[sub] / n, p)


def test_make_examples_unique_and_exclude():
    rng = random.Random(0)
    kb = world.make_kb(rng)
    test = world.make_examples("chat", 50, rng, kb, unique=True)
    assert len({e["prompt"] for e in test}) == 50
    train = world.make_examples("chat", 200, rng, kb, exclude={e["prompt"] for e in test})
    assert not {e["prompt"] for e in train} & {e["prompt"] for e in test}
    with pytest.raises(ValueError):
        world.make_examples("chat", 10_000, rng, kb, unique=True)
    assert {e["subtype"] for e in world.make_examples("safety", 200, rng, kb)} == set(world.SUBTYPES["safety"])


@pytest.mark.parametrize("response", ["", "zzz", "The answer is", "the the the the the the the the the the"])
def test_perturb_handles_odd_responses(setup, response):
    kb, exs = setup
    rng = random.Random(0)
    for examples in exs.values():
        for ex in examples[:10]:
            assert isinstance(world.perturb(ex, response, kb, rng), str)
