"""The bad-input matrix: every case a script run (in this process, as `python script args` runs it) on a tiny
fixture, that must exit with a SystemExit whose message names the file:line, field, path or flag; never a bare
traceback, and never after a training step (no step logged, no model saved). Line numbers count blank lines: each
data fixture is a good row, a blank line, then the bad row on line 3. Config values are tests/test_config.py's.
Then the drop counts: printed, saved in data_stats.json, and 0 usable rows an error with the reasons."""
import contextlib
import gzip
import io
import json
import os
import re
import runpy
import shutil
import sys

import pytest
import torch

from nanopref.model import Transformer, model_args
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, train_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def msgs(*turns):
    return [dict(role=r, content=c) for r, c in zip(("user", "assistant") * 4, turns)]


SFT_OK = {"messages": msgs("What is 2 + 3?", "The answer is 5.")}
PAIR_OK = {"chosen": msgs("What is 2 + 3?", "The answer is 5."), "rejected": msgs("What is 2 + 3?", "It is 7.")}
PROMPT_OK = {"prompt": "What is 4 + 4?"}
LONG = "The answer is 5. " * 60  # over 64 tokens


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Checkpoints: a policy, a reward model with the same tokenizer, policies with another tokenizer (same and
    other vocabulary size), and broken copies of the policy."""
    d = tmp_path_factory.mktemp("bad")
    corpus = [f"<|user|>\nWhat is {a} + {b}?\n<|assistant|>\nThe answer is {a + b}." for a in range(20)
              for b in range(20)]
    tok = Tokenizer(train_tokenizer(corpus, str(d / "tok.model"), vocab_size=300))
    other = [f"<|user|>\nName colour {a} and animal {b}.\n<|assistant|>\nRed cat {a}{b}!" for a in range(20)
             for b in range(20)]
    tok2 = Tokenizer(train_tokenizer(other, str(d / "tok2.model"), vocab_size=300))
    tok3 = Tokenizer(train_tokenizer(other, str(d / "tok3.model"), vocab_size=320))
    torch.manual_seed(0)
    for name, t, head in (("sft", tok, "lm"), ("rm", tok, "scalar"), ("sft_tok2", tok2, "lm"),
                          ("sft_tok3", tok3, "lm")):
        m = Transformer(model_args("test", vocab_size=t.vocab_size, max_seq_len=128, head=head))
        m.init_weights()
        save_model(m, str(d / name), tokenizer=t)
    broken = {
        "truncated": lambda p: open(p / "model.safetensors", "r+b").truncate(os.path.getsize(p / "model.safetensors")
                                                                            // 2),
        "badjson": lambda p: (p / "config.json").write_text('{"hidden_size": 64,'),
        "noconfig": lambda p: os.remove(p / "config.json"),
        "nofield": lambda p: (p / "config.json").write_text(json.dumps(
            {k: v for k, v in json.loads((p / "config.json").read_text()).items() if k != "hidden_size"})),
        "badtok": lambda p: (p / "tokenizer.model").write_bytes(b"not a sentencepiece model"),
        "wrongtok": lambda p: shutil.copyfile(d / "tok3.model", p / "tokenizer.model"),  # 320 tokens for 300
    }
    for name, breaks in broken.items():
        shutil.copytree(d / "sft", d / name)
        breaks(d / name)
    os.makedirs(d / "empty")
    shutil.copytree(d / "sft", d / "unfinished" / "ckpt")  # a killed run: ckpt/ but no model/
    write(d / "eval.jsonl", PAIR_OK, "", "{")  # files that cases name in their args
    write(d / "latin1.jsonl", raw=b'{"id": 1}\n\n{"output": "caf\xe9"}\n')
    write(d / "broken.jsonl", {"id": 1}, "", '{"id": 2, ')
    write(d / "resp.jsonl.gz", *[{"id": i, "output": "x" * 40} for i in range(300)])
    return d


def write(path, *lines, raw=None):
    """A data file: the given rows (dicts as JSON, strings as they are) one per line, gzipped and cut in half if
    the name ends in .gz; raw: these bytes instead."""
    data = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines).encode()
    if raw is None and path.suffix == ".gz":
        data = gzip.compress(data)
        data = data[:len(data) // 2]
    path.write_bytes(data if raw is None else raw)
    return str(path)


def bad3(row, name):
    """A good row, a blank line, the bad row: its line is 3."""
    good = {"sft": SFT_OK, "prefs": PAIR_OK, "prompts": PROMPT_OK}[name.split(".")[0].split("_")[0]]
    return lambda d: write(d / name, good, "", row)


# each script on the fixture's checkpoints; a case's own args come after these and win (the last --key=value counts)
SCRIPTS = dict(
    sft=lambda d, data: ["train_sft.py", f"--data={data}", f"--init={d / 'sft'}", "--max_len=64", "--batch_size=2",
                         "--micro_batch=2"],
    rm=lambda d, data: ["train_rm.py", f"--data={data}", f"--sft={d / 'sft'}", "--max_len=64", "--batch_size=2",
                        "--micro_batch=2", "--bon_n=0"],
    dpo=lambda d, data: ["train_dpo.py", f"--data={data}", f"--init={d / 'sft'}", "--max_len=64", "--batch_size=2",
                         "--micro_batch=2", "--eval_pairs=off", f"--ref_cache={d / 'cache'}"],
    ppo=lambda d, data: ["train_ppo.py", f"--prompts={data}", f"--policy={d / 'sft'}", f"--reward={d / 'rm'}",
                         "--max_prompt_len=32", "--max_new_tokens=8", "--batch_size=2", "--minibatch=2",
                         "--micro_batch=2"],
)
GOOD = dict(sft=lambda d: write(d / "good.jsonl", SFT_OK), rm=lambda d: write(d / "good.jsonl", PAIR_OK),
            dpo=lambda d: write(d / "good.jsonl", PAIR_OK), ppo=lambda d: write(d / "good.jsonl", PROMPT_OK))
pair = lambda c, r, **kw: dict(chosen=c, rejected=r, **kw)  # noqa: E731
hh = "\n\nHuman: What is 2 + 3?\n\nAssistant: "

# (case id, script, data maker (d -> path) or None for the script's good file, extra args, message fragment)
# "{d}" in args and fragments is the fixture's directory.
CASES = [
    # --- SFT rows
    ("sft-malformed", "sft", bad3('{"messages": [', "sft.jsonl"), [], "sft.jsonl:3: malformed JSON"),
    ("sft-not-object", "sft", bad3("[1, 2]", "sft.jsonl"), [], "sft.jsonl:3: expected a JSON object, got list"),
    ("sft-no-messages", "sft", bad3({"text": "hi"}, "sft.jsonl"), [], "sft.jsonl:3: missing field 'messages'"),
    ("sft-messages-str", "sft", bad3({"messages": "hi"}, "sft.jsonl"), [],
     "sft.jsonl:3: field 'messages' must be a non-empty list"),
    ("sft-message-str", "sft", bad3({"messages": ["hi"]}, "sft.jsonl"), [],
     "sft.jsonl:3: field 'messages'[0] must be a {role, content} object"),
    ("sft-role", "sft", bad3({"messages": [dict(role="human", content="q"), dict(role="gpt", content="a")]},
                             "sft.jsonl"), [],
     "sft.jsonl:3: field 'messages'[0].role must be system, user or assistant"),
    ("sft-content-null", "sft", bad3({"messages": [dict(role="user", content="q"),
                                                   dict(role="assistant", content=None)]}, "sft.jsonl"), [],
     "sft.jsonl:3: field 'messages'[1].content must be a string"),
    ("sft-ends-user", "sft", bad3({"messages": msgs("q")}, "sft.jsonl"), [],
     "sft.jsonl:3: field 'messages' must end with an assistant message"),
    ("sft-llama2-alternation", "sft", bad3({"messages": [dict(role="user", content="a"), dict(role="user", content="b"),
                                                         dict(role="assistant", content="c")]}, "sft.jsonl"),
     ["--template=llama2"], "sft.jsonl:3: field 'messages': llama2 template: messages must alternate"),
    ("sft-not-utf8", "sft", lambda d: write(d / "sft.jsonl", raw=json.dumps(SFT_OK).encode() +
                                            b'\n\n{"messages": "caf\xe9"}\n'), [],
     "sft.jsonl:3: not UTF-8 text (byte 0xe9"),
    ("sft-truncated-gz", "sft", lambda d: write(d / "sft.jsonl.gz", *[SFT_OK] * 400), [],
     "sft.jsonl.gz: truncated or corrupt gzip data after line"),
    ("sft-not-gz", "sft", lambda d: write(d / "plain.jsonl.gz", raw=b'{"messages": []}\n'), [],
     "plain.jsonl.gz: truncated or corrupt gzip data after line 0 (Not a gzipped file"),
    ("sft-missing-file", "sft", lambda d: str(d / "nope.jsonl"), [], "nope.jsonl: no such file"),
    ("sft-directory", "sft", lambda d: str(d), [], ": a directory, not a JSONL file"),
    ("sft-empty-file", "sft", lambda d: write(d / "empty.jsonl", "", ""), [],
     "empty.jsonl: no usable conversations: the file has no rows"),
    ("sft-all-too-long", "sft", lambda d: write(d / "long.jsonl", {"messages": msgs("q", LONG)}), [],
     "long.jsonl: no usable conversations: all 1 rows dropped (1 longer than 64 tokens)"),
    ("sft-all-empty-answers", "sft", lambda d: write(d / "empty_answers.jsonl", {"messages": msgs("q", " ")}), [],
     "all 1 rows dropped (0 longer than 64 tokens, 1 with an empty assistant message)"),
    # --- preference rows (RM and DPO share the loader; each script gets some)
    ("rm-missing-rejected", "rm", bad3({"chosen": PAIR_OK["chosen"]}, "prefs.jsonl"), [],
     "prefs.jsonl:3: missing field 'rejected'"),
    ("rm-chosen-ends-user", "rm", bad3(pair(msgs("q"), msgs("q")), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'chosen' must end with an assistant message"),
    ("rm-no-user-turn", "rm", bad3(pair([dict(role="system", content="s"), dict(role="assistant", content="a")],
                                        [dict(role="system", content="s"), dict(role="assistant", content="b")]),
                                   "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'chosen': the response must follow a user"),
    ("rm-score-nan", "rm", lambda d: write(d / "prefs.jsonl", dict(PAIR_OK, score_chosen=5, score_rejected=1), "",
                                           json.dumps(dict(PAIR_OK, score_chosen=float("nan"), score_rejected=1))),
     ["--loss=regression"], "prefs.jsonl:3: field 'score_chosen' must be a finite number, got float nan"),
    ("rm-score-str", "rm", bad3(dict(PAIR_OK, score_rejected="1"), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'score_rejected' must be a finite number, got str"),
    ("rm-all-identical", "rm", lambda d: write(d / "same.jsonl", pair(msgs("q", "a"), msgs("q", "a ")),
                                               pair(msgs("r", "b"), msgs("r", "b"))), [],
     "same.jsonl: no usable pairs: all 2 rows dropped (0 longer than 64 tokens, 2 with identical chosen and rejected)"),
    ("rm-truncated-gz", "rm", lambda d: write(d / "prefs.jsonl.gz", *[PAIR_OK] * 300), [],
     "prefs.jsonl.gz: truncated or corrupt gzip data after line"),
    ("rm-second-file", "rm", lambda d: write(d / "a.jsonl", PAIR_OK) + "+" + write(d / "b.jsonl", PAIR_OK, "{"), [],
     "b.jsonl:2: malformed JSON"),
    ("dpo-different-prompts", "dpo", bad3(pair(msgs("q", "a"), msgs("other q", "b")), "prefs.jsonl"), [],
     "prefs.jsonl:3: chosen and rejected have different prompts"),
    ("dpo-mixed-types", "dpo", bad3(pair("x", msgs("q", "b")), "prefs.jsonl"), [],
     "prefs.jsonl:3: chosen/rejected must both be message lists or both be strings, got str and list"),
    ("dpo-str-not-hh", "dpo", bad3(pair("a", "b"), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'chosen' is a string but not an HH-RLHF transcript"),
    ("dpo-trl-no-prompt", "dpo", bad3(pair([dict(role="assistant", content="a")],
                                           [dict(role="assistant", content="b")]), "prefs.jsonl"), [],
     "prefs.jsonl:3: missing field 'prompt'"),
    ("dpo-trl-two-messages", "dpo", bad3(pair([dict(role="assistant", content="a")] * 2,
                                              [dict(role="assistant", content="b")], prompt="q"), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'chosen' must be a string or one assistant message"),
    ("dpo-trl-prompt-ends-assistant", "dpo", bad3(pair("a", "b", prompt=msgs("q", "a")), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'prompt' must end with a user message"),
    ("dpo-hh-prompt-unfinished", "dpo", bad3(pair("a", "b", prompt="\n\nHuman: q"), "prefs.jsonl"), [],
     "prefs.jsonl:3: field 'prompt' is an HH transcript but does not end with 'Assistant:'"),
    ("dpo-all-empty-responses", "dpo", lambda d: write(d / "empty.jsonl", pair(msgs("q", ""), msgs("q", "b")),
                                                       pair(hh + "x", hh)), [],
     "empty.jsonl: no usable pairs: all 2 rows dropped (0 longer than 64 tokens, 2 with an empty response)"),
    ("dpo-hh-no-shared-prompt", "dpo", lambda d: write(d / "hh.jsonl", pair("\n\nHuman: a\n\nAssistant: b",
                                                                             "\n\nHuman: c\n\nAssistant: d")), [],
     "hh.jsonl: no usable pairs: all 1 rows dropped (0 longer than 64 tokens, 1 HH transcripts sharing no prompt)"),
    ("dpo-not-utf8", "dpo", lambda d: write(d / "prefs.jsonl", raw=json.dumps(PAIR_OK).encode() + b"\n\n\xff\xfe\n"),
     [], "prefs.jsonl:3: not UTF-8 text (byte 0xff at column 1)"),
    ("dpo-eval-malformed", "dpo", None, ["--eval_pairs={d}/eval.jsonl"], "{d}/eval.jsonl:3: malformed JSON"),
    # --- PPO prompt rows
    ("ppo-no-prompt-field", "ppo", bad3({"question": "q"}, "prompts.jsonl"), [],
     "prompts.jsonl:3: missing field 'messages' or 'prompt'"),
    ("ppo-prompt-number", "ppo", bad3({"prompt": 5}, "prompts.jsonl"), [],
     "prompts.jsonl:3: field 'prompt' must be a non-empty list of {role, content} messages, got int 5"),
    ("ppo-messages-end-system", "ppo", bad3({"messages": [dict(role="system", content="s")]}, "prompts.jsonl"), [],
     "prompts.jsonl:3: field 'messages' must end with a user message"),
    ("ppo-two-answers", "ppo", bad3({"messages": msgs("q", "a") + [dict(role="assistant", content="b")]},
                                    "prompts.jsonl"), [],
     "prompts.jsonl:3: field 'messages[:-1]' must end with a user"),
    ("ppo-malformed", "ppo", bad3('{"prompt": "q"', "prompts.jsonl"), [], "prompts.jsonl:3: malformed JSON"),
    ("ppo-all-empty", "ppo", lambda d: write(d / "empty.jsonl", {"prompt": "  "}), [],
     "empty.jsonl: no usable prompts: all 1 rows dropped (0 longer than 32 tokens, 1 with an empty prompt)"),
    ("ppo-all-too-long", "ppo", lambda d: write(d / "long.jsonl", {"prompt": LONG}, {"prompt": LONG}), [],
     "long.jsonl: no usable prompts: all 2 rows dropped (2 longer than 32 tokens)"),
    # --- checkpoints
    ("sft-init-missing", "sft", None, ["--init={d}/nope"], "checkpoint directory not found: --init={d}/nope"),
    ("sft-init-file", "sft", None, ["--init={d}/tok.model"],
     "--init={d}/tok.model: a file, not a checkpoint directory"),
    ("sft-init-empty-dir", "sft", None, ["--init={d}/empty"], "--init={d}/empty: neither config.json"),
    ("sft-init-unfinished-run", "sft", None, ["--init={d}/unfinished"], "{d}/unfinished/ckpt holds an unfinished run"),
    ("sft-init-reward-model", "sft", None, ["--init={d}/rm"],
     "--init={d}/rm: a reward or value model (scalar head), but a policy (language-model head) is needed"),
    ("sft-init-truncated", "sft", None, ["--init={d}/truncated"],
     "{d}/truncated/model.safetensors: cannot read the weights, truncated or corrupt?"),
    ("sft-init-bad-config", "sft", None, ["--init={d}/badjson"], "{d}/badjson/config.json: malformed JSON"),
    ("sft-init-no-config", "sft", None, ["--init={d}/noconfig"], "--init={d}/noconfig: neither config.json"),
    ("sft-init-config-field", "sft", None, ["--init={d}/nofield"],
     "{d}/nofield/config.json: hidden_size='missing': each must be a positive integer"),
    ("sft-init-bad-tokenizer", "sft", None, ["--init={d}/badtok"],
     "{d}/badtok/tokenizer.model: not a usable SentencePiece model"),
    ("sft-init-wrong-tokenizer", "sft", None, ["--init={d}/wrongtok"],
     "{d}/wrongtok/tokenizer.model has 320 tokens but the model's vocabulary is 300"),
    ("rm-sft-reward-model", "rm", None, ["--sft={d}/rm"], "--sft={d}/rm: a reward or value model (scalar head)"),
    ("rm-sft-truncated", "rm", None, ["--sft={d}/truncated"], "model.safetensors: cannot read the weights"),
    ("dpo-init-reward-model", "dpo", None, ["--init={d}/rm"], "--init={d}/rm: a reward or value model (scalar head)"),
    ("dpo-ref-reward-model", "dpo", None, ["--ref={d}/rm"], "--ref={d}/rm: a reward or value model (scalar head)"),
    ("dpo-ref-other-tokenizer", "dpo", None, ["--ref={d}/sft_tok2"],
     "--ref={d}/sft_tok2 has a different tokenizer from --init={d}/sft"),
    ("dpo-ref-other-vocab", "dpo", None, ["--ref={d}/sft_tok3"],
     "--ref={d}/sft_tok3 has a vocabulary of 320 tokens, --init={d}/sft one of 300"),
    ("dpo-ref-bad-config", "dpo", None, ["--ref={d}/badjson"], "{d}/badjson/config.json: malformed JSON"),
    ("ppo-policy-reward-model", "ppo", None, ["--policy={d}/rm"], "--policy={d}/rm: a reward or value model"),
    ("ppo-reward-policy", "ppo", None, ["--reward={d}/sft"],
     "--reward={d}/sft: a policy (language-model head), but a reward or value model (scalar head) is needed"),
    ("ppo-value-policy", "ppo", None, ["--value={d}/sft"], "--value={d}/sft: a policy (language-model head)"),
    ("ppo-reward-missing", "ppo", None, ["--reward={d}/nope"], "checkpoint directory not found: --reward={d}/nope"),
    ("ppo-policy-other-tokenizer", "ppo", None, ["--policy={d}/sft_tok2"],
     "--reward={d}/rm has a different tokenizer from --policy={d}/sft_tok2"),
]
# evaluate.py: bad files and checkpoints it reads through nanopref's loaders (its --responses rows are another task's)
EVAL_CASES = [
    ("eval-responses-missing", ["--responses={d}/nope.jsonl"], "{d}/nope.jsonl: no such file"),
    ("eval-responses-not-utf8", ["--responses={d}/latin1.jsonl"], "{d}/latin1.jsonl:3: not UTF-8 text"),
    ("eval-responses-malformed", ["--responses={d}/broken.jsonl"], "{d}/broken.jsonl:3: malformed JSON"),
    ("eval-responses-truncated-gz", ["--responses={d}/resp.jsonl.gz"],
     "{d}/resp.jsonl.gz: truncated or corrupt gzip data after line"),
    ("eval-model-missing", ["--model={d}/nope"], "checkpoint directory not found: {d}/nope"),
    ("eval-model-truncated", ["--model={d}/truncated"], "model.safetensors: cannot read the weights"),
    ("eval-model-bad-config", ["--model={d}/badjson"], "{d}/badjson/config.json: malformed JSON"),
    ("eval-judge-missing", ["--judge={d}/nope", "--tasks=alpaca_eval"], "checkpoint directory not found: {d}/nope"),
]


def run(argv):
    """Run a script in this process -> ("exit", code, stdout) for a SystemExit, ("traceback", exception, stdout) for
    anything else, ("finished", None, stdout) if it ran to the end."""
    old, buf = sys.argv, io.StringIO()
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(os.path.join(ROOT, argv[0]), run_name="__main__")
        return "finished", None, buf.getvalue()
    except SystemExit as e:
        return "exit", e.code, buf.getvalue()
    except Exception as e:  # noqa: BLE001  a bare traceback: the failure this matrix exists to catch
        return "traceback", e, buf.getvalue()
    finally:
        sys.argv = old


def check_clear_exit(argv, fragment, out_dir):
    how, code, out = run(argv)
    assert how == "exit", f"{how}: {code!r}\n{out[-1500:]}"
    assert isinstance(code, str), f"exit {code!r} without a message\n{out[-1500:]}"  # status 1 with the message
    assert fragment in code, f"{fragment!r} not in {code!r}"
    assert not re.search(r"^step\s+\d+ \|", out, re.M), "a training step ran"
    assert not os.path.exists(os.path.join(out_dir, "model")), "a model was saved"


@pytest.mark.parametrize("case,script,make,args,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_clearly(fx, tmp_path, case, script, make, args, fragment):
    sub = lambda a: a.replace("{d}", str(fx))  # noqa: E731
    argv = SCRIPTS[script](fx, (make or GOOD[script])(tmp_path)) + ["--recipe=paper", "--max_steps=1",
                                                                     "--warmup=0", f"--out_dir={tmp_path / 'out'}"]
    check_clear_exit(argv + [sub(a) for a in args], sub(fragment), tmp_path / "out")


@pytest.mark.parametrize("case,args,fragment", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_evaluate_bad_input_exits_clearly(fx, tmp_path, case, args, fragment):
    sub = lambda a: a.replace("{d}", str(fx))  # noqa: E731
    check_clear_exit(["evaluate.py", *map(sub, args), f"--out={tmp_path / 'scores.json'}"], sub(fragment),
                     tmp_path / "out")


def test_matrix_size():
    """The issue asks for at least 40 cases across the four train scripts and evaluate.py."""
    from test_config import test_bad_values_fail_before_any_work as config_cases
    n_config = len(config_cases.pytestmark[0].args[1])
    assert len(CASES) + len(EVAL_CASES) >= 40 and n_config > 0
    assert {c[1] for c in CASES} == {"sft", "rm", "dpo", "ppo"}
    print(f"bad-input cases: {len(CASES) + len(EVAL_CASES)} here + {n_config} config values in test_config.py")


# -----------------------------------------------------------------------------
# drops counted, printed and saved; a run on a good file goes past every check


def test_sft_counts_drops_and_trains(fx, tmp_path):
    data = write(tmp_path / "sft.jsonl", SFT_OK, "", {"messages": msgs("q", "")}, {"messages": msgs("q", LONG)},
                 {"messages": msgs("What is 1 + 1?", "The answer is 2.")})
    argv = SCRIPTS["sft"](fx, data) + ["--recipe=paper", "--max_steps=1", "--warmup=0", f"--out_dir={tmp_path / 'out'}"]
    how, code, out = run(argv)
    assert how == "finished", (how, code, out[-1500:])
    assert f"data: 2 conversations from {data} (1 longer than 64 tokens, 1 with an empty assistant message dropped)" \
        in out
    stats = json.load(open(tmp_path / "out" / "data_stats.json"))["train"]
    assert stats == dict(path=data, rows=4, used=2, dropped={"longer than 64 tokens": 1,
                                                             "with an empty assistant message": 1})


def test_dpo_counts_identical_and_empty_pairs(fx, tmp_path):
    """TRL's explicit-prompt rows (strings and message lists) train beside UltraFeedback's; identical and empty
    pairs are dropped and counted."""
    rows = [PAIR_OK, "", pair("The answer is 4.", "It is 9.", prompt="What is 2 + 2?"),
            pair([dict(role="assistant", content="The answer is 6.")], [dict(role="assistant", content="Six?")],
                 prompt=msgs("What is 3 + 3?")),
            pair(msgs("q", "same"), msgs("q", "same")), pair("", "x", prompt="q")]
    data = write(tmp_path / "prefs.jsonl", *rows)
    argv = SCRIPTS["dpo"](fx, data) + ["--recipe=paper", "--max_steps=1", "--warmup=0", f"--out_dir={tmp_path / 'out'}"]
    how, code, out = run(argv)
    assert how == "finished", (how, code, out[-1500:])
    assert (f"data: 3 pairs from {data} (0 longer than 64 tokens, 1 with identical chosen and rejected, "
            f"1 with an empty response dropped)") in out
    stats = json.load(open(tmp_path / "out" / "data_stats.json"))
    assert stats["train"]["rows"] == 5 and stats["train"]["used"] == 3 and stats["eval"] is None
