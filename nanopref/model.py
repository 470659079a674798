"""Llama-2, written out in one file with Meta's parameter names (tok_embeddings, layers.N.attention.wq/wk/wv/wo,
feed_forward.w1/w2/w3, attention_norm, ffn_norm, norm, output), so Meta checkpoints load as they are and HF ones
through one name map plus the q/k permutation (checkpoint.py).

Conventions: B batch, T query length, S key length, L cache length, H query heads, K key/value heads, D head dim,
C model dim, V vocab. `mask` is 1 for real tokens and 0 for padding, on either side. Rotary positions are derived
from the mask (cumsum - 1), so a left-padded row and the same row unpadded see the same positions.

The model has one of two heads: `output` (C -> V, the language-model head, optionally tied to the embedding) or
`score` (C -> 1, the scalar head of reward and value models, as in HF's LlamaForSequenceClassification).
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelArgs:
    dim: int = 4096                             # C
    n_layers: int = 32
    n_heads: int = 32                           # H
    n_kv_heads: Optional[int] = None            # K (grouped-query attention); None means K = H
    vocab_size: int = 32000                     # V
    multiple_of: int = 256                      # Meta's rule: FFN hidden size rounded up to this
    ffn_dim_multiplier: Optional[float] = None  # Meta's rule: scales 8C/3 before rounding (1.3 for 70B)
    hidden_dim: Optional[int] = None            # explicit FFN hidden size (HF's intermediate_size); overrides the rule
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 4096                     # size of the rotary table; positions must stay below it
    tie_embeddings: bool = False                # output.weight is tok_embeddings.weight
    head: str = "lm"                            # "lm" (logits over V) or "scalar" (one number per position)

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head dim {self.dim // self.n_heads} must be even for rotary embeddings")
        if self.head not in ("lm", "scalar"):
            raise ValueError(f"head must be 'lm' or 'scalar', got {self.head!r}")

    @property
    def head_dim(self):
        return self.dim // self.n_heads

    @property
    def ffn_hidden(self):
        if self.hidden_dim is not None:
            return self.hidden_dim
        h = int(2 * (4 * self.dim) / 3)  # SwiGLU has 3 matrices: keep params ~ a 4C MLP
        if self.ffn_dim_multiplier is not None:
            h = int(self.ffn_dim_multiplier * h)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)


# Named presets. Tiny ones are for tests and the embedded CPU world (vocab_size is set from the tokenizer there).
PRESETS = {
    "test":       dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, multiple_of=32, max_seq_len=256),
    "tiny":       dict(dim=128, n_layers=4, n_heads=4, vocab_size=2048, multiple_of=64, max_seq_len=512),
    "small":      dict(dim=256, n_layers=6, n_heads=8, vocab_size=2048, multiple_of=64, max_seq_len=512),
    "bench-20m":  dict(dim=256, n_layers=8, n_heads=8, vocab_size=32000, multiple_of=256, max_seq_len=1024),
    "llama2-7b":  dict(dim=4096, n_layers=32, n_heads=32, vocab_size=32000, multiple_of=256),
    "llama2-13b": dict(dim=5120, n_layers=40, n_heads=40, vocab_size=32000, multiple_of=256),
    "llama2-70b": dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=32000, multiple_of=4096,
                       ffn_dim_multiplier=1.3),
}


def model_args(preset, **overrides):
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return ModelArgs(**{**PRESETS[preset], **overrides})


# -----------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()  # normalise in fp32 whatever the compute dtype, as Meta does
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_table(head_dim, max_seq_len, theta):
    """cos and sin of position * frequency, each (max_seq_len, D/2), in fp32."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64, device="cpu"), freqs)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):
    """Rotate consecutive pairs (x[2i], x[2i+1]) by position * freq_i: Meta's complex-number convention.
    x: (B, T, H, D); cos, sin: (B, T, 1, D/2)."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, T, H, D/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)  # (B, T, H, D/2, 2)
    return out.flatten(-2).type_as(x)


class KVCache(nn.Module):
    """Preallocated keys and values for one layer: fixed shapes, written in place at `cache_pos`."""

    def __init__(self, batch_size, max_len, n_kv_heads, head_dim, dtype, device):
        super().__init__()
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, cache_pos, k, v, kv_len=None):
        # cache_pos: (T,) slots shared by all rows (prompts are left-padded to a common length); k, v: (B, K, T, D)
        self.k.index_copy_(2, cache_pos, k)
        self.v.index_copy_(2, cache_pos, v)
        return self.k[:, :, :kv_len], self.v[:, :, :kv_len]  # (B, K, L, D), or only the first kv_len slots


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.cache: Optional[KVCache] = None

    def forward(self, x, cos, sin, attn_mask, cache_pos=None, kv_len=None):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)     # (B, T, H, D)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, D)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, K, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)    # rotate by each token's position
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|K, T, D)
        if cache_pos is not None:  # decoding: write this step's keys/values, attend over the whole cache
            k, v = self.cache.update(cache_pos, k, v, kv_len)  # (B, K, L, D)
        # each of the H query heads reads key/value head h // (H/K); attn_mask: (B, 1, T, S), True = may attend
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_heads != self.n_kv_heads)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               enable_gqa=self.n_heads != self.n_kv_heads)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, H*D)
        return self.wo(y)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.ffn_hidden, bias=False)  # gate
        self.w2 = nn.Linear(args.ffn_hidden, args.dim, bias=False)  # down
        self.w3 = nn.Linear(args.dim, args.ffn_hidden, bias=False)  # up

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # SwiGLU


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    grad_ckpt = False  # activation checkpointing: keep only this block's input, recompute the rest in backward

    def forward(self, x, cos, sin, attn_mask, cache_pos=None, kv_len=None):
        if self.grad_ckpt and torch.is_grad_enabled() and cache_pos is None:
            # Inside the block's own forward, so under FSDP2 the all-gather hooks on the block stay outside the
            # checkpointed region (re-gathered once for backward, recompute included). Only when gradients are
            # on: frozen models and sampling save nothing anyway. No RNG to replay: the block draws none.
            return checkpoint(self._forward, x, cos, sin, attn_mask, use_reentrant=False, preserve_rng_state=False)
        return self._forward(x, cos, sin, attn_mask, cache_pos, kv_len)

    def _forward(self, x, cos, sin, attn_mask, cache_pos=None, kv_len=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, attn_mask, cache_pos, kv_len)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        if args.head == "lm":
            self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
            if args.tie_embeddings:
                self.output.weight = self.tok_embeddings.weight
        else:
            self.score = nn.Linear(args.dim, 1, bias=False)
        self.init_rope()
        self.register_buffer("key_mask", None, persistent=False)  # (B, L) bool: cache slots holding real tokens

    def init_rope(self):
        """(Re)build the rotary tables; call after materialising a model built on the meta device."""
        device = self.tok_embeddings.weight.device
        device = torch.device("cpu") if device.type == "meta" else device
        cos, sin = rope_table(self.args.head_dim, self.args.max_seq_len, self.args.rope_theta)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    def init_weights(self, std=0.02):
        """Fresh init for training from scratch: N(0, std), residual projections scaled by 1/sqrt(2 n_layers)
        (GPT-2), norms at 1, scalar head N(0, 1/sqrt(C+1))."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name == "score.weight":
                nn.init.normal_(p, std=1 / math.sqrt(self.args.dim + 1))
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.args.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def setup_cache(self, batch_size, max_len, dtype=None, device=None):
        """Allocate a static KV cache of L = max_len slots per layer (and the key mask); drop it with clear_cache."""
        if max_len > self.args.max_seq_len:
            raise ValueError(f"cache length {max_len} exceeds max_seq_len {self.args.max_seq_len}")
        w = self.tok_embeddings.weight
        dtype, device = dtype or w.dtype, device or w.device
        for layer in self.layers:
            layer.attention.cache = KVCache(batch_size, max_len, self.args.n_kv_heads, self.args.head_dim, dtype, device)
        self.register_buffer("key_mask", torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
                             persistent=False)

    def clear_cache(self):
        for layer in self.layers:
            layer.attention.cache = None
        self.key_mask = None

    def forward(self, tokens, mask=None, positions=None, cache_pos=None, kv_len=None, return_hidden=False):
        """tokens (B, T) -> logits (B, T, V) for the lm head, scores (B, T) for the scalar head, or with
        return_hidden the final normalised hidden states (B, T, C).

        Full forward (cache_pos None): causal attention; `mask` (B, T) marks real tokens, so left padding is
        handled (pad keys are hidden, positions come from the mask). With mask None every token is real.
        Cached forward: `cache_pos` (T,) are the cache slots to write (the same for every row), `positions`
        (B, T) the rotary positions, and `mask` (B, T) which of these new tokens are real; queries attend to
        earlier real slots of the cache (setup_cache first), all L of them, or the first kv_len if given."""
        B, T = tokens.shape
        if cache_pos is None:
            if positions is None:
                positions = torch.arange(T, device=tokens.device).expand(B, T) if mask is None else \
                    (mask.long().cumsum(-1) - 1).clamp(min=0)
            attn_mask = None
            if mask is not None:  # causal AND key is real; every query also sees itself so pad rows stay finite
                causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
                attn_mask = causal & mask.bool()[:, None, :] | torch.eye(T, dtype=torch.bool, device=tokens.device)
                attn_mask = attn_mask[:, None]  # (B, 1, T, T)
        else:
            new = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
            self.key_mask.index_copy_(1, cache_pos, new)  # (B, L): these slots now hold real tokens or not
            L = kv_len or self.key_mask.shape[1]
            slots = torch.arange(L, device=tokens.device)
            attn_mask = (slots[None, :] <= cache_pos[:, None])[None] & self.key_mask[:, None, :L]  # (B, T, L)
            attn_mask = (attn_mask | (slots[None, :] == cache_pos[:, None])[None])[:, None]  # (B, 1, T, L)
        cos = self.rope_cos[positions][:, :, None, :]  # (B, T, 1, D/2)
        sin = self.rope_sin[positions][:, :, None, :]
        h = self.tok_embeddings(tokens)  # (B, T, C)
        for layer in self.layers:
            h = layer(h, cos, sin, attn_mask, cache_pos, kv_len)
        h = self.norm(h)  # (B, T, C)
        if return_hidden:
            return h
        if self.args.head == "scalar":
            return self.score(h).squeeze(-1)  # (B, T)
        return self.output(h)  # (B, T, V)


def last_real_index(mask):
    """(B, T) mask -> (B,) index of each row's last real token, for left or right padding alike. The one
    definition of "last real token": where reward models are read, and where PPO puts the score."""
    T = mask.shape[-1]
    return (mask.long() * torch.arange(1, T + 1, device=mask.device)).argmax(-1)


def score_last(model, tokens, mask):
    """Scalar-head model: the score read at each sequence's last real token, (B,). Read from the position of the
    last real token, never "first pad - 1", so it holds for left padding, right padding and pad-free rows."""
    scores = model(tokens, mask=mask)  # (B, T)
    return scores.gather(1, last_real_index(mask)[:, None]).squeeze(1)


def num_params(model, exclude_embeddings=False):
    n = sum(p.numel() for p in model.parameters())
    if exclude_embeddings:
        n -= model.tok_embeddings.weight.numel()
    return n
