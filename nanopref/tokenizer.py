"""SentencePiece tokenizer, chat templates, and conversations -> token ids with a loss mask.

Pad id. Llama-2's tokenizer has no pad piece (pad_id = -1), so nanopref pads with <unk> (id 0), as the paper's
EasyLM code does: byte fallback means encoding never produces <unk>, and it is never EOS (id 2). Tokenizers trained
here get a real <pad> piece (id 3). Padding positions are always masked, so the pad id only has to differ from EOS.

Token boundaries, as in the paper. EasyLM renders a conversation as one string with "<s>" and "</s>" written as
text and tokenizes it with the 2023 (legacy) LlamaTokenizer, which cuts the string at those two tokens and encodes
each piece as a fresh SentencePiece string, i.e. with the dummy-prefix space: "</s>\n<|user|>" becomes
</s> "▁" "\n" "<" ... (ids 2, 29871, 13, 29966 for Llama-2; tested against transformers' legacy LlamaTokenizer).
nanopref renders the same conversation as segments (text, BOS, EOS) and encodes each text segment that follows a
BOS or EOS the same way. The one other cut is where an assistant message starts: its text, after "<|assistant|>\n",
is encoded as a continuation (no dummy prefix), so the prompt tokens a model samples from are exactly the prompt
tokens it was trained on. For Llama-2 this equals the paper's whole-string tokenization (tested), because no piece
crosses a newline.

A saved model carries the template for the HF ecosystem (`hf_tokenizer_files`): a Jinja `chat_template` whose
ids under transformers' AutoTokenizer equal `encode_chat`'s (tested with Llama-2's and the world's tokenizers).
"""
import io
import os

import sentencepiece as spm

from nanopref.common import atomic_write

TEMPLATES = ("tulu", "llama2")


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _encode_varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _without_dummy_prefix(proto: bytes) -> bytes:
    """The same SentencePiece model with normalizer_spec.add_dummy_prefix = false. sentencepiece 0.2 has no
    per-call switch and we avoid a protobuf dependency, so edit the wire format: ModelProto field 3 is the
    NormalizerSpec message, whose field 3 (varint) is add_dummy_prefix."""
    out, i = bytearray(), 0
    while i < len(proto):
        start = i
        key, i = _varint(proto, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(proto, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(proto, i)
            if field == 3:  # NormalizerSpec: drop any add_dummy_prefix entry, then append add_dummy_prefix = 0
                spec, j, kept = proto[i:i + n], 0, bytearray()
                while j < len(spec):
                    s = j
                    k, j = _varint(spec, j)
                    w = k & 7
                    if w == 0:
                        _, j = _varint(spec, j)
                    elif w == 2:
                        m, j = _varint(spec, j)
                        j += m
                    else:
                        j += 8 if w == 1 else 4
                    if k >> 3 != 3:
                        kept += spec[s:j]
                kept += b"\x18\x00"
                out += _encode_varint(key) + _encode_varint(len(kept)) + kept
                i += n
                continue
            i += n
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in the SentencePiece model")
        out += proto[start:i]
    return bytes(out)


class Tokenizer:
    def __init__(self, model_path):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"tokenizer model not found: {model_path}")
        self.path = model_path
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.sp_cont = spm.SentencePieceProcessor(model_proto=_without_dummy_prefix(self.sp.serialized_model_proto()))
        self.vocab_size = self.sp.vocab_size()
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.sp.unk_id()
        if self.pad_id == self.eos_id or self.pad_id < 0:
            raise ValueError(f"{model_path}: no usable pad id distinct from eos ({self.eos_id})")

    def encode(self, text, bos=False, eos=False, continuation=False):
        """text -> ids. continuation=True encodes text that follows earlier text (no dummy-prefix space)."""
        ids = (self.sp_cont if continuation else self.sp).encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids):
        """ids -> text; pad ids are dropped (they are <unk> for Llama-2, which byte fallback never emits)."""
        return self.sp.decode([int(i) for i in ids if i != self.pad_id])

    def id_to_piece(self, i):
        return self.sp.id_to_piece(int(i))


