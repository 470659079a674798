"""The world's preference datasets: labelling rules on hand-made candidates, and the cache key."""
import os
import random
import re
import shutil

import pytest

from nanopref.world import prefs
from nanopref.world.oracle import ASPECTS


def cand(text, rating, source="policy"):
    aspects = {a: rating for a in ASPECTS}
    return dict(text=text, source=source, aspects=aspects, true=float(rating))


def example(category):
    return dict(id="x", category=category, subtype="s", prompt="p", meta={})


def test_identical_texts_never_make_a_pair():
    # two identical policy samples (the best), a worse one and another copy of it: no pair may contrast copies
    cands = [cand("same", 5), cand("same", 5), cand("worse", 2), cand("worse", 2)]
    assert prefs.distinct(cands) == [0, 2]
    for seed in range(50):
        for name in ("uf_fine", "uf_overall"):
            for cat in ("chat", "math"):
                for i, j, scores, _ in prefs.label(name, example(cat), cands, random.Random(seed)):
                    assert cands[i]["text"] != cands[j]["text"] and scores[i] > scores[j]
    only_copies = [cand("a", 3), cand("a", 3), cand("a", 3), cand("a", 3)]
    assert prefs.label("uf_fine", example("chat"), only_copies, random.Random(0)) == []
    assert prefs.label("hh_human", example("chat"), only_copies, random.Random(0)) == []


def test_all_pairs_knob_pairs_the_chosen_with_every_worse_candidate(monkeypatch):
    monkeypatch.setattr(prefs, "ALL_PAIRS", ("math",))
    cands = [cand("a", 5), cand("b", 1), cand("c", 1), cand("d", 1), cand("e", 1), cand("f", 1)]
    rng = random.Random(0)
    math = prefs.label("uf_fine", example("math"), cands, rng)  # noise 0.5 cannot close a 4-point gap
    assert sorted((i, j) for i, j, _, _ in math) == [(0, j) for j in range(1, 6)]
    chat = prefs.label("uf_fine", example("chat"), cands, rng)
    assert len(chat) == 1 and chat[0][0] == 0


def test_cache_key_follows_the_code(tmp_path):
    for name in ("prefs.py", "pool.py", "oracle.py", "scorers.py", "perturb.py"):
        shutil.copy(os.path.join(os.path.dirname(prefs.__file__), name), tmp_path / name)
    before = prefs.code_hash(tmp_path)
    assert before == prefs.code_hash()
    with open(tmp_path / "oracle.py", "a") as f:
        f.write("\n# a change to the oracle\n")
    assert prefs.code_hash(tmp_path) != before


def test_math_steps_contrasts_a_right_solution_with_one_mistake():
    """math_steps (PRM800k-like): checked with the world's ground-truth scorer and by re-doing the arithmetic, not
    with the oracle ratings the builder itself used."""
    from nanopref.world import kb as kbmod, make_examples, score
    rng = random.Random(0)
    kb = kbmod.make_kb(rng)
    # the very prompts math_steps would draw first (its rng), so leaving `exclude` out would put them back
    taken = {ex["prompt"] for ex in make_examples("math", 100, random.Random("math-steps-0"), kb)}
    rows = prefs.math_steps(kb, 300, seed=0, exclude=taken)
    assert 750 <= len(rows) <= 900 and not {r["prompt"] for r in rows} & taken
    # the same draw again, for each prompt's true answer (the rows carry only the oracle's ratings)
    exs = {ex["prompt"]: ex for ex in make_examples("math", 300, random.Random("math-steps-0"), kb, exclude=taken)}
    assert {r["prompt"] for r in rows} <= set(exs)
    kinds = {"operand": 0, "result": 0, "bare": 0}
    for r in rows:
        ex = exs[r["prompt"]]
        right, wrong = r["chosen"][-1]["content"], r["rejected"][-1]["content"]
        eqs = lambda t: re.findall(r"(\d+) ([-+x]) (\d+) = (\d+)", t)  # noqa: E731
        for a, op, b, c in eqs(right):  # the chosen solution's arithmetic is right...
            assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
        assert score(ex, right, kb) == 1.0 and score(ex, wrong, kb) == 0.0  # ...and so is its answer; not the other's
        if not eqs(wrong):
            kinds["bare"] += 1
        elif all(int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
                 for a, op, b, c in eqs(wrong)):
            kinds["operand"] += 1  # right arithmetic on a misread operand
        else:
            kinds["result"] += 1   # a slipped result
        assert r["true_chosen"] > r["true_rejected"] and r["source"] == "math_steps"
    assert min(kinds.values()) >= 200, kinds


