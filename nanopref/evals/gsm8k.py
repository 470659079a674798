"""GSM8K (openai/grade-school-math, test.jsonl: 1319 questions).

Protocol (open-instruct eval/gsm/run_eval.py, mid-2024): 8-shot chain of thought with the 8 exemplars of Wei et
al. 2022 (CoT paper, Table 20), written "Question: ...\\nAnswer: ..." after "Answer the following questions.\\n\\n";
the paper's runs use a random 200-question subset (`random.seed(42); random.sample(test, 200)`, reproduced
exactly by `subset=200, seed=42`); greedy decoding, 512 new tokens, no stop string in chat format (the model
ends with EOS). Chat prompt: user = prefix + "Question: " + question, assistant turn starts with "Answer:".
Scoring: reference = text after "####" with thousands separators removed; prediction = the last number in the
output; accuracy = `exact_match`.

Deviation (on purpose): open-instruct compares the two strings with HF exact_match after deleting punctuation,
so "5.0" != "5" while "-3" == "3", and its number regex drops the sign of integers. Here both sides are compared
as decimal numbers: "$1,234.50" == "1234.5", "5.0" == "5", "-3" != "3". `is_correct` is a plain function and
can serve as an RL reward.

--responses rows: {"id": <0-based line index in test.jsonl>, "output": str} (or "outputs": [str, ...]).
"""
import re
from decimal import Decimal, InvalidOperation

from nanopref.evals import as_int, data_file, mean, pick_examples, read_rows, result, stratified, subsample

# Wei et al. 2022, Table 20 (the standard 8 GSM8K exemplars, as in open-instruct eval/gsm/examplars.py)
EXEMPLARS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. So the answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. So the answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "So the answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "So the answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. So the answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. So the answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. So the answer is 8."),
]
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def load(split="test"):
    """[{id, question, answer (full solution), reference (the number after ####)}]."""
    path = data_file("gsm8k", f"{split}.jsonl")
    rows = read_rows(path, required=("question", "answer"))
    for i, r in enumerate(rows):
        if not isinstance(r["question"], str) or not isinstance(r["answer"], str) or "####" not in r["answer"]:
            raise ValueError(f"{rows.where(i)}: field 'answer': expected a string with a '####' final-answer marker")
        r["id"], r["reference"] = i, reference_answer(r["answer"])
    return rows


def reference_answer(answer):
    """'... #### 1,234' -> '1234'."""
    return re.sub(r"(?<=\d),(?=\d)", "", answer.split("####")[-1].strip())


def extract_answer(text):
    """Last number in `text` as a string ('$1,234.50.' -> '1234.50', '-7' -> '-7'); None if there is none."""
    numbers = _NUMBER.findall(re.sub(r"(?<=\d),(?=\d)", "", text))
    return numbers[-1].rstrip(".") if numbers else None  # "18." (end of sentence) -> "18"


def is_correct(output, reference):
    """True if the last number of `output` equals `reference` (a number, or a full answer with '####')."""
    pred = extract_answer(output)
    if pred is None:
        return False
    try:
        return Decimal(pred) == Decimal(reference_answer(reference))
    except InvalidOperation:
        return False


def build_prompt(question, n_shot=8):
    """(user, assistant_prefix) for lm.chat."""
    if n_shot:
        shots = "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in EXEMPLARS[:n_shot])
        prefix = "Answer the following questions.\n\n" + shots + "\n\n"
    else:
        prefix = "Answer the following question.\n\n"
    return prefix + "Question: " + question.strip(), "Answer:"


def _score(examples, outputs, config):
    records = []
    for ex, outs in zip(examples, outputs):
        preds = [extract_answer(o) for o in outs]
        correct = [is_correct(o, ex["reference"]) for o in outs]
        records.append({"id": ex["id"], "reference": ex["reference"], "outputs": outs, "predictions": preds,
                        "correct": correct})
    metrics = {"exact_match": mean(mean(r["correct"]) for r in records), "n": len(records)}
    return result("gsm8k", metrics, records, **config)


def score_responses(rows):
    examples, outputs = pick_examples(rows, "GSM8K", [("id", as_int, {ex["id"]: ex for ex in load()})])
    return _score(examples, outputs, {})


def run(lm, limit=None, subset=200, seed=42, n_shot=8, max_new_tokens=512, stop=None):
    """subset=None evaluates all 1319 questions; `limit`: a seeded sample of that many of them (or of the subset)."""
    examples = stratified(subsample(load(), subset, seed), limit)
    prompts = [lm.chat(*build_prompt(ex["question"], n_shot)) for ex in examples]
    outputs = lm.generate(prompts, max_new_tokens, temperature=0.0, stop=stop)
    return _score(examples, outputs, dict(subset=subset, seed=seed, n_shot=n_shot, max_new_tokens=max_new_tokens))