# -----------------------------------------------------------------------------
# chat templates: a conversation becomes segments ("text", s) / ("bos",) / ("eos",), each with `train` (in the
# loss) and, for text, `prefix` (encode with the dummy-prefix space, as the start of a fresh string is).

def _check_messages(messages, template):
    if template not in TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; known: {TEMPLATES}")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}]: expected role system/user/assistant, got {m!r:.80}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}]: content must be a string")


def chat_segments(messages, template="tulu", add_generation_prompt=False, train_on="all"):
    """Segments of a conversation. train_on: "all" assistant turns, or only the "last" (preference data).
    add_generation_prompt: end with the assistant header, ready for sampling."""
    _check_messages(messages, template)
    last_asst = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    seg = [dict(kind="bos", train=False)]
    if template == "tulu":
        # <|user|>\n{user}\n<|assistant|>\n{assistant}</s>\n<|user|>\n...: EasyLM's format, every message stripped,
        # the whole string stripped (no "\n" after the last </s>); a text segment after BOS or EOS is a fresh string
        text = ""
        for i, m in enumerate(messages):
            if m["role"] == "assistant":
                seg.append(dict(kind="text", text=text + "<|assistant|>\n", train=False, prefix=True))
                train = train_on == "all" or i == last_asst
                seg.append(dict(kind="text", text=m["content"].strip(), train=train, prefix=False))
                seg.append(dict(kind="eos", train=train))
                text = "\n"
            else:
                text += f"<|{m['role']}|>\n{m['content'].strip()}\n"
        text = text + "<|assistant|>\n" if add_generation_prompt else text.rstrip()
        if text:
            seg.append(dict(kind="text", text=text, train=False, prefix=True))
        return seg
    # llama2 (Meta's chat_completion): system folded into the first user turn; each exchange is its own string
    # "<s>[INST] {user} [/INST] {assistant} </s>", and the prompt ends with "[/INST]"
    msgs = messages
    if msgs[0]["role"] == "system":
        if len(msgs) < 2 or msgs[1]["role"] != "user":
            raise ValueError("llama2 template: a system message must be followed by a user message")
        msgs = [dict(role="user", content=f"<<SYS>>\n{msgs[0]['content']}\n<</SYS>>\n\n{msgs[1]['content']}")] + msgs[2:]
        last_asst -= 1
    for i, m in enumerate(msgs):
        if m["role"] != ("user" if i % 2 == 0 else "assistant"):
            raise ValueError(f"llama2 template: messages must alternate user/assistant; message {i} is {m['role']}")
    for i in range(0, len(msgs), 2):
        if i > 0:
            seg.append(dict(kind="bos", train=False))
        seg.append(dict(kind="text", text=f"[INST] {msgs[i]['content'].strip()} [/INST]", train=False, prefix=True))
        if i + 1 < len(msgs):
            train = train_on == "all" or i + 1 == last_asst
            seg.append(dict(kind="text", text=f" {msgs[i + 1]['content'].strip()} ", train=train, prefix=False))
            seg.append(dict(kind="eos", train=train))
    if add_generation_prompt and msgs[-1]["role"] != "user":
        raise ValueError("llama2 template: a generation prompt needs the conversation to end with a user turn")
    return seg


def render_chat(messages, template="tulu", add_generation_prompt=False):
    """The conversation as the documented string (BOS omitted for tulu, "</s>" marks EOS)."""
    out = []
    for s in chat_segments(messages, template, add_generation_prompt):
        if s["kind"] == "text":
            out.append(s["text"])
        elif s["kind"] == "eos":
            out.append("</s>")
        elif template == "llama2":
            out.append("<s>")
    return "".join(out)


def encode_chat(tok, messages, template="tulu", add_generation_prompt=False, train_on="all"):
    """-> (ids, loss_mask): loss_mask[i] = 1 where ids[i] is an assistant token we train on (its EOS included)."""
    ids, mask = [], []
    for s in chat_segments(messages, template, add_generation_prompt, train_on):
        if s["kind"] == "text":
            piece = tok.encode(s["text"], continuation=not s["prefix"])
        else:
            piece = [tok.bos_id if s["kind"] == "bos" else tok.eos_id]
        ids += piece
        mask += [int(s["train"])] * len(piece)
    return ids, mask


