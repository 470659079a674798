"""Tokenizer: Llama-2's tokenizer.model through our wrapper == sentencepiece; chat templates; loss masks."""
import json

import pytest
import sentencepiece as spm

from nanopref.model import Transformer, model_args
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer, encode_chat, encode_prompt_response, render_chat, train_tokenizer

STRINGS = [
    "Hello world! The quick brown fox.", "", " ", "   leading and trailing spaces   ", "tabs\tand\nnewlines\n\n\nx",
    "naïve café — déjà vu, Straße, Ελληνικά, русский, 日本語のテキスト, 中文, 한국어", "emoji 🙂🚀👩‍👩‍👧 and ✓",
    "digits 0123456789 3.14159 -42 1,000,000 2024-11-24", "def f(x):\n    return {'a': [x ** 2, x // 3]}  # code",
    "<|user|>\nnot special here</s><s>", "a" * 300, "multiple     spaces    between", "\u200bzero\u00a0width",
]


@pytest.fixture
def llama(data_file):
    path = data_file("tokenizer", "llama2_tokenizer.model")
    return Tokenizer(path), spm.SentencePieceProcessor(model_file=path)


def test_llama2_encode_decode_matches_sentencepiece(llama):
    tok, sp = llama
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id) == (32000, 1, 2, 0)
    assert tok.encode("Hello world! The quick brown fox.") == [15043, 3186, 29991, 450, 4996, 17354, 1701, 29916, 29889]
    for s in STRINGS:
        ids = sp.encode(s)
        assert tok.encode(s) == ids, s
        assert tok.encode(s, bos=True, eos=True) == [1] + ids + [2]
        assert tok.decode(ids) == sp.decode(ids), s
        assert tok.decode(tok.encode(s)) == s, s  # lossless: identity normalisation + byte fallback


def test_continuation_encoding_has_no_dummy_prefix(llama):
    tok, sp = llama
    assert sp.encode("Hello", out_type=str) == ["▁Hello"]
    assert [tok.id_to_piece(i) for i in tok.encode("Hello", continuation=True)] == ["Hello"]
    # text after a newline tokenizes the same alone (as a continuation) as inside the whole string
    for a, b in [("Question:\n", "What is 2+2?"), ("<|assistant|>\n", "Sure! Here it is:\n- x"), ("x\n", " y")]:
        assert tok.encode(a) + tok.encode(b, continuation=True) == tok.encode(a + b)


CONV = [dict(role="system", content="Be brief."), dict(role="user", content="Hi there"),
        dict(role="assistant", content="Hello! How can I help?"), dict(role="user", content="Add 2 and 3.")]


def test_tulu_template_strings():
    one = [dict(role="user", content="What is 2+2?"), dict(role="assistant", content="4")]
    assert render_chat(one) == "<|user|>\nWhat is 2+2?\n<|assistant|>\n4</s>"
    assert render_chat(one[:1], add_generation_prompt=True) == "<|user|>\nWhat is 2+2?\n<|assistant|>\n"
    assert render_chat(CONV, add_generation_prompt=True) == (
        "<|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\nHello! How can I help?</s>\n"
        "<|user|>\nAdd 2 and 3.\n<|assistant|>\n")


def test_llama2_template_strings():
    assert render_chat(CONV, "llama2", add_generation_prompt=True) == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! How can I help? </s>"
        "<s>[INST] Add 2 and 3. [/INST]")
    with pytest.raises(ValueError, match="alternate"):
        render_chat([dict(role="user", content="a"), dict(role="user", content="b")], "llama2")


def legacy_2023(sp, text):
    """What the 2023 LlamaTokenizer (legacy; EasyLM's copy of it) did: cut the text at "<s>" and "</s>" and encode
    each piece as a fresh SentencePiece string (dummy-prefix space included)."""
    ids = []
    for k, chunk in enumerate(text.split("</s>")):
        for j, part in enumerate(chunk.split("<s>")):
            ids += ([1] if j else []) + (sp.encode(part) if part else [])
        ids += [2] if k < text.count("</s>") else []
    return ids


