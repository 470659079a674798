"""The world's validation split: disjoint (prompt text and id) from the test prompts and from every prompt anything
trains on; the test prompts themselves unchanged since before the split existed, so earlier numbers stay comparable."""
import hashlib
import os

import pytest

from nanopref.common import read_jsonl
from nanopref.evals import world as world_eval
from nanopref.world import CATEGORIES
from nanopref.world.build import SIZES, build_world, load_world, subtype_mix

# sha256 of eval_<category>.jsonl for seed 0, as built before the validation split existed (world VERSION 1)
TEST_SHA = {"chat": "454238caa8435750d1d4f7157076149ee1055fdc0fd0dcd576a381dee8454946",
            "ifeval": "d0e816f84d84ca64336d31ef0c6c6f4b1b991fd705fec3284a77d572bc7b8bd2",
            "math": "ac732acd2a855f90f6ca961e38182c231f9b852ee1792d05978d2f5130b80979",
            "safety": "60a643d50cecde32ad33cda9b49337998103b221d30d387a882bc5e4151efb97",
            "truth": "c69e34008379d40a0d11bedfaf3ad2e5639f6fe6f4d2275a056bf8b87995ea48"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_world(0, out=str(tmp_path_factory.mktemp("world")), quiet=True)


def test_the_test_prompts_are_those_of_before(built):
    for c in CATEGORIES:
        with open(os.path.join(built, f"eval_{c}.jsonl"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == TEST_SHA[c], c


def test_validation_is_disjoint_from_test_and_from_all_training_prompts(built):
    w = load_world(built)
    val = [ex for rows in w["val"].values() for ex in rows]
    assert {c: len(rows) for c, rows in w["val"].items()} == SIZES["val"]
    keys = lambda rows: {ex["prompt"] for ex in rows} | {ex["id"] for ex in rows}  # noqa: E731
    val_keys = keys(val)
    assert len(val_keys) == 2 * len(val)  # unique prompts and ids
    assert not val_keys & keys([ex for rows in w["eval"].values() for ex in rows])
    sft = read_jsonl(os.path.join(built, "sft.jsonl"))
    assert not val_keys & ({r["messages"][0]["content"] for r in sft} | {r["id"] for r in sft})
    for f in ("pref_prompts", "ppo_general", "ppo_math"):
        assert not val_keys & keys(read_jsonl(os.path.join(built, f"{f}.jsonl"))), f
    # the same generator as the test prompts: every subtype of the test split is there, in a similar mix
    test_mix, val_mix = subtype_mix([ex for rows in w["eval"].values() for ex in rows]), subtype_mix(val)
    for c in CATEGORIES:
        assert set(val_mix[c]) == set(test_mix[c]), c
        for s, n in test_mix[c].items():
            assert abs(val_mix[c][s] / SIZES["val"][c] - n / SIZES["eval"]) < 0.15, (c, s)


class EchoLM:
    """The duck-typed LM interface of nanopref.evals: answers every prompt with the prompt itself."""
    def chat(self, user):
        return user

    def generate(self, prompts, max_new_tokens, temperature=0.0, desc=None):
        return [[p] for p in prompts]


def test_run_evaluates_the_split_it_is_asked_for(built):
    w = load_world(built)
    for split, key in (("test", "eval"), ("val", "val")):
        metrics, records = world_eval.run(EchoLM(), w, limit=5, split=split)
        assert [r["id"] for r in records] == [ex["id"] for c in CATEGORIES for ex in w[key][c][:5]]
        assert metrics["overall"]["n"] == 25
    with pytest.raises(ValueError, match="unknown split"):
        world_eval.run(EchoLM(), w, split="train")
    rows = [dict(id=ex["id"], output="x") for ex in w["val"]["math"][:3]]
    assert world_eval.score_responses(rows, w, split="val")["math"]["n"] == 3
    with pytest.raises(ValueError, match="is not a world test example"):
        world_eval.score_responses(rows, w)
