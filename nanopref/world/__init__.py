"""The embedded task world: task families with ground-truth scorers, an oracle judge and response writers.
Pure Python (no torch), deterministic given a random.Random.

    import random
    from nanopref import world
    rng = random.Random(0)
    kb = world.make_kb(rng)                                     # JSON-serialisable, saved as kb.json
    exs = world.make_examples("math", 100, rng, kb)             # [{"id", "category", "subtype", "prompt", "meta"}]
    good = world.good_response(exs[0], kb, rng)                 # score 1, top oracle ratings
    demo = world.sft_response(exs[0], kb, rng)                  # mixed-quality SFT demonstration
    worse = world.perturb(exs[0], good, kb, rng)                # rated lower by the oracle
    world.score(exs[0], good, kb)                               # 1.0: the headline ground-truth metric
    world.rate(exs[0], good, kb)                                # {"correctness": 5, ...}; world.overall(...) = mean

Files: kb.py (knowledge base, word lists), tasks.py (prompts), constraints.py (IFEval-style constraints),
writers.py (good, flawed and SFT responses; the SFT flaw table), pool.py (the other models and people whose
responses make the off-policy preference data), perturb.py, scorers.py, oracle.py, text.py; build.py (the world on
disk: test and validation prompts, SFT demos, preference and PPO prompts), prefs.py (preference datasets).
Nothing here imports torch or the model, sampler and evaluators above it (tests/test_world_rooms.py).
"""
from .kb import make_kb
from .oracle import ASPECTS, overall, rate
from .perturb import perturb
from .scorers import analyse, score
from .tasks import CATEGORIES, SUBTYPES, make_example, make_examples
from .writers import FLAWS, SFT_FLAWS, flawed_response, good_response, sft_flaw, sft_response

__all__ = ["make_kb", "make_example", "make_examples", "CATEGORIES", "SUBTYPES", "good_response",
           "flawed_response", "sft_response", "sft_flaw", "perturb", "FLAWS", "SFT_FLAWS", "score", "analyse",
           "rate", "overall", "ASPECTS"]
