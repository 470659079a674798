"""Reward models: the score is read at the last real token under any padding and does not depend on the batch;
the BT loss by hand; accumulation = one big batch (through train_rm.py itself); the evaluation helpers by hand;
smoke runs of train_rm.py (BT and regression) on a tiny fixture."""
import contextlib
import io
import json
import math
import os
import random
import runpy
import sys

import pytest
import torch

from nanopref.checkpoint import load_model
from nanopref.data import pair_batch
from nanopref.evals import reward as rm_eval
from nanopref.losses import bradley_terry_loss, regression_loss
from nanopref.model import Transformer, last_real_index, model_args, score_last
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, train_tokenizer
from nanopref.world import make_examples, make_kb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rm():
    torch.manual_seed(0)
    m = Transformer(model_args("test", head="scalar", vocab_size=64, max_seq_len=128)).eval()
    m.init_weights(std=0.2)
    return m


def test_reward_at_last_real_token_left_and_right_padding(rm):
    """Rows of different lengths ending in EOS (2), padded with 3 (pad != eos) on either side: every reading equals
    the row scored alone at its last position, including the training path (no mask, right padding, gather)."""
    g = torch.Generator().manual_seed(1)
    rows = [torch.cat([torch.randint(4, 64, (n,), generator=g), torch.tensor([2])]) for n in (3, 9, 6)]
    alone = torch.stack([rm(r[None])[0, -1] for r in rows])
    T = 12
    for side in ("left", "right"):
        tokens = torch.full((3, T), 3)
        mask = torch.zeros(3, T, dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(T - len(r), T) if side == "left" else slice(0, len(r))
            tokens[i, sl], mask[i, sl] = r, 1
        with torch.no_grad():
            assert torch.allclose(score_last(rm, tokens, mask), alone, atol=1e-5), side
            assert (tokens.gather(1, last_real_index(mask)[:, None]) == 2).all()  # the EOS is what gets scored
            if side == "right":  # train_rm.py's path: causal forward without a mask, read at the last real token
                r = rm(tokens).gather(1, last_real_index(mask)[:, None]).squeeze(1)
                assert torch.allclose(r, alone, atol=1e-5)


def test_same_pair_same_score_whatever_the_batch(rm):
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(4, 64, (n,), generator=g).tolist() + [2] for n in (5, 30, 2, 17, 8, 60, 11)]
    alone = [rm_eval.score_sequences(rm, [s], pad_id=3)[0] for s in seqs]
    for bs in (1, 2, 3, 7):
        together = rm_eval.score_sequences(rm, seqs, pad_id=3, batch_size=bs)
        assert max(abs(a - b) for a, b in zip(alone, together)) < 1e-5, bs
    # the same pair in two batches with different partners (pair_batch pads to the batch's longest sequence)
    p = dict(prompt=[1, 5, 6], chosen=[7, 8, 2], rejected=[9, 2])
    others = [dict(prompt=[1] + list(range(4, 40)), chosen=[10, 2], rejected=[11, 12, 13, 2])]
    with torch.no_grad():
        ref = [rm(torch.tensor([p["prompt"] + p[s]]))[0, -1].item() for s in ("chosen", "rejected")]
    for batch in ([p], [p] + others, others + [p]):
        tokens, _, attn = pair_batch(batch, 3)
        with torch.no_grad():
            r = score_last(rm, tokens, attn)
        i = batch.index(p)
        assert abs(r[i].item() - ref[0]) < 1e-5 and abs(r[len(batch) + i].item() - ref[1]) < 1e-5


def test_bradley_terry_and_regression_by_hand():
    rc, rr = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    want = [math.log1p(math.exp(-(c - r))) for c, r in zip(rc.tolist(), rr.tolist())]
    assert torch.allclose(bradley_terry_loss(rc, rr), torch.tensor(want))
    assert abs(bradley_terry_loss(rc, rr)[2].item() - math.log(2)) < 1e-7  # equal rewards: ln 2
    m = torch.tensor([1.0, 0.0, -0.5])
    assert torch.allclose(bradley_terry_loss(rc, rr, m), torch.tensor(
        [math.log1p(math.exp(-(c - r - mm))) for c, r, mm in zip(rc.tolist(), rr.tolist(), m.tolist())]))
    assert torch.allclose(regression_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 5.0])), torch.tensor([1.0, 4.0]))


