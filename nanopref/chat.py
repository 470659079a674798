"""Talk to a trained model: a multi-turn conversation in its chat template, one reply per line you type.

    python -m nanopref.chat --checkpoint=out/sft
    python -m nanopref.chat --checkpoint=out/dpo --temperature=0 --max_new_tokens=512 --system="Be brief."

Commands: /reset starts a new conversation, /quit (or end of input) leaves. Each turn's prompt is the whole
conversation so far, encoded with `encode_chat(..., add_generation_prompt=True)`, i.e. the tokens the model was
trained on; when it no longer fits in the model's context, the oldest exchanges are dropped (and you are told).
Lines are read from standard input, so a conversation can be piped in: `printf 'Hi\\nThanks\\n' | python -m ...`.
"""
import json
import os
import sys
from dataclasses import dataclass

import torch

from nanopref.checkpoint import load_model, load_tokenizer, resolve
from nanopref.common import autodevice
from nanopref.config import parse_config
from nanopref.generate import generate, require_lm_head
from nanopref.tokenizer import TEMPLATES, encode_chat, template_of


@dataclass
class Config:
    checkpoint: str = ""        # model directory (HF or Meta layout) or nanopref run directory, with tokenizer.model
    template: str = "auto"      # auto: the one in the checkpoint's tokenizer_config.json (tulu if none); tulu | llama2
    system: str = ""            # a system message that opens every conversation (none if empty)
    max_new_tokens: int = 256   # longest reply, in tokens
    temperature: float = 0.7    # 0 for greedy
    top_k: int = 0              # 0 = off
    top_p: float = 1.0          # 1 = off
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"      # float32 | bfloat16 | float16


def check_config(cfg):
    """Every flag checked against its meaning, before anything is loaded."""
    problems = []
    if not cfg.checkpoint:
        problems.append("--checkpoint=DIR is required (e.g. out/sft, made by `python train_sft.py`)")
    elif not os.path.isdir(cfg.checkpoint):
        problems.append(f"--checkpoint={cfg.checkpoint}: no such directory")
    if cfg.template not in ("auto",) + TEMPLATES:
        problems.append(f"--template={cfg.template}: expected auto, {' or '.join(TEMPLATES)}")
    if cfg.max_new_tokens <= 0:
        problems.append(f"--max_new_tokens={cfg.max_new_tokens}: must be positive")
    if cfg.temperature < 0:
        problems.append(f"--temperature={cfg.temperature}: must be >= 0 (0 is greedy)")
    if cfg.top_k < 0 or not 0 < cfg.top_p <= 1:
        problems.append(f"--top_k={cfg.top_k} --top_p={cfg.top_p}: need top_k >= 0 and 0 < top_p <= 1")
    if cfg.dtype not in ("float32", "bfloat16", "float16"):
        problems.append(f"--dtype={cfg.dtype}: expected float32, bfloat16 or float16")
    if problems:
        raise SystemExit("chat: " + "; ".join(problems))


def checkpoint_template(path):
    """The template named by the checkpoint's tokenizer_config.json (written by save_model), or tulu."""
    config = os.path.join(resolve(path), "tokenizer_config.json")
    if not os.path.exists(config):
        return "tulu"
    try:
        with open(config) as f:
            chat_template = json.load(f).get("chat_template")
    except (ValueError, OSError) as e:
        raise SystemExit(f"{config}: unreadable ({e})") from None
    name = template_of(chat_template) if chat_template else "tulu"
    if name is None:
        raise SystemExit(f"{config}: its chat_template is not one of nanopref's ({', '.join(TEMPLATES)}); "
                         f"pass --template= to choose one")
    return name


def fit(messages, tok, template, room):
    """The conversation's generation prompt ids, dropping the oldest exchanges (not the system message, never the
    last user message) until they fit in `room` tokens. -> (ids, messages kept), or (None, _) if nothing fits."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    while turns:
        ids, _ = encode_chat(tok, system + turns, template, add_generation_prompt=True)
        if len(ids) <= room:
            return ids, system + turns
        turns = turns[2:] if len(turns) > 2 else []
    return None, messages


def main(argv=None):
    cfg = parse_config(Config, argv)
    check_config(cfg)
    template = checkpoint_template(cfg.checkpoint) if cfg.template == "auto" else cfg.template
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.checkpoint, device=autodevice(cfg.device), dtype=getattr(torch, cfg.dtype))
    try:
        require_lm_head(model)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    tok = load_tokenizer(cfg.checkpoint, model)
    room = model.args.max_seq_len - cfg.max_new_tokens
    if room <= 0:
        raise SystemExit(f"--max_new_tokens={cfg.max_new_tokens} leaves no room for a prompt in the model's "
                         f"context of {model.args.max_seq_len} tokens")
    opening = [dict(role="system", content=cfg.system)] if cfg.system else []
    print(f"chatting with {model.checkpoint} ({template} template, temperature {cfg.temperature}, up to "
          f"{cfg.max_new_tokens} new tokens); /reset starts over, /quit leaves", flush=True)
    messages = list(opening)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return
        if not sys.stdin.isatty():
            print(line)  # echo piped input, so that the transcript reads as a conversation
        if line == "/quit":
            return
        if line == "/reset":
            messages = list(opening)
            print("(new conversation)", flush=True)
            continue
        if not line:
            continue
        ids, kept = fit(messages + [dict(role="user", content=line)], tok, template, room)
        if ids is None:
            print(f"(that message does not fit in the context with {cfg.max_new_tokens} new tokens; not sent)")
            continue
        if len(kept) < len(messages) + 1:
            print(f"(context full: dropped the {(len(messages) + 1 - len(kept)) // 2} oldest exchange(s))")
        gen = generate(model, [ids], cfg.max_new_tokens, tok.eos_id, tok.pad_id, cfg.temperature, cfg.top_k,
                       cfg.top_p)
        reply = gen.lists()[0]
        ended = bool(reply) and reply[-1] == tok.eos_id
        text = tok.decode(reply[:-1] if ended else reply)
        print(f"model> {text}" + ("" if ended else f"  [cut at {cfg.max_new_tokens} tokens]"), flush=True)
        messages = kept + [dict(role="assistant", content=text)]


if __name__ == "__main__":
    sys.exit(main())
