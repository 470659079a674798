import math

import numpy as np
import pytest

from evalkit import FakeLM, need, user_of
from nanopref.evals import alpaca_eval


@pytest.fixture(scope="module", autouse=True)
def data():
    need("alpaca_eval", "alpaca_eval_instructions.json")


class LengthJudge:
    """A reward 'model' that likes long answers: r = len(response) / 100."""

    def score(self, pairs):
        return [len(r) / 100 for _, r in pairs]


def test_load_both_versions():
    v1, v2 = alpaca_eval.load(1), alpaca_eval.load(2)
    assert len(v1) == len(v2) == 805
    assert [e["instruction"] for e in v1] == [e["instruction"] for e in v2]
    assert v1[0]["instruction"] == "What are the names of some famous actors that started their careers on Broadway?"
    assert v1[0]["reference"] != v2[0]["reference"]


def test_preferences_are_bradley_terry():
    judge = LengthJudge()
    p = alpaca_eval.preferences(judge, ["q", "q"], ["x" * 100, "x" * 100], ["y" * 300, "y" * 100])
    assert p == pytest.approx([1 / (1 + math.exp(-2.0)), 0.5])


def test_length_controlled_winrate():
    rng = np.random.default_rng(0)
    n = 800
    ref_len = rng.integers(200, 2000, n)
    # 1) preferences unrelated to length: LC ~ raw win rate
    model_len = rng.integers(200, 2000, n)
    prefs = rng.uniform(0.2, 0.8, n)
    lc, glm = alpaca_eval.length_controlled_winrate(prefs, model_len, ref_len)
    assert lc == pytest.approx(prefs.mean(), abs=0.01) and abs(glm["length_coef"]) < 0.2
    # 2) a model that only wins by being longer: raw rate is high, LC pulls it back to 0.5
    model_len = ref_len + rng.normal(800, 600, n)
    delta = (ref_len - model_len) / (ref_len - model_len).std(ddof=1)
    prefs = 1 / (1 + np.exp(2.0 * np.tanh(delta)))  # judge preference driven by length alone
    lc, glm = alpaca_eval.length_controlled_winrate(prefs, model_len, ref_len)
    assert prefs.mean() > 0.75 and lc == pytest.approx(0.5, abs=0.01)
    assert glm["length_coef"] == pytest.approx(-2.0, abs=0.1)  # (shrunk a little by the L2 penalty)
    # 3) no information at all
    assert alpaca_eval.length_controlled_winrate([0.5] * 10, [1] * 10, [1] * 10)[0] == pytest.approx(0.5)


def test_run_with_and_without_judge():
    fake = FakeLM(respond=lambda p: "A short answer to: " + user_of(p)[:20])
    res = alpaca_eval.run(fake, version=2, limit=10)
    assert "skipped" in res["config"] and "win_rate" not in res["metrics"]
    assert fake.calls[0]["max_new_tokens"] == 8192 and fake.calls[0]["temperature"] == 0.0
    res = alpaca_eval.run(fake, version=1, limit=10, judge=LengthJudge())
    m = res["metrics"]
    assert m["win_rate"] < 0.5 and m["n_wins"] == sum(r["p_win"] > 0.5 for r in res["records"])
    assert 0 <= m["length_controlled_winrate"] <= 1 and res["config"]["reference"] == "text_davinci_003"


def test_score_responses():
    ref = alpaca_eval.load(2)
    rows = [{"id": 0, "output": ref[0]["reference"]},  # the reference itself: a draw
            {"instruction": ref[1]["instruction"], "output": ref[1]["reference"] + " More words."}]
    res = alpaca_eval.score_responses(rows, version=2, judge=LengthJudge())
    assert [r["id"] for r in res["records"]] == [0, 1]
    assert res["records"][0]["p_win"] == 0.5 and res["records"][1]["p_win"] > 0.5
    assert res["metrics"]["n_draws"] == 1
