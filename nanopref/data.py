"""Data: SFT conversations, preference pairs and PPO prompts from JSONL, checked row by row as they are read,
tokenised with the chat template, padded into batches.

The schemas real data uses, so the embedded world and real files share this loader:
  SFT          {"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}   (Tulu; ends with the
               assistant)
  preferences  {"chosen": [...messages...], "rejected": [...messages...], ...}    (UltraFeedback-binarized; the
               world's files add "category" and ratings); HH-RLHF's {"chosen": str, "rejected": str}, two full
               transcripts "\\n\\nHuman: ...\\n\\nAssistant: ..." that share the prompt; or TRL's explicit prompt
               {"prompt": str | [...messages...], "chosen": str | [assistant message], "rejected": likewise}
  PPO prompts  {"messages": [..., user turn]} (a final assistant turn is dropped) or {"prompt": str | messages}
Each preference example becomes {"prompt": messages, "chosen": str, "rejected": str, **other fields}.

A malformed row is an InputError naming file:line and the field. Rows that cannot teach anything are dropped and
counted by reason: identical chosen and rejected, an empty response, HH transcripts that share no prompt, an empty
prompt; data_summary prints the counts (with the tokenizer's over-long ones) and makes 0 usable rows an error.
"""
import math
import re
from collections import Counter

import torch

from nanopref.common import InputError, jsonl_rows, print0
from nanopref.tokenizer import chat_segments, encode_chat, encode_prompt_response

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ASSISTANT = "\n\nAssistant:"


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
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(_HH_ASSISTANT, 0, n)
    if cut < 0:
        return None
    prompt = parse_hh(chosen[:cut])
    if not prompt or prompt[-1]["role"] != "user":
        return None
    return prompt, chosen[cut + len(_HH_ASSISTANT):].strip(), rejected[cut + len(_HH_ASSISTANT):].strip()


def _show(value):
    return f"{type(value).__name__} {value!r:.60}"


def check_messages(msgs, where, field, template="tulu", ends_with="assistant"):
    """A message list as the chat template needs it, or an InputError naming where, the field and the message."""
    if not isinstance(msgs, list) or not msgs:
        raise InputError(f"{where}: field {field!r} must be a non-empty list of {{role, content}} messages, "
                         f"got {_show(msgs)}")
    for j, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InputError(f"{where}: field {field!r}[{j}] must be a {{role, content}} object, got {_show(m)}")
        if m.get("role") not in ("system", "user", "assistant"):
            raise InputError(f"{where}: field {field!r}[{j}].role must be system, user or assistant, "
                             f"got {m.get('role')!r:.40}")
        if not isinstance(m.get("content"), str):
            raise InputError(f"{where}: field {field!r}[{j}].content must be a string, got {_show(m.get('content'))}")
    if msgs[-1]["role"] != ends_with:
        raise InputError(f"{where}: field {field!r} must end with a{'n' * (ends_with == 'assistant')} {ends_with} "
                         f"message, not {msgs[-1]['role']}")
    try:
        chat_segments(msgs, template, add_generation_prompt=ends_with == "user")  # the template's own rules
    except ValueError as e:
        raise InputError(f"{where}: field {field!r}: {e}") from None
    return msgs


def _prompt(value, where, template):
    """TRL's explicit "prompt": a string (one user turn; an HH-style transcript ending in 'Assistant:' is parsed) or
    a message list ending with the user turn the responses answer."""
    if isinstance(value, str):
        if value.startswith("\n\nHuman:"):
            if not value.rstrip().endswith(_HH_ASSISTANT.strip()):
                raise InputError(f"{where}: field 'prompt' is an HH transcript but does not end with 'Assistant:'")
            return check_messages(parse_hh(value.rstrip()[:-len(_HH_ASSISTANT.strip())]), where, "prompt", template,
                                  ends_with="user")
        return [dict(role="user", content=value)]
    return check_messages(value, where, "prompt", template, ends_with="user")


