"""The world's preference datasets: labelling rules on hand-made candidates, and the cache key."""
import os
import random
import re
import shutil

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
