"""Data: SFT conversations and preference pairs from JSONL, tokenised with the chat template, padded into batches.

One schema per kind, the one real data uses, so the embedded world and real files share this loader:
  SFT          {"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}         (Tulu)
  preferences  {"chosen": [...messages...], "rejected": [...messages...], ...}    (UltraFeedback-binarized; the
               world's files add "category" and aspect ratings); or HH-RLHF's {"chosen": str, "rejected": str},
               two full transcripts "\\n\\nHuman: ...\\n\\nAssistant: ..." that share the prompt.
Each preference example becomes {"prompt": messages, "chosen": str, "rejected": str, **other fields}.
"""
import re

import torch

from nanopref.common import read_jsonl
from nanopref.tokenizer import encode_chat, encode_prompt_response

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh(transcript):
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> messages [{'role': 'user', 'content': 'a'}, ...]."""
    parts = _HH_TURN.split(transcript)
    if parts[0].strip():
        raise ValueError(f"transcript does not start with '\\n\\nHuman:': {transcript[:60]!r}")
    roles, msgs = {"Human": "user", "Assistant": "assistant"}, []
    for r, c in zip(parts[1::2], parts[2::2]):
        if msgs and msgs[-1]["role"] == roles[r]:  # a few transcripts repeat a speaker: merge, so turns alternate
            msgs[-1]["content"] += "\n\n" + c.strip()
        else:
            msgs.append(dict(role=roles[r], content=c.strip()))
    return msgs


def split_hh(chosen, rejected):
    """Two HH-RLHF transcripts -> (prompt messages, chosen response, rejected response), or None when they share
    no prompt. The prompt is the longest common prefix cut back to just after its last '\n\nAssistant:'; so a
    response that itself contains an '\n\nAssistant:' line (a few do) stays whole."""
    marker = "\n\nAssistant:"
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(marker, 0, n)
    if cut < 0:
        return None
    prompt = parse_hh(chosen[:cut])
    if not prompt or prompt[-1]["role"] != "user":
        return None
    return prompt, chosen[cut + len(marker):].strip(), rejected[cut + len(marker):].strip()


def _check_messages(msgs, where, field):
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
            for m in msgs):
        raise ValueError(f"{where}: field {field!r} must be a non-empty list of {{role, content}} messages")
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"{where}: field {field!r} must end with an assistant message")


def load_preferences(path, limit=None):
    """-> (examples, n_skipped). Reads UltraFeedback-style message lists or HH-RLHF transcripts."""
    rows = read_jsonl(path, required=("chosen", "rejected"))[:limit]
    out, skipped = [], 0
    for i, row in enumerate(rows, 1):
        where = f"{path}:{i}"
        c, r = row["chosen"], row["rejected"]
        extra = {k: v for k, v in row.items() if k not in ("chosen", "rejected", "prompt")}
        if isinstance(c, str) and isinstance(r, str):  # HH-RLHF
            split = split_hh(c, r)
            if split is None:
                skipped += 1
                continue
            out.append(dict(prompt=split[0], chosen=split[1], rejected=split[2], **extra))
        elif isinstance(c, list) and isinstance(r, list):  # UltraFeedback-binarized / world
            _check_messages(c, where, "chosen")
            _check_messages(r, where, "rejected")
            if c[:-1] != r[:-1]:
                raise ValueError(f"{where}: chosen and rejected have different prompts (all but the last message)")
            out.append(dict(prompt=c[:-1], chosen=c[-1]["content"], rejected=r[-1]["content"], **extra))
        else:
            raise ValueError(f"{where}: chosen/rejected must both be message lists or both be transcripts")
    return out, skipped


def load_sft(path, limit=None):
    rows = read_jsonl(path, required=("messages",))[:limit]
    for i, row in enumerate(rows, 1):
        _check_messages(row["messages"], f"{path}:{i}", "messages")
    return rows


# -----------------------------------------------------------------------------
# tokenising and batching


def tokenize_sft(tok, rows, max_len, template="tulu"):
    """-> (list of (ids, loss_mask), n_dropped): conversations longer than max_len tokens are dropped, not cut."""
    out = []
    for row in rows:
        ids, mask = encode_chat(tok, row["messages"], template)
        if len(ids) <= max_len:
            out.append((ids, mask))
    return out, len(rows) - len(out)


def tokenize_pairs(tok, examples, max_len, template="tulu"):
    """-> (list of dicts with prompt / chosen / rejected ids, n_dropped): a pair is dropped when either
    prompt + response exceeds max_len (the paper's remove_truncated_samples)."""
    out = []
    for ex in examples:
        p, c = encode_prompt_response(tok, ex["prompt"], ex["chosen"], template)
        _, r = encode_prompt_response(tok, ex["prompt"], ex["rejected"], template)
        if len(p) + max(len(c), len(r)) <= max_len:
            out.append(dict(prompt=p, chosen=c, rejected=r, example=ex))
    return out, len(examples) - len(out)


def pad_right(seqs, masks, pad_id):
    """Lists of ids and loss masks -> tokens (B, T) right-padded with pad_id, loss_mask (B, T), attn (B, T).
    With right padding, real positions never attend to pads, so training forwards may skip the mask."""
    T = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    loss_mask = torch.zeros(len(seqs), T, dtype=torch.long)
    attn = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        tokens[i, :len(s)] = torch.as_tensor(s)
        loss_mask[i, :len(s)] = torch.as_tensor(m)
        attn[i, :len(s)] = 1
    return tokens, loss_mask, attn


def pair_batch(pairs, pad_id):
    """Pairs -> one right-padded batch of 2B sequences, chosen first then rejected, so one forward serves both:
    tokens, loss_mask, attn, each (2B, T)."""
    seqs, masks = [], []
    for side in ("chosen", "rejected"):
        for p in pairs:
            seqs.append(p["prompt"] + p[side])
            masks.append([0] * len(p["prompt"]) + [1] * len(p[side]))
    return pad_right(seqs, masks, pad_id)
