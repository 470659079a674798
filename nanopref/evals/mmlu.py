"""MMLU (hendrycks/test: 57 subjects, 14,042 test and 285 dev questions).

Protocol (open-instruct eval/mmlu/run_eval.py, mid-2024), 0-shot and 5-shot (the dev questions as exemplars):
    "The following are multiple choice questions (with answers) about {subject}.\\n\\n"   (subject = " " + words,
                                                      so there are two spaces after "about", as in the original)
    + k x "{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {letter}\\n\\n"  + the test question up to "Answer:"
This is the user turn; the assistant turn starts with "The answer is:". The prediction is the letter whose
continuation (" A", " B", ...: the letter after a space, as open-instruct's `encode(" " + letter)[-1]`) is most
likely; comparing the four as continuations of the same context sidesteps " A" vs "A" tokenisation. Reported:
micro average over all questions (`average_acc`) and per-subject accuracy. open-instruct drops exemplars until
the prompt fits in 2048 tokens; here that happens only if the LM exposes `num_tokens(text)`.

Data note: the shared CSVs have a header and a 0-based answer index (MANIFEST); choices are read as raw strings
(open-instruct's pandas would turn a choice "1.50" into "1.5").

--responses rows: {"id": "<subject>/<row index in the test csv>", "output": generated text}, scored with
`extract_letter`.
"""
import os
import re

from nanopref.evals import as_str, data_file, mean, pick_examples, read_csv, result, stratified

LETTERS = "ABCD"


def subjects():
    d = data_file("mmlu", "test")
    return sorted(f[: -len("_test.csv")] for f in os.listdir(d) if f.endswith("_test.csv"))


def load(subject, split="test"):
    """[{question, choices[4], answer ("A".."D")}] for one subject and split ("test" or "dev")."""
    path = data_file("mmlu", split, f"{subject}_{split}.csv")
    rows = read_csv(path, required=["question", "choice0", "choice1", "choice2", "choice3", "answer"])
    out = []
    for i, r in enumerate(rows):
        if r["answer"] not in ("0", "1", "2", "3"):
            raise ValueError(f"{path}: row {i + 2} has answer {r['answer']!r}, expected a 0-based index 0..3")
        out.append({"question": r["question"], "choices": [r[f"choice{j}"] for j in range(4)],
                    "answer": LETTERS[int(r["answer"])]})
    return out


def format_example(ex, include_answer=True):
    text = ex["question"] + "".join(f"\n{l}. {c}" for l, c in zip(LETTERS, ex["choices"])) + "\nAnswer:"
    return text + f" {ex['answer']}\n\n" if include_answer else text


def build_prompt(subject, ex, dev, n_shot):
    """(user, assistant_prefix) for lm.chat."""
    header = "The following are multiple choice questions (with answers) about {}.\n\n".format(
        "".join(" " + w for w in subject.split("_")))
    return header + "".join(format_example(d) for d in dev[:n_shot]) + format_example(ex, False), "The answer is:"


def extract_letter(text, letters=LETTERS):
    """Letter of a generated answer: 'B', ' B', '(B)', 'B.', 'B) ...', 'The answer is (C)'. None if unclear."""
    t = text.strip()
    m = re.match(rf"\(?([{letters}])\)?(?=$|[\s.:,)])", t)
    if m:
        return m.group(1)
    m = re.search(rf"answer is:?\s*\(?([{letters}])\)?(?![A-Za-z])", t, flags=re.IGNORECASE)
    if m:
        return m.group(1)
    m = re.search(rf"\(([{letters}])\)", t)
    return m.group(1) if m else None


def predict(logprobs):
    """Index of the most likely letter (ties go to the first, like argmax)."""
    return max(range(len(logprobs)), key=lambda j: logprobs[j])


def _metrics(records):
    metrics = {"average_acc": mean(r["correct"] for r in records), "n": len(records)}
    by_subject = {}
    for r in records:
        by_subject.setdefault(r["subject"], []).append(r["correct"])
    metrics.update({f"subject_acc/{s}": mean(v) for s, v in sorted(by_subject.items())})
    return metrics


def score_responses(rows):
    table = {f"{s}/{i}": (f"{s}/{i}", s, ex) for s in subjects() for i, ex in enumerate(load(s))}
    examples, outputs = pick_examples(rows, "MMLU", [("id", as_str, table)])
    records = []
    for (key, subject, ex), outs in zip(examples, outputs):
        for out in outs:
            pred = extract_letter(out)
            records.append({"id": key, "subject": subject, "answer": ex["answer"], "output": out,
                            "prediction": pred, "correct": pred == ex["answer"]})
    return result("mmlu", _metrics(records), records)


def run(lm, limit=None, n_shot=0, subject_list=None, max_prompt_tokens=2048):
    """n_shot 0 or 5 (both are in the paper's job list). `limit`: that many questions spread over the subjects in
    proportion to their sizes (a seeded sample)."""
    items = []
    for s in subject_list or subjects():
        dev = load(s, "dev")[:n_shot] if n_shot else []
        items += [(s, i, ex, dev) for i, ex in enumerate(load(s))]
    items = stratified(items, limit, key=lambda item: item[0])
    requests = []
    for s, i, ex, dev in items:
        k = n_shot
        context = lm.chat(*build_prompt(s, ex, dev, k))
        while k > 0 and hasattr(lm, "num_tokens") and lm.num_tokens(context) > max_prompt_tokens:
            k -= 1
            context = lm.chat(*build_prompt(s, ex, dev, k))
        requests += [(context, " " + letter) for letter in LETTERS]
    lls = lm.loglikelihood(requests)
    records = []
    for j, (s, i, ex, _) in enumerate(items):
        lp = lls[4 * j: 4 * j + 4]
        pred = LETTERS[predict(lp)]
        records.append({"id": f"{s}/{i}", "subject": s, "answer": ex["answer"], "prediction": pred,
                        "logprobs": lp, "correct": pred == ex["answer"]})
    return result("mmlu", _metrics(records), records, n_shot=n_shot)