def easylm_string(messages):
    """EasyLM's TuluJsonTorchDataset text (the paper's SFT/RM/DPO data), written here from its description:
    BOS as text, every message stripped, "</s>\n" after each reply, the whole string stripped."""
    text = ""
    for m in messages:
        end = "</s>\n" if m["role"] == "assistant" else "\n"
        text += f"<|{m['role']}|>\n{m['content'].strip()}{end}"
    return "<s>" + text.strip()


CONVS = [  # multi-turn, with a system message, untrimmed text and an empty reply
    [dict(role="system", content="  Be brief.\n"), dict(role="user", content=" Hi there \n"),
     dict(role="assistant", content="Hello! How can I help?  "), dict(role="user", content="Add 2 and 3.\n\n"),
     dict(role="assistant", content="5, since 2 + 3 = 5.\n\nDone."), dict(role="user", content="Thanks")],
    [dict(role="user", content="What is 12 + 7?"), dict(role="assistant", content=""),
     dict(role="user", content="And 3 + 4?")],
]
CODE = [dict(role="user", content="Write f."), dict(role="assistant", content="def f(x):\n    return  x"),
        dict(role="user", content="Again:\n  indented")]  # runs of spaces ("▁▁▁" pieces in Llama-2)


def test_chat_ids_equal_the_papers_tokenization(llama):
    """encode_chat == the 2023 legacy tokenizer on EasyLM's string, for every prefix of each conversation."""
    tok, sp = llama
    for conv in CONVS + [CODE]:
        for cut in range(1, len(conv) + 1):
            assert encode_chat(tok, conv[:cut])[0] == legacy_2023(sp, easylm_string(conv[:cut])), cut
    ids, mask = encode_chat(tok, CONVS[0][:5])
    eos = ids.index(tok.eos_id)
    assert ids[eos:eos + 4] == [2, 29871, 13, 29966]  # </s> ▁ \n <: the next turn is a fresh string
    # the loss mask covers exactly the two assistant replies, each with its EOS
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained.count(tok.eos_id) == 2
    assert tok.decode(trained) == "Hello! How can I help?5, since 2 + 3 = 5.\n\nDone."
    _, last_only = encode_chat(tok, CONVS[0][:5], train_on="last")
    assert tok.decode([i for i, m in zip(ids, last_only) if m]) == "5, since 2 + 3 = 5.\n\nDone."


@pytest.mark.parametrize("template", ["tulu", "llama2"])
def test_prompt_response_boundary(llama, template):
    tok, _ = llama
    prompt = [dict(role="user", content="Name a colour.")]
    p, r = encode_prompt_response(tok, prompt, "  Blue.  ", template)
    gen_prompt, _ = encode_chat(tok, prompt, template, add_generation_prompt=True)
    assert p == gen_prompt  # what the sampler sees is what training conditions on
    assert r[-1] == tok.eos_id and tok.decode(r).strip() == "Blue."


def test_bad_messages():
    with pytest.raises(ValueError, match=r"messages\[1\]"):
        render_chat([dict(role="user", content="a"), dict(role="robot", content="b")])
    with pytest.raises(ValueError, match="unknown chat template"):
        render_chat([dict(role="user", content="a")], "chatml")


def test_train_tokenizer_deterministic(tmp_path):
    corpus = [f"<|user|>\nWhat is {a} + {b}?\n<|assistant|>\n{a} + {b} = {a + b}. The answer is {a + b}."
              for a in range(30) for b in range(30)]
    paths = [train_tokenizer(corpus, str(tmp_path / f"t{i}.model"), vocab_size=300) for i in range(2)]
    assert open(paths[0], "rb").read() == open(paths[1], "rb").read()
    tok = Tokenizer(paths[0])
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (300, 3, 2)
    ids = tok.encode("<|user|>\n12 + 7")
    assert tok.id_to_piece(ids[0]) == "▁" and tok.id_to_piece(ids[1]) == "<|user|>"  # one piece per chat marker
    assert [tok.id_to_piece(i) for i in tok.encode("12 + 7")] == ["▁", "1", "2", "▁+", "▁", "7"]  # digits split
    assert tok.decode(tok.encode("emoji 🙂 falls back to bytes")) == "emoji 🙂 falls back to bytes"


