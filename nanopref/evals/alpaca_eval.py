"""AlpacaEval 1 and 2 (tatsu-lab/alpaca_eval: 805 instructions, reference outputs in the shared data).

Protocol (open-instruct eval/alpaca_farm/run_eval.py, mid-2024): the instruction as the user turn, greedy,
up to 8192 new tokens. A judge compares each output with the reference output of the same instruction:
AlpacaEval 1 = reference text_davinci_003 (annotator alpaca_eval_gpt4), AlpacaEval 2 = reference
gpt4_1106_preview (annotator weighted_alpaca_eval_gpt4_turbo, headline = length-controlled win rate).
The GPT-4 judges are not available offline; the judge is pluggable: any object with the reward-scorer method
`score([(instruction, response), ...]) -> [reward]` gives p(model wins) = sigmoid(r_model - r_reference) (a
Bradley-Terry reading of a reward model; soft preferences, like the weighted AE2 annotator). Without a judge,
run() still generates and the result says the win rates were skipped. Rates are fractions in [0, 1]
(alpaca_eval prints them x 100).

win_rate: mean p(model wins) (alpaca_eval get_winrate, with 0.5 for a draw).
length-controlled win rate (alpaca_eval metrics/glm_winrate.py, "length_controlled_v1"): the official GLM fits
    logit p = theta_model + phi * tanh(delta_len / std(delta_len)) + psi * instruction_difficulty,
with delta_len = len(reference) - len(model output) in characters, soft labels, L1-regularised logistic
regression with 5-fold CV, and regularisation towards two "gamed" baselines; it then predicts with delta_len = 0
and averages. Here, a documented small version in numpy: same tanh length feature and soft-label logistic loss,
fitted by Newton's method with a small L2 penalty (1e-3), no instruction-difficulty term (those precomputed
difficulties live on the HF hub, unavailable offline), no gamed-baseline regularisation, no CV. With only an
intercept left, LC win rate = sigmoid(theta_model).

--responses rows: {"id": <0-based index of the instruction>, "output": str} (or {"instruction": ..., "output": ...}
like alpaca_eval's model_outputs.json); scoring needs `judge=`.
"""
import math

import numpy as np

from nanopref.evals import as_int, as_str, check_fields, data_file, mean, pick_examples, read_json, result, stratified

REFERENCES = {1: "text_davinci_003", 2: "gpt4_1106_preview"}


def load(version=2):
    """[{"id", "instruction", "dataset", "reference"}] for AlpacaEval `version` 1 or 2."""
    ipath = data_file("alpaca_eval", "alpaca_eval_instructions.json")
    rpath = data_file("alpaca_eval", "reference_outputs", REFERENCES[version] + ".json")
    insts = check_fields(read_json(ipath), ["instruction"], ipath)
    refs = check_fields(read_json(rpath), ["instruction", "output"], rpath)
    if len(insts) != len(refs):
        raise ValueError(f"{rpath}: {len(refs)} reference outputs for {len(insts)} instructions in {ipath}")
    for i, (a, b) in enumerate(zip(insts, refs)):
        if a["instruction"] != b["instruction"]:
            raise ValueError(f"{rpath}: record {i} is for a different instruction than {ipath} record {i}")
    return [{"id": i, "instruction": a["instruction"], "dataset": a.get("dataset"), "reference": b["output"]}
            for i, (a, b) in enumerate(zip(insts, refs))]


def preferences(judge, instructions, references, outputs):
    """p(model output beats reference) = sigmoid(r_model - r_reference) from a reward scorer."""
    r = judge.score(list(zip(instructions, outputs)) + list(zip(instructions, references)))
    n = len(outputs)
    return [1.0 / (1.0 + math.exp(-(r[i] - r[n + i]))) for i in range(n)]


def length_controlled_winrate(prefs, model_lens, ref_lens, l2=1e-3, iters=50):
    """Soft-label logistic regression on [1, tanh(delta_len / std)], predicted at delta_len = 0 (see docstring)."""
    p = np.asarray(prefs, dtype=np.float64)
    delta = np.asarray(ref_lens, dtype=np.float64) - np.asarray(model_lens, dtype=np.float64)
    std = delta.std(ddof=1) if len(delta) > 1 else 0.0
    X = np.stack([np.ones_like(delta), np.tanh(delta / std) if std > 0 else np.zeros_like(delta)], axis=1)  # (N, 2)
    w = np.zeros(2)
    for _ in range(iters):  # Newton steps on mean cross-entropy + l2/2 |w|^2
        q = 1.0 / (1.0 + np.exp(-X @ w))
        grad = X.T @ (q - p) / len(p) + l2 * w
        hess = (X.T * (q * (1 - q))) @ X / len(p) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(1.0 / (1.0 + np.exp(-w[0]))), {"intercept": float(w[0]), "length_coef": float(w[1])}


def _score(examples, outputs, judge, version, config):
    records = [{"id": ex["id"], "instruction": ex["instruction"], "output": out, "reference": ex["reference"]}
               for ex, out in zip(examples, outputs)]
    metrics = {"avg_length": mean(len(o) for o in outputs), "n": len(records)}
    if judge is None:
        config["skipped"] = "win rates: no judge given (the GPT-4 annotators are not available offline)"
        return result(f"alpaca_eval{version}", metrics, records, version=version, **config)
    prefs = preferences(judge, [ex["instruction"] for ex in examples], [ex["reference"] for ex in examples], outputs)
    for rec, p in zip(records, prefs):
        rec["p_win"] = p
    lc, glm = length_controlled_winrate(prefs, [len(o) for o in outputs], [len(ex["reference"]) for ex in examples])
    metrics.update(win_rate=mean(prefs), n_wins=sum(p > 0.5 for p in prefs), n_draws=sum(p == 0.5 for p in prefs),
                   length_controlled_winrate=lc)
    return result(f"alpaca_eval{version}", metrics, records, version=version, reference=REFERENCES[version],
                  judge=type(judge).__name__, glm=glm, **config)


def score_responses(rows, version=2, judge=None):
    examples = load(version)
    keys = [("id", as_int, {ex["id"]: ex for ex in examples}), ("instruction", as_str,
                                                                {ex["instruction"]: ex for ex in examples})]
    chosen, outputs = pick_examples(rows, f"AlpacaEval {version}", keys, single=True)
    return _score(chosen, [o[0] for o in outputs], judge, version, {})


def run(lm, version=2, limit=None, judge=None, max_new_tokens=8192):
    examples = stratified(load(version), limit, key=lambda ex: ex["dataset"])  # limit: over the source sets
    outputs = [o[0] for o in lm.generate([lm.chat(ex["instruction"]) for ex in examples], max_new_tokens,
                                         temperature=0.0)]
    return _score(examples, outputs, judge, version, dict(max_new_tokens=max_new_tokens))
