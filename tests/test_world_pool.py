"""The pool of other writers: each writer's habits show in the world's own scorers and oracle, measured over many
seeded prompts; the texts stay in the world's closed vocabulary."""
import random
import re

import pytest

from nanopref import world
from nanopref.world.kb import TEMPLATE_WORDS
from nanopref.world.pool import ARENA, HH_ASSISTANT, POOL, WEB, write
from nanopref.world.scorers import analyse
from nanopref.world.text import declines

N = 80  # prompts per category


@pytest.fixture(scope="module")
def outputs():
    """kb, {writer: {category: [(example, response)]}} for every writer on the same prompts, and each response's
    analysis (with the ground-truth "score") and oracle rating, keyed by (writer, category, index)."""
    rng = random.Random(7)
    kb = world.make_kb(rng)
    exs = {c: world.make_examples(c, N, rng, kb) for c in world.CATEGORIES}
    out, seen = {}, {}
    for w in list(POOL.values()) + [HH_ASSISTANT, WEB]:
        wrng = random.Random(w.name)
        out[w.name] = {c: [(ex, write(w, ex, kb, wrng)) for ex in exs[c]] for c in world.CATEGORIES}
        for c, rows in out[w.name].items():
            for i, (ex, t) in enumerate(rows):
                a = analyse(ex, t, kb)
                seen[w.name, c, i] = a, world.overall(world.rate(ex, t, kb, a))
    ANALYSED.update(seen)
    return kb, out


ANALYSED = {}


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def score(out, name, cat, keep=lambda ex: True):
    return mean(ANALYSED[name, cat, i][0]["score"] for i, (ex, _) in enumerate(out[name][cat]) if keep(ex))


def words(out, name):
    return mean(len(t.split()) for rows in out[name].values() for _, t in rows)


def test_pool_is_six_or_more_distinct_writers_and_the_sources_draw_from_it():
    assert len(POOL) >= 6 and len({(tuple(w.skill.items()), repr(w.flaws), repr(w.habits)) for w in POOL.values()}) \
        == len(POOL)
    assert set(ARENA) <= set(POOL) and HH_ASSISTANT.name not in POOL and WEB.name not in POOL
    for w in list(POOL.values()) + [HH_ASSISTANT, WEB]:
        assert set(w.skill) == set(world.CATEGORIES) and all(0 <= p <= 1 for p in w.skill.values())


def test_careless_arithmetic_and_careless_format_score_lower(outputs):
    _, out = outputs
    assert score(out, "sloppy_math", "math") < score(out, "careful", "math") - 0.4
    assert score(out, "sloppy_format", "ifeval") < score(out, "careful", "ifeval") - 0.4
    # ...and only there: elsewhere they are ordinary writers
    assert score(out, "sloppy_math", "ifeval") > score(out, "sloppy_format", "ifeval") + 0.3


def test_verbose_is_longer_and_terse_shorter(outputs):
    _, out = outputs
    assert words(out, "verbose") > words(out, "careful") + 5 > words(out, "terse") + 8
    # terse math answers show no steps: right or wrong, never worked
    assert all(ANALYSED["terse", "math", i][0]["n_steps"] == 0 for i in range(N))
    assert mean(ANALYSED["careful", "math", i][0]["n_steps"] > 0 for i in range(N)) > 0.8
    # the oracle's chat helpfulness counts the verbose writer's filler against it
    assert score(out, "verbose", "chat") < score(out, "careful", "chat") - 0.2


def test_hedger_hedges_refuser_over_refuses_eager_complies(outputs):
    _, out = outputs
    hedges = {n: mean(declines(t) for rows in out[n].values() for _, t in rows) for n in ("hedger", "careful")}
    assert hedges["hedger"] > 0.3 > hedges["careful"] + 0.2
    benign, harmful = (lambda ex: not ex["meta"]["should_refuse"]), (lambda ex: ex["meta"]["should_refuse"])
    assert score(out, "refuser", "safety", benign) < score(out, "careful", "safety", benign) - 0.3
    assert score(out, "refuser", "safety", harmful) >= score(out, "careful", "safety", harmful) - 0.05
    assert score(out, "eager", "safety", harmful) < score(out, "careful", "safety", harmful) - 0.3
    assert score(out, "eager", "truth") < score(out, "careful", "truth") - 0.3


def test_the_weak_writer_is_the_worst_and_the_careful_one_the_best(outputs):
    _, out = outputs
    quality = {n: mean(v[1] for k, v in ANALYSED.items() if k[0] == n) for n in POOL}
    assert min(quality, key=quality.get) == "weak" and max(quality, key=quality.get) == "careful", quality


def test_writers_are_deterministic_and_stay_in_the_closed_vocabulary(outputs):
    kb, out = outputs
    names = {r["name"].lower() for t in ("countries", "people", "creatures") for r in kb[t]}
    names |= {c["capital"].lower() for c in kb["countries"]} | {n.lower() for v in kb["unknown"].values() for n in v}
    names |= {h["name"] for h in kb["harmful"]} | {i for h in kb["harmful"] for i in h["ingredients"]}
    vocab = set(TEMPLATE_WORDS) | names
    for name, cats in out.items():
        for rows in cats.values():
            for ex, t in rows:
                assert t.isascii() and len(t.split()) <= 60, t
                assert not set(re.findall(r"[a-z]+", t.lower())) - vocab, (name, t)
    ex = out["careful"]["math"][0][0]
    assert write(POOL["weak"], ex, kb, random.Random(3)) == write(POOL["weak"], ex, kb, random.Random(3))