# -----------------------------------------------------------------------------
# the paper's tokenization, and what transformers reads from a saved model

def hf_tokenizer(path, cls="AutoTokenizer", **kw):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("google.protobuf", reason="transformers needs protobuf to read a tokenizer.model")
    return getattr(transformers, cls).from_pretrained(path, **kw)


def test_multi_turn_ids_equal_transformers_legacy_llama_tokenizer(llama, tmp_path):
    """transformers' LlamaTokenizer in legacy mode, as in 2023, on EasyLM's string gives encode_chat's ids."""
    tok, _ = llama
    (tmp_path / "tokenizer.model").write_bytes(open(tok.path, "rb").read())
    legacy = hf_tokenizer(str(tmp_path), "LlamaTokenizer", legacy=True)
    for conv in CONVS:
        for cut in range(1, len(conv) + 1):
            expect = legacy(easylm_string(conv[:cut]), add_special_tokens=False).input_ids
            assert encode_chat(tok, conv[:cut])[0] == expect, cut


@pytest.fixture(scope="module")
def world_tokenizer(tmp_path_factory):
    from nanopref.world.build import build_world
    out = build_world(0, out=str(tmp_path_factory.mktemp("world")), quiet=True)
    return Tokenizer(f"{out}/tokenizer.model")


def chat_cases(template):
    """(conversation, add_generation_prompt) pairs: every prefix of CONVS and CODE the template can render."""
    for conv in CONVS + [CODE]:
        for cut in range(1, len(conv) + 1):
            for gen in (False, True):
                last = conv[cut - 1]["role"]
                if template == "tulu" or not (last == "system" or gen and last != "user"):
                    yield conv[:cut], gen


@pytest.mark.parametrize("which", ["world", "llama2"])
@pytest.mark.parametrize("template", ["tulu", "llama2"])
def test_saved_model_loads_in_autotokenizer_with_nanoprefs_ids(which, template, request, tmp_path):
    tok = request.getfixturevalue("world_tokenizer") if which == "world" else request.getfixturevalue("llama")[0]
    save_model(Transformer(model_args("test", vocab_size=tok.vocab_size)), str(tmp_path), tok, template=template)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["legacy"] is False and config["tokenizer_class"] == "LlamaTokenizer"
    assert json.loads((tmp_path / "special_tokens_map.json").read_text())["eos_token"] == "</s>"
    # what AutoTokenizer picks (LlamaTokenizer), and the same files through transformers' generic conversion, which
    # is exact: transformers 5's LlamaTokenizer splits runs of spaces unlike sentencepiece ("a  b": ▁a ▁▁ b, not
    # ▁a ▁ ▁b), with or without nanopref's files, so it is checked on text without them.
    for hf, exact in [(hf_tokenizer(str(tmp_path)), False), (hf_tokenizer(str(tmp_path), "TokenizersBackend"), True)]:
        assert type(hf).__name__ == ("TokenizersBackend" if exact else "LlamaTokenizer")
        assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
        checked = 0
        # (not text that starts with a space: transformers then skips the dummy prefix, sentencepiece does not)
        for text in [s for s in STRINGS if not s.startswith(" ") and "<" not in s]:
            if exact or "  " not in text:
                assert hf(text).input_ids == tok.encode(text, bos=True), text
        for conv, gen in chat_cases(template):
            if exact or "  " not in render_chat(conv, template, gen):
                ids, _ = encode_chat(tok, conv, template, add_generation_prompt=gen)
                assert list(hf.apply_chat_template(conv, add_generation_prompt=gen, return_dict=False)) == ids, \
                    (conv, gen)
                checked += 1
        assert checked >= (20 if template == "tulu" else 4)


def test_save_model_rejects_unknown_template(tmp_path, llama):
    with pytest.raises(ValueError, match="unknown chat template 'chatml'"):
        save_model(Transformer(model_args("test", vocab_size=32000)), str(tmp_path / "m"), llama[0], template="chatml")
    assert not (tmp_path / "m").exists()