# The same templates in Jinja for transformers' apply_chat_template, written to tokenizer_config.json with
# legacy=False. There, a piece of text after a special token gets no dummy-prefix space (legacy=True would add one
# after every added token, and the world's <|user|> is one), so the templates write that space out: bos_token + " "
# and eos_token + " \n" tokenize as BOS + a fresh string and EOS + a fresh string do here.
CHAT_TEMPLATES = {
    "tulu": (
        "{{ bos_token + ' ' }}{% for m in messages %}"
        "{% if not loop.first and loop.previtem['role'] == 'assistant' %}{{ ' \n' }}{% endif %}"
        "{% if m['role'] == 'assistant' %}{{ '<|assistant|>\n' + m['content'] | trim + eos_token }}"
        "{% elif m['role'] in ['system', 'user'] %}{{ '<|' + m['role'] + '|>\n' + m['content'] | trim }}"
        "{% if not loop.last or add_generation_prompt %}{{ '\n' }}{% endif %}"
        "{% else %}{{ raise_exception('tulu template: unknown role ' + m['role']) }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{% if messages[-1]['role'] == 'assistant' %}{{ ' \n' }}{% endif %}"
        "{{ '<|assistant|>\n' }}{% endif %}"),
    "llama2": (
        "{% set sys = '' %}{% set msgs = messages %}{% if messages[0]['role'] == 'system' %}"
        "{% set sys = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set msgs = messages[1:] %}"
        "{% endif %}{% for m in msgs %}{% if (m['role'] == 'user') != (loop.index0 is even) %}"
        "{{ raise_exception('llama2 template: messages must alternate user/assistant') }}{% endif %}"
        "{% if loop.index0 is even %}{{ bos_token + ' [INST] ' + ((sys if loop.first else '') + m['content']) | trim"
        " + ' [/INST]' }}{% else %}{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"),
}


def hf_tokenizer_files(tok, template="tulu", max_len=4096):
    """{file name: JSON object} that let transformers' AutoTokenizer load tokenizer.model with nanopref's special
    tokens, pad id and chat template: tokenizer_config.json and special_tokens_map.json."""
    if template not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; known: {TEMPLATES}")
    special = dict(bos_token=tok.id_to_piece(tok.bos_id), eos_token=tok.id_to_piece(tok.eos_id),
                   unk_token=tok.id_to_piece(tok.sp.unk_id()), pad_token=tok.id_to_piece(tok.pad_id))
    config = dict(tokenizer_class="LlamaTokenizer", legacy=False, add_bos_token=True, add_eos_token=False,
                  clean_up_tokenization_spaces=False, model_max_length=max_len, chat_template=CHAT_TEMPLATES[template],
                  **special)
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def template_of(chat_template):
    """The name of the nanopref template whose Jinja is `chat_template`, or None."""
    return next((name for name, jinja in CHAT_TEMPLATES.items() if jinja == chat_template), None)


def encode_prompt_response(tok, prompt_messages, response, template="tulu"):
    """A (prompt, one assistant response) pair -> (prompt_ids, response_ids): prompt_ids are exactly what the
    sampler is given, response_ids = the response tokens + EOS. Used by SFT, reward models and DPO alike."""
    prompt_ids, _ = encode_chat(tok, prompt_messages, template, add_generation_prompt=True)
    full, mask = encode_chat(tok, prompt_messages + [dict(role="assistant", content=response)], template,
                             train_on="last")
    assert full[:len(prompt_ids)] == prompt_ids, "chat template broke the prompt/response token boundary"
    return prompt_ids, full[len(prompt_ids):]


# -----------------------------------------------------------------------------


def train_tokenizer(texts, path, vocab_size, user_symbols=("<|system|>", "<|user|>", "<|assistant|>")):
    """Train a Llama-style SentencePiece BPE model (byte fallback, digits split, no normalisation) on an iterable
    of strings and write it to `path` atomically. ids: 0 <unk>, 1 <s>, 2 </s>, 3 <pad>. The same input gives
    byte-identical files (single-threaded, unshuffled, written from memory so no path is recorded inside)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, user_defined_symbols=list(user_symbols),
        shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")
    return path
