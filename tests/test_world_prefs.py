"""The world's preference datasets: labelling rules on hand-made candidates, and the cache key."""
import os
import random
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
    for name in ("prefs.py", "oracle.py", "scorers.py", "perturb.py"):
        shutil.copy(os.path.join(os.path.dirname(prefs.__file__), name), tmp_path / name)
    before = prefs.code_hash(tmp_path)
    assert before == prefs.code_hash()
    with open(tmp_path / "oracle.py", "a") as f:
        f.write("\n# a change to the oracle\n")
    assert prefs.code_hash(tmp_path) != before
