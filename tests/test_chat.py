"""python -m nanopref.chat: a piped multi-turn conversation on a tiny saved model; reward models refuse clearly."""
import os
import subprocess
import sys

import pytest
import torch

from nanopref.chat import checkpoint_template
from nanopref.checkpoint import load_model
from nanopref.generate import generate
from nanopref.model import Transformer, model_args
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, encode_chat, train_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny policy and a tiny reward model, saved with a tokenizer trained here."""
    d = tmp_path_factory.mktemp("chat")
    corpus = [f"<|user|>\nWhat is {a} + {b}? And {b} + {a}?\n<|assistant|>\nThe answer is {a + b}, thanks."
              for a in range(20) for b in range(20)]
    tok = Tokenizer(train_tokenizer(corpus, str(d / "tok.model"), vocab_size=320))
    torch.manual_seed(0)
    policy = Transformer(model_args("test", vocab_size=tok.vocab_size)).eval()
    policy.init_weights(std=0.3)  # peaky, so that greedy replies depend on the conversation
    save_model(policy, str(d / "policy"), tok)
    rm = Transformer(model_args("test", vocab_size=tok.vocab_size, head="scalar"))
    save_model(rm, str(d / "rm"), tok)
    return d, tok


def chat(args, stdin):
    return subprocess.run([sys.executable, "-m", "nanopref.chat", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def reply(model, tok, messages, n=8):
    """-> (reply text, what chat prints for it), greedy, computed here from the same checkpoint."""
    ids, _ = encode_chat(tok, messages, add_generation_prompt=True)
    row = generate(model, [ids], n, tok.eos_id, tok.pad_id, temperature=0).lists()[0]
    ended = bool(row) and row[-1] == tok.eos_id
    text = tok.decode(row[:-1] if ended else row)
    return text, f"model> {text}" + ("" if ended else f"  [cut at {n} tokens]")


def test_piped_conversation_is_multi_turn(saved):
    d, tok = saved
    out = chat([f"--checkpoint={d / 'policy'}", "--temperature=0", "--max_new_tokens=8"],
               "What is 2 + 3?\nAnd 4 + 4?\n/reset\nAnd 4 + 4?\n/quit\nnever read\n")
    assert out.returncode == 0, out.stderr
    model = load_model(str(d / "policy"))
    u1, u2 = dict(role="user", content="What is 2 + 3?"), dict(role="user", content="And 4 + 4?")
    r1, shown1 = reply(model, tok, [u1])
    _, shown2 = reply(model, tok, [u1, dict(role="assistant", content=r1), u2])
    _, alone = reply(model, tok, [u2])
    assert shown2 != alone  # otherwise this test could not tell a conversation from single turns
    header, transcript = out.stdout.split("\n", 1)
    assert "tulu template" in header and str(d / "policy") in header
    assert transcript == (f"you> What is 2 + 3?\n{shown1}\nyou> And 4 + 4?\n{shown2}\nyou> /reset\n"
                          f"(new conversation)\nyou> And 4 + 4?\n{alone}\nyou> /quit\n")


def test_reward_model_cannot_chat_or_generate(saved):
    d, _ = saved
    out = chat([f"--checkpoint={d / 'rm'}"], "Hi\n")
    assert out.returncode != 0
    assert f"{d / 'rm'} is a reward model (scalar head); it cannot generate" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "nanopref.generate", f"--checkpoint={d / 'rm'}"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"{d / 'rm'} is a reward model (scalar head); it cannot generate" in out.stderr
    with pytest.raises(ValueError, match=r"/rm is a reward model \(scalar head\); it cannot generate"):
        generate(load_model(str(d / "rm")), [[1, 5]], 4, 2, 0)


def test_bad_flags_fail_before_loading(saved):
    d, _ = saved
    out = chat([f"--checkpoint={d / 'policy'}", "--temperature=-1", "--template=chatml"], "")
    assert out.returncode != 0 and "--template=chatml" in out.stderr
    assert "--temperature=-1.0: must be >= 0" in out.stderr and "Traceback" not in out.stderr
    out = chat(["--checkpoint=/nonexistent/dir"], "")
    assert out.returncode != 0 and "--checkpoint=/nonexistent/dir: no such directory" in out.stderr


def test_template_read_from_the_checkpoint(saved, tmp_path):
    d, tok = saved
    assert checkpoint_template(str(d / "policy")) == "tulu"
    save_model(Transformer(model_args("test", vocab_size=tok.vocab_size)), str(tmp_path / "l2"), tok, template="llama2")
    assert checkpoint_template(str(tmp_path / "l2")) == "llama2"
    os.remove(tmp_path / "l2" / "tokenizer_config.json")
    assert checkpoint_template(str(tmp_path / "l2")) == "tulu"  # older checkpoints: the default
