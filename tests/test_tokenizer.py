"""Tokenizer: Llama-2's tokenizer.model through our wrapper == sentencepiece; chat templates; loss masks."""
import pytest
import sentencepiece as spm

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


def test_chat_ids_equal_whole_string_tokenization(llama):
    """For Llama-2's tokenizer, segment-wise encoding equals tokenizing each EOS-delimited chunk of the rendered
    string as a whole (the first with SentencePiece's dummy prefix, later ones as continuations)."""
    tok, _ = llama
    conv = CONV + [dict(role="assistant", content="5, since 2 + 3 = 5.\n\nDone.")]
    ids, mask = encode_chat(tok, conv)
    chunks = render_chat(conv).split("</s>")
    expect = [tok.bos_id]
    for k, chunk in enumerate(chunks):
        if chunk:
            expect += tok.encode(chunk, continuation=k > 0)
        if k < len(chunks) - 1:
            expect.append(tok.eos_id)
    assert ids == expect
    # the loss mask covers exactly the two assistant replies, each with its EOS
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained.count(tok.eos_id) == 2
    assert tok.decode(trained) == "Hello! How can I help?5, since 2 + 3 = 5.\n\nDone."
    _, last_only = encode_chat(tok, conv, train_on="last")
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
