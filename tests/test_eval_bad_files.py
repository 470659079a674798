"""Malformed benchmark files: every evaluator's loader raises ValueError naming the file (and line, where the file
has lines) before any work, never a bare traceback. Each case writes one small broken file under a temporary
DATA_DIR."""
import gzip
import json

import pytest

import nanopref.evals as evals
from nanopref.evals import alpaca_eval, bbh, code, gsm8k, ifeval, mmlu, toxigen, truthfulqa

GOOD_GSM = b'{"question": "q", "answer": "so #### 3"}\n'
MMLU_HEAD = b"question,choice0,choice1,choice2,choice3,answer\n"
IFEVAL_ROW = {"key": 1, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
              "kwargs": [{"num_words": "ten", "relation": "at least"}]}

CASES = [  # (file under DATA_DIR, its bytes, loader, expected message after the path)
    ("gsm8k/test.jsonl", GOOD_GSM + b'{"question": "caf\xe9", "answer": "#### 1"}\n', gsm8k.load,
     ":2: not UTF-8 text (byte 0xe9 at column 18)"),
    ("gsm8k/test.jsonl", GOOD_GSM + b"\n" + b'{"question": "q", "answer": 3}\n', gsm8k.load,
     ":3: field 'answer': expected a string"),
    ("ifeval/input_data.jsonl", b"\n" + json.dumps(IFEVAL_ROW).encode() + b"\n", ifeval.load,
     ":2: field 'kwargs' of length_constraints:number_words"),
    ("ifeval/input_data.jsonl", json.dumps(dict(IFEVAL_ROW, kwargs={})).encode() + b"\n", ifeval.load,
     ":1: fields 'instruction_id_list' and 'kwargs': expected lists of equal length"),
    ("evalplus/HumanEvalPlus-v0.1.10.jsonl.gz", gzip.compress(b'{"task_id": "HumanEval/0"}\n' * 3000)[:200],
     lambda: code.load("humaneval"), ": truncated or corrupt gzip data after line"),
    ("evalplus/HumanEvalPlus-v0.1.10.jsonl.gz", gzip.compress(b'\n{"task_id": "HumanEval/0"}\n'),
     lambda: code.load("humaneval"), ":2: missing field(s) ['prompt'"),
    ("mmlu/test/x_test.csv", MMLU_HEAD + b"q,a,b,c,d,0\nq,a,b\n", lambda: mmlu.load("x"),
     ":3: row has the wrong number of fields"),
    ("mmlu/test/x_test.csv", MMLU_HEAD + b'"caf\xe9",a,b,c,d,0\n', lambda: mmlu.load("x"),
     ":2: not UTF-8 text"),
    ("bbh/bbh/t.json", b'{"examples": 5}', bbh.load_tasks, ": expected an object with an 'examples' list"),
    ("bbh/bbh/t.json", b'{"examples": [{"input": "x"}]}', bbh.load_tasks, ": example 0: expected an object"),
    ("truthfulqa/mc_task.json", b'[{"question": "q", "mc1_targets": [1], "mc2_targets": {}}]', truthfulqa.load_mc,
     ": question 0: field 'mc1_targets': expected an object mapping answers to 0 or 1"),
    ("truthfulqa/mc_task.json", b'{"question": "q"}', truthfulqa.load_mc, ": expected a list of objects, got dict"),
    ("truthfulqa/mc_task.json", b'[{"question": "q",\n "mc1_targets": }]', truthfulqa.load_mc, ":2: malformed JSON"),
    ("toxigen/prompts/hate_x_1k.txt", b"fine\n\xff\xfe\n", toxigen.load, ":2: not UTF-8 text (byte 0xff"),
    ("alpaca_eval/alpaca_eval_instructions.json", b'["x"]', alpaca_eval.load, ": record 0: expected an object"),
]


@pytest.mark.parametrize("rel, content, loader, message", CASES, ids=[c[0] + ":" + c[3][:24] for c in CASES])
def test_malformed_benchmark_file(tmp_path, monkeypatch, rel, content, loader, message):
    monkeypatch.setattr(evals, "DATA_DIR", str(tmp_path))
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    if rel.startswith("alpaca_eval"):  # its second file must exist too
        (tmp_path / "alpaca_eval" / "reference_outputs").mkdir()
        (tmp_path / "alpaca_eval" / "reference_outputs" / "gpt4_1106_preview.json").write_text("[]")
    with pytest.raises(ValueError) as e:
        loader()
    assert str(e.value).startswith(str(path)) and message in str(e.value), str(e.value)