def test_accumulated_micro_batches_equal_one_batch(rm):
    """train_rm.py's reduction, sum of per-pair losses / batch_size per micro-batch, gives the one-batch gradient,
    also with uneven micro-batches padded to different lengths."""
    g = torch.Generator().manual_seed(3)
    rnd = lambda n: torch.randint(4, 64, (n,), generator=g).tolist()  # noqa: E731
    pairs = [dict(prompt=[1] + rnd(2 + 3 * i % 11), chosen=rnd(1 + i % 4) + [2], rejected=rnd(1 + i % 6) + [2])
             for i in range(8)]

    def grads(micro):
        rm.zero_grad()
        for s in range(0, len(pairs), micro):
            mb = pairs[s:s + micro]
            tokens, _, attn = pair_batch(mb, 3)
            r = rm(tokens).gather(1, last_real_index(attn)[:, None]).squeeze(1)
            (bradley_terry_loss(r[:len(mb)], r[len(mb):]).sum() / len(pairs)).backward()
        return torch.cat([p.grad.flatten() for p in rm.parameters()])

    one = grads(8)
    for micro in (1, 3):
        assert torch.allclose(grads(micro), one, atol=1e-6, rtol=1e-4), micro


# -----------------------------------------------------------------------------
# evaluation helpers


class FakeScorer:
    """A reward model that likes responses containing 'good', breaking ties by length."""

    def score(self, pairs):
        return [("good" in r) + len(r) / 1000 for _, r in pairs]


