"""Batched sampling over a preallocated static KV cache (gpt-fast style).

Prompts of different lengths are left-padded to a common length Tp, so that every row writes its t-th new token
to the same cache slot Tp + t; each row's rotary positions come from its own count of real tokens. The step has
no host sync (EOS is handled with masks, positions live on the device) and, compiled, fixed shapes: on a GPU it
can be wrapped in torch.compile(mode="reduce-overhead") (CUDA graphs) and attends over the whole static cache.
Run eagerly (the CPU default) it attends only over the Tp + t slots written so far: at batch 64 reading the KV
cache costs more than the weights, and an eager step has no graph to keep static.

The log-prob returned for each sampled token is taken under the same logits processing that sampled it
(temperature, then top-k, then top-p, as HF applies them); `score_tokens` recomputes it with a full forward.

    python -m nanopref.generate --checkpoint=out/sft --prompt="What is 2 + 3?" --temperature=0.7 --n=4
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def process_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """(..., V) logits -> fp32 logits / temperature with the tokens outside top-k and outside the top-p nucleus
    set to -inf. The nucleus is the smallest set of most likely tokens whose probability reaches top_p."""
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens; keep while it is below top_p
        drop = (before >= top_p).scatter(-1, idx, before >= top_p)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_token(logits, temperature=1.0, top_k=0, top_p=1.0):
    """(B, V) logits -> (token (B,), logprob (B,)). temperature 0 is greedy, and its log-prob is taken under the
    unprocessed distribution (temperature 1), which is what a greedy evaluation would want to report."""
    if temperature == 0:
        token = logits.argmax(-1)
        logp = F.log_softmax(logits.float(), -1)
    else:
        logp = F.log_softmax(process_logits(logits, temperature, top_k, top_p), -1)
        # Gumbel-max in its exponential form: argmax p / E with E ~ Exp(1) samples from p, and needs no
        # torch.multinomial (which syncs with the host on CUDA)
        token = (logp.exp() / torch.empty_like(logp).exponential_(1)).argmax(-1)
    return token, logp.gather(-1, token[:, None]).squeeze(-1)


def decode_step(model, token, position, cache_pos, temperature, top_k, top_p, kv_len=None):
    """One token per row: token, position (B,), cache_pos (1,) -> (next token (B,), its logprob (B,)).
    kv_len: attend only over the first kv_len cache slots (eager CPU); None: the whole static cache."""
    logits = model(token[:, None], positions=position[:, None], cache_pos=cache_pos, kv_len=kv_len)  # (B, 1, V)
    return sample_token(logits[:, -1], temperature, top_k, top_p)


_compiled_step = None


def require_lm_head(model):
    """A scalar-head model (reward or value) has no logits to sample from: say so, naming its checkpoint."""
    if model.args.head != "lm":
        name = getattr(model, "checkpoint", None) or "this model"
        raise ValueError(f"{name} is a reward model (scalar head); it cannot generate")


def left_pad(prompts, pad_id, device):
    """list of id lists -> tokens (B, Tp) left-padded, mask (B, Tp)."""
    Tp = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), Tp), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), Tp, dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            tokens[i, Tp - len(p):] = torch.as_tensor(p)
            mask[i, Tp - len(p):] = 1
    return tokens.to(device), mask.to(device)


@dataclass
class Generation:
    tokens: torch.Tensor         # (B, N) sampled ids; pad after a row's EOS
    logprobs: torch.Tensor       # (B, N) log-prob of each sampled token; 0 after EOS
    mask: torch.Tensor           # (B, N) 1 for generated tokens, EOS included
    prompt_tokens: torch.Tensor  # (B, Tp) left-padded prompts
    prompt_mask: torch.Tensor    # (B, Tp)

    def lists(self):
        """Each row's response ids (EOS included when produced)."""
        return [row[m.bool()].tolist() for row, m in zip(self.tokens.cpu(), self.mask.cpu())]


