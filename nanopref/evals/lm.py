"""The LM interface the evaluators use, implemented with nanopref's model, tokenizer and sampler.

    lm.chat(user, assistant_prefix="") -> prompt text (chat template, or raw text for a base model)
    lm.generate(prompts, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None) -> [[completion] * n]
    lm.loglikelihood([(context, continuation), ...]) -> [sum log p(continuation | context)]
    rm.score([(user, response), ...]) -> [reward]          (RewardScorer, for judges and Best-of-N)

A prompt text is tokenised as BOS + the whole string, which for a single-turn chat prompt is exactly what
`encode_chat(..., add_generation_prompt=True)` gives, so evaluation sees the tokens training saw.
"""
import torch

from nanopref.checkpoint import load_model, load_tokenizer
from nanopref.generate import generate
from nanopref.losses import token_logps
from nanopref.model import score_last
from nanopref.tokenizer import encode_prompt_response, render_chat


class NanoprefLM:
    def __init__(self, model, tok, template="tulu", batch_size=64, max_len=None, compile=False):
        self.model, self.tok, self.template = model.eval(), tok, template
        self.batch_size, self.compile = batch_size, compile
        self.max_len = max_len or model.args.max_seq_len
        self.device = model.tok_embeddings.weight.device

    @classmethod
    def load(cls, path, device="cpu", dtype=torch.float32, **kw):
        model = load_model(path, device=device, dtype=dtype, head="lm")
        return cls(model, load_tokenizer(path, model), **kw)

    def chat(self, user, assistant_prefix=""):
        if self.template == "none":
            return user + assistant_prefix
        return render_chat([dict(role="user", content=user)], self.template, add_generation_prompt=True) \
            .removeprefix("<s>") + assistant_prefix

    def _encode_prompt(self, text):
        return self.tok.encode(text, bos=True)

    def num_tokens(self, text):
        return len(self._encode_prompt(text))

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None, desc=None):
        """n completions per prompt; text is cut at the first stop string. Prompts are batched by length; a prompt
        too long for the model keeps its last tokens (and a warning is counted in self.truncated). self.eos is left
        as [[bool] * n] per prompt: whether each completion ended with EOS (False: cut at max_new_tokens)."""
        ids = [self._encode_prompt(p) for p in prompts for _ in range(n)]
        if max_new_tokens > self.max_len // 2:  # e.g. a 512-token world model asked for GSM8K's 512 new tokens
            print(f"warning: context {self.max_len} is too short for {max_new_tokens} new tokens; "
                  f"generating {self.max_len // 2}")
            max_new_tokens = self.max_len // 2
        limit = self.max_len - max_new_tokens
        self.truncated = sum(len(x) > limit for x in ids)
        ids = [x if len(x) <= limit else [self.tok.bos_id] + x[len(x) - limit + 1:] for x in ids]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        texts, ended = [None] * len(ids), [False] * len(ids)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if desc:
            from tqdm import tqdm
            batches = tqdm(batches, desc=desc, leave=False)
        for batch in batches:
            out = generate(self.model, [ids[i] for i in batch], max_new_tokens, self.tok.eos_id, self.tok.pad_id,
                           temperature=temperature, top_p=top_p, compile=self.compile)
            for i, row in zip(batch, out.lists()):
                texts[i], ended[i] = self.tok.decode(row), bool(row) and row[-1] == self.tok.eos_id
        for i, t in enumerate(texts):
            for s in stop or []:
                if s and s in t:
                    t = t[:t.index(s)]
            texts[i] = t
        self.eos = [ended[i * n:(i + 1) * n] for i in range(len(prompts))]
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _split(self, context, continuation):
        ctx = self._encode_prompt(context)
        whole = self._encode_prompt(context + continuation)
        if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
            return ctx, whole[len(ctx):]
        return ctx, self.tok.encode(continuation, continuation=True)

    @torch.no_grad()
    def loglikelihood(self, requests):
        """Sum of log p(continuation tokens | context), one per (context, continuation). The continuation's
        tokens are those the whole string adds after the context's own tokens, as lm-eval-harness does."""
        pairs = [self._split(c, x) for c, x in requests]
        out = [0.0] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        starts = range(0, len(order), self.batch_size)
        if len(starts) > 20:
            from tqdm import tqdm
            starts = tqdm(starts, desc="log-likelihoods", leave=False)
        for b in starts:
            idx = order[b:b + self.batch_size]
            seqs = [(pairs[i][0] + pairs[i][1])[-self.max_len:] for i in idx]
            T = max(len(s) for s in seqs)
            tokens = torch.full((len(seqs), T), self.tok.pad_id, dtype=torch.long)
            mask = torch.zeros(len(seqs), T, dtype=torch.long)
            for j, (i, s) in enumerate(zip(idx, seqs)):
                tokens[j, :len(s)] = torch.as_tensor(s)
                mask[j, len(s) - len(pairs[i][1]):len(s)] = 1
            tokens, mask = tokens.to(self.device), mask.to(self.device)
            lp = (token_logps(self.model(tokens), tokens) * mask).sum(-1)
            for j, i in enumerate(idx):
                out[i] = lp[j].item()
        return out


class RewardScorer:
    """score([(user, response)]) -> rewards from a scalar-head nanopref model, read at the last real token."""

    def __init__(self, model, tok, template="tulu", batch_size=32, max_len=None):
        if model.args.head != "scalar":
            raise ValueError("RewardScorer needs a scalar-head (reward) model")
        self.model, self.tok, self.template, self.batch_size = model.eval(), tok, template, batch_size
        self.max_len = max_len or model.args.max_seq_len
        self.device = model.tok_embeddings.weight.device

    @classmethod
    def load(cls, path, device="cpu", dtype=torch.float32, **kw):
        model = load_model(path, device=device, dtype=dtype, head="scalar")
        return cls(model, load_tokenizer(path, model), **kw)

    @torch.no_grad()
    def score(self, pairs):
        seqs = []
        for user, response in pairs:
            p, r = encode_prompt_response(self.tok, [dict(role="user", content=user)], response, self.template)
            seqs.append((p + r)[-self.max_len:])
        out = []
        for b in range(0, len(seqs), self.batch_size):
            chunk = seqs[b:b + self.batch_size]
            T = max(len(s) for s in chunk)
            tokens = torch.full((len(chunk), T), self.tok.pad_id, dtype=torch.long)
            mask = torch.zeros(len(chunk), T, dtype=torch.long)
            for j, s in enumerate(chunk):
                tokens[j, :len(s)], mask[j, :len(s)] = torch.as_tensor(s), 1
            out += score_last(self.model, tokens.to(self.device), mask.to(self.device)).tolist()
        return out