def test_best_of_n_by_hand():
    records = [
        dict(category="math", prompt="p1", greedy_score=0.0, samples=["bad", "good", "bad!"], scores=[0.0, 1.0, 0.0],
             oracle=[1.0, 5.0, 1.0], eos=[True] * 3),
        dict(category="math", prompt="p2", greedy_score=1.0, samples=["bad", "good", "x"], scores=[1.0, 0.0, 0.0],
             oracle=[3.0, 3.0, 1.0], eos=[True] * 3),
        dict(category="chat", prompt="p3", greedy_score=0.5, samples=["good", "ok", "x"], scores=[0.25, 0.75, 0.0],
             oracle=[2.0, 4.0, 1.0], eos=[True] * 3),
    ]
    m, rows = rm_eval.best_of_n(records, FakeScorer())
    assert [r["pick"] for r in rows] == [1, 1, 0]
    assert m["math"]["rm"]["score"] == 0.5 and m["math"]["greedy"]["score"] == 0.5
    assert m["math"]["random"]["score"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["math"]["oracle"]["score"] == pytest.approx((1.0 + 0.5) / 2)  # p2: oracle tie, expected 0.5
    assert m["math"]["best"]["score"] == 1.0
    assert m["math"]["rm-greedy"]["score"] == 0.0 and m["math"]["rm-greedy"]["stderr"] == pytest.approx(1.0)
    assert m["chat"]["rm"]["score"] == 0.25 and m["overall"]["rm"]["score"] == pytest.approx((0.5 + 0.25) / 2)
    m2, _ = rm_eval.best_of_n(records, FakeScorer(), n=1)  # only the first sample: rm = random = best
    assert m2["math"]["rm"]["score"] == m2["math"]["random"]["score"] == m2["math"]["best"]["score"] == 0.5


def test_best_of_n_scores_a_cut_sample_as_ppo_does():
    """A sample that never reached EOS gets PPO's missing-EOS score (-10), not the reward model's reading of the cut
    text: p1's "good" (reward 1.004, ground truth 1) was cut, so the RM's pick is "bad!" (0.004 > -10)."""
    rec = dict(category="math", prompt="p1", greedy_score=0.0, samples=["bad", "good", "bad!"],
               scores=[0.0, 1.0, 0.5], oracle=[1.0, 5.0, 1.0], eos=[True, False, True])
    m, rows = rm_eval.best_of_n([rec], FakeScorer())
    assert rows[0]["pick"] == 2 and rows[0]["cut"] == 1 and m["math"]["rm"]["score"] == 0.5
    assert m["math"]["oracle"]["score"] == 1.0 and m["math"]["best"]["score"] == 1.0  # ground truth untouched
    _, rows = rm_eval.best_of_n([rec], FakeScorer(), missing_eos_score=5.0)
    assert rows[0]["pick"] == 1
    # every sample cut: all tied at -10, so the expected ground truth of a random pick
    m, _ = rm_eval.best_of_n([dict(rec, eos=[False] * 3)], FakeScorer())
    assert m["math"]["rm"]["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="record 0 .* eos"):
        rm_eval.best_of_n([{k: v for k, v in rec.items() if k != "eos"}], FakeScorer())


def test_sample_candidates_scores_with_ground_truth():
    rng = random.Random(0)
    kb = make_kb(rng)
    world = dict(kb=kb, eval=dict(math=make_examples("math", 3, rng, kb)))

    class FakeLM:
        def chat(self, user):
            return user

        def generate(self, prompts, max_new_tokens, temperature=0.0, n=1, desc=None):
            ans = {ex["prompt"]: ex["meta"]["answer"] for ex in world["eval"]["math"]}
            self.eos = [[j != 3 for j in range(n)] for _ in prompts]  # the last sample of each prompt was cut
            return [[f"The answer is {ans[p] + (j if temperature else 0)}." for j in range(n)] for p in prompts]

    recs = rm_eval.sample_candidates(FakeLM(), world, n=4, categories=["math"])
    assert len(recs) == 3 and all(r["greedy_score"] == 1.0 and r["scores"] == [1.0, 0, 0, 0] for r in recs)
    assert all(r["oracle"][0] > r["oracle"][1] for r in recs)
    assert all(r["eos"] == [True, True, True, False] for r in recs)


def test_candidates_cache_keyed_on_world_and_scorer_code(tmp_path, monkeypatch):
    """The Best-of-N cache is reused for the same policy, world, code and settings, and never when the world's
    data or any scoring/sampling source file changed (a changed scorer must not reuse stale scores)."""
    import nanopref.evals.lm as lm_mod
    rng = random.Random(0)
    kb = make_kb(rng)
    world = dict(kb=kb, eval={c: make_examples(c, 2, rng, kb) for c in rm_eval.CATEGORIES})
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    (policy / "model.safetensors").write_bytes(b"weights")
    scorer = tmp_path / "scorers.py"
    scorer.write_text("# v1")
    monkeypatch.setattr(rm_eval, "CODE_FILES", rm_eval.CODE_FILES + [str(scorer)])
    loads = []

    class FakeLM:
        def chat(self, user):
            return user

        def generate(self, prompts, max_new_tokens, temperature=0.0, n=1, desc=None):
            self.eos = [[True] * n for _ in prompts]
            return [[f"answer {len(loads)}"] * n for _ in prompts]

    monkeypatch.setattr(lm_mod.NanoprefLM, "load", classmethod(lambda cls, *a, **k: loads.append(1) or FakeLM()))
    get = lambda w: rm_eval.cached_candidates(str(policy), w, n=2, limit=1, cache_dir=str(tmp_path / "c"))  # noqa
    first = get(world)
    assert len(loads) == 1 and get(world) == first and len(loads) == 1  # reused
    scorer.write_text("# v2: a changed scorer")
    assert get(world)[0]["greedy"] == "answer 2" and len(loads) == 2  # resampled and rescored
    changed = dict(world, kb=dict(world["kb"], extra=1))
    get(changed)
    assert len(loads) == 3
    (policy / "model.safetensors").write_bytes(b"other weights")
    get(world)
    assert len(loads) == 4
    names = {os.path.relpath(p, REPO) for p in rm_eval.CODE_FILES}
    assert {"nanopref/world/scorers.py", "nanopref/world/oracle.py", "nanopref/ifeval_checks.py"} <= names


def test_clustered_standard_error():
    # independent clusters of one value each: the ordinary standard error of a mean (with the g/(g-1) factor)
    vals = [1.0, 0.0, 1.0, 1.0]
    m, se = rm_eval.clustered_mean_se(vals, list(range(4)))
    assert m == 0.75 and se == pytest.approx(math.sqrt(sum((v - m) ** 2 for v in vals) / 3 / 4))
    # perfectly correlated pairs: as uncertain as two values, not four
    m2, se2 = rm_eval.clustered_mean_se([1.0, 1.0, 0.0, 0.0], [0, 0, 1, 1])
    assert m2 == 0.5 and se2 == pytest.approx(0.5)


def test_rewardbench_rows_and_sections(tmp_path):
    path = tmp_path / "rb.jsonl"
    rows = [dict(prompt="hi", chosen="a", rejected="b", subset="llmbar-natural", id=1),
            dict(prompt="yo", chosen="c", rejected="d", subset="xstest-should-refuse", id=2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ex, skipped = rm_eval.load_pairs(str(path))
    assert skipped == 0 and ex[0]["prompt"] == [dict(role="user", content="hi")] and ex[0]["chosen"] == "a"
    assert [rm_eval.section_of(e) for e in ex] == ["Chat Hard", "Safety"]
    assert rm_eval.section_of(dict(category="math")) == "math" and rm_eval.section_of({}) == "all"


# -----------------------------------------------------------------------------
# smoke runs of train_rm.py on a tiny fixture: an SFT checkpoint and UltraFeedback-style pairs


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("rm")
    corpus = [f"<|user|>\nWhat is {a} + {b}?\n<|assistant|>\nThe answer is {a + b}."
              for a in range(20) for b in range(20)]
    tok = Tokenizer(train_tokenizer(corpus, str(d / "tok.model"), vocab_size=300))
    torch.manual_seed(0)
    sft = Transformer(model_args("test", vocab_size=tok.vocab_size, max_seq_len=128))
    sft.init_weights()
    save_model(sft, str(d / "sft" / "model"), tokenizer=tok)
    rng = random.Random(0)
    rows = []
    for i in range(40):
        a, b = rng.randrange(20), rng.randrange(20)
        msg = lambda t: [dict(role="user", content=f"What is {a} + {b}?"), dict(role="assistant", content=t)]  # noqa
        wrong = a + b + rng.randrange(1, 5)
        rows.append(dict(chosen=msg(f"The answer is {a + b}."), rejected=msg(f"The answer is {wrong}." * (1 + i % 2)),
                         score_chosen=4.5, score_rejected=1.0 + i % 3, category=["math", "chat"][i % 2]))
    long = dict(rows[0], chosen=rows[0]["chosen"][:1] + [dict(role="assistant", content="The answer is 7. " * 40)])
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32] + [long]))  # long: dropped
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return d


def run_rm(fx, out, *args):
    """train_rm.py in this process (runpy, as `python train_rm.py ...` would run it): no second torch import."""
    argv = ["train_rm.py", f"--sft={fx / 'sft'}", f"--data={fx / 'train.jsonl'}", f"--eval_data={fx / 'test.jsonl'}",
            f"--out_dir={fx / out}", "--recipe=paper", "--batch_size=8", "--max_steps=2", "--max_len=64", "--lr=1e-3", *args]
    old_argv, buf = sys.argv, io.StringIO()
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(buf):
            runpy.run_path(os.path.join(REPO, "train_rm.py"), run_name="__main__")
    finally:
        sys.argv = old_argv
    return buf.getvalue()


@pytest.mark.slow
def test_train_rm_smoke_and_accumulation(fixture):
    """Two optimizer steps of 8 pairs, as one micro-batch or as micro-batches of 3, 3, 2: the same loss and
    gradient norm at step 0 (Adam would hide a wrong gradient scale, the norm does not) and the same weights after
    (up to float noise, which Adam amplifies for the tiniest gradients). The run writes an
    LlamaForSequenceClassification model, metrics and per-section accuracy."""
    out = run_rm(fixture, "one", "--micro_batch=8")
    run_rm(fixture, "acc", "--micro_batch=3")
    logs = [[json.loads(line) for line in open(fixture / d / "metrics.jsonl")] for d in ("one", "acc")]
    for key in ("loss", "grad_norm", "rewards/margins"):
        assert logs[0][0][key] == pytest.approx(logs[1][0][key], rel=1e-5, abs=1e-7), key
    a, b, sft = (load_model(str(fixture / d)) for d in ("one", "acc", "sft"))
    assert a.args.head == "scalar" and b.args.head == "scalar"
    for k, x in a.state_dict().items():
        if k != "score.weight":
            moved = (x - sft.state_dict()[k]).abs().max()
            assert (x - b.state_dict()[k]).abs().max() < 0.02 * moved, k
    hf = json.load(open(fixture / "one" / "model" / "config.json"))
    assert hf["architectures"] == ["LlamaForSequenceClassification"]
    assert [m["step"] for m in logs[0] if "loss" in m] == [0, 1]
    ev = json.load(open(fixture / "one" / "eval_rm.json"))["accuracy"]
    assert set(ev) == {"math", "chat", "all"} and ev["all"]["n"] == 8
    assert "data: 32 pairs" in out and "(1 longer than 64 tokens dropped" in out and "rewards/accuracies" in out


@pytest.mark.slow
def test_train_rm_regression_smoke(fixture):
    run_rm(fixture, "reg", "--loss=regression", "--micro_batch=4", "--max_steps=1", "--warmup=0")
    m = json.loads(open(fixture / "reg" / "metrics.jsonl").readline())
    assert m["step"] == 0 and m["loss"] > 0
    cfg = json.load(open(fixture / "reg" / "model" / "nanopref_config.json"))
    assert cfg["target_mean"] == pytest.approx((4.5 * 32 + sum(1.0 + i % 3 for i in range(32))) / 64)


@pytest.mark.slow
def test_train_rm_joins_datasets_with_plus(fixture):
    out = run_rm(fixture, "mix", f"--data={fixture / 'train.jsonl'}+{fixture / 'test.jsonl'}", "--max_steps=1",
                 "--warmup=0")
    assert "data: 40 pairs" in out and "(1 longer than 64 tokens dropped" in out  # 32 + 8, the long one dropped


def test_lm_generate_reports_eos_per_completion(rm, monkeypatch):
    """NanoprefLM.generate leaves lm.eos: per prompt, per completion, whether the sampler's row ended with EOS,
    in the prompts' order although generation batches them by length."""
    import nanopref.evals.lm as lm_mod
    from nanopref.generate import Generation

    class Tok:
        bos_id, eos_id, pad_id = 1, 2, 3

        def encode(self, text, bos=True):
            return [1] + [5] * len(text)

        def decode(self, ids):
            return " ".join(str(i) for i in ids if i != 3)

    def fake_generate(model, prompts, max_new_tokens, eos_id, pad_id, **kw):  # EOS iff the prompt's length is odd
        rows = [[7, eos_id, pad_id] if len(p) % 2 else [7, 8, 9] for p in prompts]
        mask = [[1, 1, 0] if len(p) % 2 else [1, 1, 1] for p in prompts]
        z = torch.zeros(len(prompts), 1)
        return Generation(torch.tensor(rows), torch.zeros(len(prompts), 3), torch.tensor(mask), z, z)

    monkeypatch.setattr(lm_mod, "generate", fake_generate)
    lm = lm_mod.NanoprefLM(rm, Tok(), batch_size=1)
    out = lm.generate(["ab", "abc", "a"], 3, n=2)
    assert out == [["7 2"] * 2, ["7 8 9"] * 2, ["7 8 9"] * 2]  # BOS + 2 tokens: odd, EOS; BOS + 3 or + 1: cut
    assert lm.eos == [[True, True], [False, False], [False, False]]