@torch.no_grad()
def generate(model, prompts, max_new_tokens, eos_id, pad_id, temperature=1.0, top_k=0, top_p=1.0,
             compile=False, stop_check_every=16):
    """Sample up to max_new_tokens for each prompt (a list of token-id lists). Rows stop at their own EOS.
    compile: wrap the decode step in torch.compile(mode="reduce-overhead") (CUDA only; ignored on CPU).
    stop_check_every: every this many steps, ask (one host sync) whether all rows are done, to stop early;
    0 never asks and always runs max_new_tokens steps."""
    global _compiled_step
    require_lm_head(model)
    device = model.tok_embeddings.weight.device
    if any(len(p) == 0 for p in prompts):
        raise ValueError("generate: empty prompt (a prompt needs at least one token, e.g. BOS)")
    tokens, mask = left_pad(prompts, pad_id, device)
    B, Tp = tokens.shape
    if Tp + max_new_tokens > model.args.max_seq_len:
        raise ValueError(f"prompt length {Tp} + max_new_tokens {max_new_tokens} exceeds the model's max_seq_len "
                         f"{model.args.max_seq_len}")
    step = decode_step
    if compile and device.type == "cuda":
        _compiled_step = _compiled_step or torch.compile(decode_step, mode="reduce-overhead", fullgraph=True)
        step = _compiled_step
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    out_logp = torch.zeros(B, max_new_tokens, device=device)
    out_mask = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    model.setup_cache(B, Tp + max_new_tokens)
    try:
        # prefill: the whole prompt at once, logits only at the last position (real for every row)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, Tp)
        cache_pos = torch.arange(Tp, device=device)
        h = model(tokens, mask=mask, positions=positions, cache_pos=cache_pos, return_hidden=True)[:, -1]  # (B, C)
        token, logp = sample_token(model.output(h), temperature, top_k, top_p)
        position, cache_pos = positions[:, -1] + 1, cache_pos[-1:] + 1
        done = torch.zeros(B, dtype=torch.bool, device=device)
        for t in range(max_new_tokens):
            out[:, t] = token.masked_fill(done, pad_id)
            out_logp[:, t] = logp.masked_fill(done, 0.0)
            out_mask[:, t] = (~done).long()
            done = done | (token == eos_id)
            if t == max_new_tokens - 1 or (stop_check_every and (t + 1) % stop_check_every == 0 and done.all()):
                break
            kv_len = None if step is not decode_step else Tp + t + 1
            token, logp = step(model, token.clone(), position, cache_pos, temperature, top_k, top_p, kv_len)
            position, cache_pos = position + 1, cache_pos + 1
    finally:
        model.clear_cache()
    return Generation(out, out_logp, out_mask, tokens, mask)


@torch.no_grad()
def score_tokens(model, prompt_tokens, prompt_mask, tokens, mask, temperature=1.0, top_k=0, top_p=1.0):
    """Full-forward log-probs (B, N) of response `tokens` after left-padded prompts, under the same logits
    processing as sampling (0 where mask is 0). The check on generate's returned log-probs."""
    seq = torch.cat([prompt_tokens, tokens], 1)  # (B, Tp + N)
    seq_mask = torch.cat([prompt_mask, mask], 1)
    logits = model(seq, mask=seq_mask)[:, prompt_tokens.shape[1] - 1:-1]  # (B, N, V): the ones predicting tokens
    if temperature == 0:
        logp = F.log_softmax(logits.float(), -1)
    else:
        logp = F.log_softmax(process_logits(logits, temperature, top_k, top_p), -1)
    return logp.gather(-1, tokens[..., None]).squeeze(-1) * mask


# -----------------------------------------------------------------------------


@dataclass
class Config:
    checkpoint: str = ""        # checkpoint directory (HF or Meta layout) with its tokenizer.model
    prompt: str = "Hello!"      # the user message
    template: str = "tulu"      # chat template: tulu, llama2, or none (raw text after BOS)
    n: int = 1                  # samples
    max_new_tokens: int = 128
    temperature: float = 0.7    # 0 for greedy
    top_k: int = 0              # 0 = off
    top_p: float = 1.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"      # float32 | bfloat16 | float16
    compile: bool = False       # compile the decode step with CUDA graphs (GPU only)


def main():
    from nanopref.checkpoint import load_model, load_tokenizer
    from nanopref.common import autodevice
    from nanopref.config import parse_config
    from nanopref.tokenizer import encode_chat
    cfg = parse_config(Config)
    if not cfg.checkpoint:
        raise SystemExit("--checkpoint=DIR is required (e.g. out/sft, made by `python train_sft.py`)")
    torch.manual_seed(cfg.seed)
    device = autodevice(cfg.device)
    model = load_model(cfg.checkpoint, device=device, dtype=getattr(torch, cfg.dtype))
    try:
        require_lm_head(model)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    tok = load_tokenizer(cfg.checkpoint, model)
    if cfg.template == "none":
        ids = tok.encode(cfg.prompt, bos=True)
    else:
        ids, _ = encode_chat(tok, [dict(role="user", content=cfg.prompt)], cfg.template, add_generation_prompt=True)
    gen = generate(model, [ids] * cfg.n, cfg.max_new_tokens, tok.eos_id, tok.pad_id, cfg.temperature, cfg.top_k,
                   cfg.top_p, compile=cfg.compile)
    for i, (row, lp) in enumerate(zip(gen.lists(), gen.logprobs.sum(-1).tolist())):
        print(f"--- sample {i} ({len(row)} tokens, logprob {lp:.2f})\n{tok.decode(row)}")


if __name__ == "__main__":
    main()
