"""Loaders: HH-RLHF transcripts split at the right place, UltraFeedback message lists, clear errors."""
import json

import pytest

from nanopref.data import load_preferences, load_sft, pair_batch, split_hh, tokenize_pairs
from nanopref.tokenizer import Tokenizer


def test_split_hh_by_hand():
    prompt = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant:"
    p, c, r = split_hh(prompt + " 4.", prompt + " Four, I think.\n\nAssistant: Sorry, 4.")
    assert p == [dict(role="user", content="Hi"), dict(role="assistant", content="Hello!"),
                 dict(role="user", content="What is 2+2?")]
    assert c == "4." and r == "Four, I think.\n\nAssistant: Sorry, 4."  # a response may contain the marker
    # both responses start alike: the prompt still ends at the last marker of the shared prefix
    p2, c2, r2 = split_hh(prompt + " Sure, 4.", prompt + " Sure, 5.")
    assert p2 == p and (c2, r2) == ("Sure, 4.", "Sure, 5.")
    assert split_hh("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c\n\nAssistant: d") is None


@pytest.mark.parametrize("name,rows,empty,identical", [("helpful-base", 2354, 4, 2), ("harmless-base", 2312, 4, 0)])
def test_hh_rlhf_real_files(data_file, name, rows, empty, identical):
    ex, dropped = load_preferences(data_file("hh-rlhf", name, "test.jsonl.gz"))
    assert len(ex) + sum(dropped.values()) == rows  # every row used or counted
    assert (dropped["with an empty response"], dropped["with identical chosen and rejected"]) == (empty, identical)
    for e in ex:
        assert e["prompt"][-1]["role"] == "user" and e["prompt"][0]["role"] == "user"
        assert all(m["role"] == ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(e["prompt"]))
        assert not e["chosen"].startswith("Assistant:")


@pytest.mark.parametrize("split,empty,identical", [("train", 2, 1), ("test", 2, 11)])
def test_ultrafeedback_real_files(data_file, split, empty, identical):
    ex, dropped = load_preferences(data_file("ultrafeedback", f"{split}_prefs.sample500.jsonl"))
    assert len(ex) + sum(dropped.values()) == 500  # the samples' empty responses and tied texts: dropped, counted
    assert dropped == {"with an empty response": empty, "with identical chosen and rejected": identical}
    assert all(e["prompt"][-1]["role"] == "user" and e["chosen"].strip() and e["rejected"].strip() for e in ex)


def test_bad_rows_name_file_and_line(tmp_path):
    good = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}
    cases = {
        "malformed": ("{not json", "malformed JSON"),
        "missing": (json.dumps({"chosen": good["chosen"]}), "missing field 'rejected'"),
        "prompts": (json.dumps({**good, "rejected": [{"role": "user", "content": "other"},
                                                     {"role": "assistant", "content": "b"}]}), "different prompts"),
        "roles": (json.dumps({**good, "chosen": [{"role": "user", "content": "q"}]}), "end with an assistant"),
        "types": (json.dumps({"chosen": "x", "rejected": good["rejected"]}), "both be message lists"),
    }
    for name, (line, msg) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(ValueError, match=f"{name}.jsonl:2: .*{msg}"):
            load_preferences(str(path))
    (tmp_path / "sft.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(ValueError, match="sft.jsonl:1: .*assistant"):
        load_sft(str(tmp_path / "sft.jsonl"))


def test_tokenize_pairs_drops_overlong_and_batches(data_file):
    tok = Tokenizer(data_file("tokenizer", "llama2_tokenizer.model"))
    ex = [dict(prompt=[dict(role="user", content="Say hi.")], chosen="Hi!", rejected="Hello there, friend!"),
          dict(prompt=[dict(role="user", content="Long one.")], chosen="word " * 200, rejected="ok")]
    pairs, dropped = tokenize_pairs(tok, ex, max_len=64)
    assert len(pairs) == 1 and dropped == 1
    tokens, loss_mask, attn = pair_batch(pairs, tok.pad_id)
    p = pairs[0]
    assert tokens.shape == (2, len(p["prompt"]) + len(p["rejected"]))
    assert tok.decode(tokens[0][loss_mask[0].bool()].tolist()) == "Hi!"
    assert tok.decode(tokens[1][loss_mask[1].bool()].tolist()) == "Hello there, friend!"
    assert tokens[0][loss_mask[0].bool()][-1] == tok.eos_id
    assert attn[0].sum() == len(p["prompt"]) + len(p["chosen"]) and (tokens[0][attn[0] == 0] == tok.pad_id).all()