def _response(value, where, field):
    """TRL's explicit-prompt response: a string, or a list of exactly one assistant message."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and \
            value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str):
        return value[0]["content"]
    raise InputError(f"{where}: field {field!r} must be a string or one assistant message (the prompt is in "
                     f"'prompt'), got {_show(value)}")


def _number(row, key, where):
    v = row.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
        raise InputError(f"{where}: field {key!r} must be a finite number, got {_show(v)}")


def parse_pair(row, where, template="tulu"):
    """One preference row -> (prompt messages, chosen, rejected), or None for HH transcripts sharing no prompt."""
    for k in ("chosen", "rejected"):
        if k not in row:
            raise InputError(f"{where}: missing field {k!r}; has {sorted(row)}")
    for k in ("score_chosen", "score_rejected", "true_chosen", "true_rejected"):  # ratings the RM may fit
        _number(row, k, where)
    c, r = row["chosen"], row["rejected"]
    completions_only = isinstance(c, list) and c and isinstance(c[0], dict) and c[0].get("role") == "assistant"
    if (isinstance(c, str) and isinstance(r, str) and row.get("prompt") is not None) or completions_only:
        if row.get("prompt") is None:
            raise InputError(f"{where}: missing field 'prompt': 'chosen' holds only the response (TRL's "
                             f"explicit-prompt format)")
        return _prompt(row["prompt"], where, template), _response(c, where, "chosen"), _response(r, where, "rejected")
    if isinstance(c, str) and isinstance(r, str):  # HH-RLHF
        for k in ("chosen", "rejected"):
            if not row[k].startswith("\n\nHuman:"):
                raise InputError(f"{where}: field {k!r} is a string but not an HH-RLHF transcript (starting with "
                                 f"'\\n\\nHuman:') and the row has no 'prompt'")
        split = split_hh(c, r)
        if split is not None:
            check_messages(split[0], where, "chosen", template, ends_with="user")
        return split
    if isinstance(c, list) and isinstance(r, list):  # UltraFeedback-binarized / the world
        check_messages(c, where, "chosen", template)
        check_messages(r, where, "rejected", template)
        if c[:-1] != r[:-1]:
            raise InputError(f"{where}: chosen and rejected have different prompts (all but the last message)")
        if len(c) < 2 or c[-2]["role"] != "user":
            raise InputError(f"{where}: field 'chosen': the response must follow a user message")
        return c[:-1], c[-1]["content"], r[-1]["content"]
    raise InputError(f"{where}: chosen/rejected must both be message lists or both be strings, got "
                     f"{type(c).__name__} and {type(r).__name__}")


def load_preferences(path, limit=None, template="tulu"):
    """-> (examples, dropped: Counter {reason: rows}). The first `limit` rows of UltraFeedback-style message lists,
    HH-RLHF transcripts or TRL explicit-prompt rows; a malformed row is an InputError naming path:line."""
    out, dropped = [], Counter()
    for n, (i, row) in enumerate(jsonl_rows(path)):
        if limit is not None and n >= limit:
            break
        split = parse_pair(row, f"{path}:{i}", template)
        if split is None:
            dropped["HH transcripts sharing no prompt"] += 1
            continue
        prompt, chosen, rejected = split
        if not chosen.strip() or not rejected.strip():
            dropped["with an empty response"] += 1
        elif chosen.strip() == rejected.strip():  # the template strips responses: these tokenize identically
            dropped["with identical chosen and rejected"] += 1
        else:
            extra = {k: v for k, v in row.items() if k not in ("chosen", "rejected", "prompt")}
            out.append(dict(prompt=prompt, chosen=chosen, rejected=rejected, **extra))
    return out, dropped


def load_sft(path, limit=None, template="tulu"):
    """-> (rows, dropped: Counter {reason: rows}). Conversations with an empty assistant message are dropped."""
    out, dropped = [], Counter()
    for n, (i, row) in enumerate(jsonl_rows(path)):
        if limit is not None and n >= limit:
            break
        if "messages" not in row:
            raise InputError(f"{path}:{i}: missing field 'messages'; has {sorted(row)}")
        msgs = check_messages(row["messages"], f"{path}:{i}", "messages", template)
        if any(m["role"] == "assistant" and not m["content"].strip() for m in msgs):
            dropped["with an empty assistant message"] += 1
        else:
            out.append(row)
    return out, dropped


def load_prompts(path, template="tulu"):
    """PPO prompts -> (rows, prompts: message lists ending with a user turn, dropped: Counter {reason: rows})."""
    rows, prompts, dropped = [], [], Counter()
    for i, row in jsonl_rows(path):
        where = f"{path}:{i}"
        if "messages" in row:
            msgs = row["messages"]
            answered = isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == \
                "assistant"  # a conversation with its answer: keep the prompt part
            msgs = check_messages(msgs, where, "messages", template, ends_with="assistant" if answered else "user")
            if answered:
                msgs = check_messages(msgs[:-1], where, "messages[:-1]", template, ends_with="user")
        elif "prompt" in row:
            msgs = _prompt(row["prompt"], where, template)
        else:
            raise InputError(f"{where}: missing field 'messages' or 'prompt'; has {sorted(row)}")
        if not msgs[-1]["content"].strip():
            dropped["with an empty prompt"] += 1
            continue
        rows.append(row)
        prompts.append(msgs)
    return rows, prompts, dropped


def data_summary(what, path, n_used, dropped):
    """Print (rank 0) one line: the rows used and the rows dropped by reason (the first reason always shown);
    -> {"path", "rows", "used", "dropped"} for the run directory's data_stats.json. 0 usable rows is an error
    that gives the reasons: an unusable file must never train, or save, anything."""
    n_rows = n_used + sum(dropped.values())
    parts = [f"{n} {reason}" for k, (reason, n) in enumerate(dropped.items()) if n or k == 0]
    if n_used == 0:
        raise InputError(f"{path}: no usable {what}: " + (f"all {n_rows} rows dropped ({', '.join(parts)})"
                                                          if n_rows else "the file has no rows"))
    print0(f"data: {n_used} {what} from {path} ({', '.join(parts) or 'none'} dropped)")
    return dict(path=path, rows=n_rows, used=n_used, dropped=dict(dropped))


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