# -----------------------------------------------------------------------------
# the datasets themselves: off-policy by default, the on-policy construction on request


@pytest.fixture(scope="module")
def built_sets():
    from nanopref.world import CATEGORIES, make_examples, make_kb
    rng = random.Random(11)
    kb = make_kb(rng)
    prompts = [ex for c in CATEGORIES for ex in make_examples(c, 160, rng, kb)]
    return kb, prompts, prefs.make_sets(prompts, kb, seed=0)


def test_off_policy_sets_schema_and_sources(built_sets):
    from nanopref.world.pool import ARENA, POOL
    kb, prompts, sets = built_sets
    assert set(sets) == set(prefs.ANNOTATED) | {"test_gold"}
    writers = {"uf_fine": set(POOL), "uf_overall": set(POOL), "hh_human": {"hh_assistant"}, "web_length": {"web"},
               "arena": set(ARENA), "test_gold": set(POOL)}
    for name, rows in sets.items():
        assert len(rows) > 150, name
        for r in rows:
            c, j = r["chosen"], r["rejected"]
            assert [m["role"] for m in c] == [m["role"] for m in j] == ["user", "assistant"]
            assert c[0]["content"] == j[0]["content"] == r["prompt"] and c[1]["content"] != j[1]["content"]
            assert {r["writer_chosen"], r["writer_rejected"]} <= writers[name], (name, r)
            assert r["source"] == ("oracle" if name == "test_gold" else name)
            assert isinstance(r["true_chosen"], float) and r["category"] in {"math", "ifeval", "truth", "safety", "chat"}
            if name in ("uf_fine", "uf_overall", "arena"):  # four (two) distinct models, never two samples of one
                assert r["writer_chosen"] != r["writer_rejected"]
    # four distinct writers per UF prompt, each of the pool's writers used
    assert len({r["writer_chosen"] for r in sets["uf_fine"]} | {r["writer_rejected"] for r in sets["uf_fine"]}) == len(POOL)
    # test_gold's prompts are held out of every training set
    train = {r["prompt_id"] for n in prefs.ANNOTATED for r in sets[n]}
    assert not train & {r["prompt_id"] for r in sets["test_gold"]}


def test_off_policy_sets_differ_in_quality_like_their_real_counterparts(built_sets):
    """The paper's Table 1 ordering of its sources: UltraFeedback fine-grained > overall > HH-RLHF and SHP, Chatbot
    Arena's labels wrong exactly on harmful requests."""
    _, _, sets = built_sets
    a = {name: prefs.agreement(rows) for name, rows in sets.items()}
    safety = {name: prefs.agreement([r for r in rows if r["category"] == "safety"]) for name, rows in sets.items()}
    assert a["test_gold"]["agree"] == 1.0 and a["uf_fine"]["agree"] > 0.95
    assert a["uf_fine"]["agree"] > a["uf_overall"]["agree"] + 0.04
    assert a["uf_overall"]["agree"] > a["hh_human"]["agree"] + 0.08
    assert a["uf_overall"]["agree"] > a["web_length"]["agree"] + 0.15
    assert a["arena"]["agree"] > a["web_length"]["agree"] + 0.05
    assert safety["arena"]["agree"] < min(0.6, safety["uf_fine"]["agree"] - 0.3)
    assert a["uf_fine"]["gap"] > a["hh_human"]["gap"] + 0.3 and a["uf_fine"]["gap"] > a["web_length"]["gap"] + 0.3


def test_on_policy_sets_label_the_policys_samples(built_sets):
    from nanopref.world.pool import POOL, write
    kb, prompts, _ = built_sets
    rng = random.Random(5)  # stand-in policy samples: the weak writer's
    samples = [[write(POOL["weak"], ex, kb, rng) for _ in range(2)] for ex in prompts[:300]]
    sets = prefs.make_sets(prompts[:300], kb, seed=0, samples=samples)
    assert set(sets) == set(prefs.ONPOLICY) | {"test_gold_onpolicy"}
    for name, rows in sets.items():
        for r in rows:
            assert r["chosen"][1]["content"] != r["rejected"][1]["content"]
            assert {r["writer_chosen"], r["writer_rejected"]} <= {"policy", "perturbed", "written"}
            if name in ("hh_human_onpolicy", "web_length_onpolicy", "arena_onpolicy"):  # the two policy samples
                k = next(i for i, ex in enumerate(prompts) if ex["id"] == r["prompt_id"])
                assert {r["chosen"][1]["content"], r["rejected"][1]["content"]} == set(samples[k])
