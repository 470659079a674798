"""Llama-2 checkpoints in (HF layout: config.json + safetensors, sharded or not, or pytorch_model*.bin; Meta layout:
params.json + consolidated.NN.pth, merging model-parallel shards) and out (HF layout, loadable by transformers as
LlamaForCausalLM / LlamaForSequenceClassification and servable by vLLM).

HF's conversion script permutes the rows of wq and wk so that rotary embeddings can rotate the two *halves* of
each head (rotate_half); Meta's code rotates *consecutive pairs*. We keep Meta's convention in the model, so
loading an HF checkpoint undoes the permutation and saving redoes it.

Every problem with a checkpoint (missing, truncated or corrupt files, a config that is not a plain Llama-2, a reward
model where a policy belongs) is an InputError naming the path: a clear exit before any training, not a traceback.
"""
import glob
import os
import re

import torch
from safetensors import safe_open

from nanopref.common import InputError, read_json
from nanopref.model import ModelArgs, Transformer
from nanopref.tokenizer import Tokenizer

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# ours -> HF, with {} for the layer index
_HF_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "score.weight": "score.weight",
    "layers.{}.attention.wq.weight": "model.layers.{}.self_attn.q_proj.weight",
    "layers.{}.attention.wk.weight": "model.layers.{}.self_attn.k_proj.weight",
    "layers.{}.attention.wv.weight": "model.layers.{}.self_attn.v_proj.weight",
    "layers.{}.attention.wo.weight": "model.layers.{}.self_attn.o_proj.weight",
    "layers.{}.feed_forward.w1.weight": "model.layers.{}.mlp.gate_proj.weight",
    "layers.{}.feed_forward.w2.weight": "model.layers.{}.mlp.down_proj.weight",
    "layers.{}.feed_forward.w3.weight": "model.layers.{}.mlp.up_proj.weight",
    "layers.{}.attention_norm.weight": "model.layers.{}.input_layernorm.weight",
    "layers.{}.ffn_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
}
_FROM_HF = {v: k for k, v in _HF_NAMES.items()}


def _rename(name, table):
    m = re.match(r"^(.*layers)\.(\d+)\.(.*)$", name)
    key = f"{m.group(1)}.{{}}.{m.group(3)}" if m else name
    if key not in table:
        return None
    return table[key].format(m.group(2)) if m else table[key]


def permute_to_hf(w, n_heads):
    """(H*D, C) rows ordered as consecutive rotary pairs per head -> rows ordered as two halves per head."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def permute_from_hf(w, n_heads):
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


# -----------------------------------------------------------------------------
# HF layout


def args_from_hf_config(cfg, where="config.json"):
    if not isinstance(cfg, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("model_type", "llama") != "llama":
        raise InputError(f"{where}: model_type {cfg.get('model_type')!r} is not llama")
    bad = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
           if not (type(cfg.get(k)) is int and cfg[k] > 0)]
    if bad:
        raise InputError(f"{where}: " + ", ".join(f"{k}={cfg.get(k, 'missing')!r}" for k in bad) +
                         ": each must be a positive integer")
    arch = (cfg.get("architectures") or ["LlamaForCausalLM"])[0]
    if arch not in ("LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaForTokenClassification"):
        raise InputError(f"{where}: unsupported architecture {arch}")
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or ({} if rope.get("rope_type", "default") == "default" else rope)
    problems = [f"{k}={cfg.get(k)!r}" for k, ok in [("hidden_act", "silu"), ("attention_bias", False),
                                                    ("mlp_bias", False)] if cfg.get(k, ok) != ok]
    if scaling:
        problems.append(f"rope scaling {scaling}")
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if head_dim * cfg["num_attention_heads"] != cfg["hidden_size"]:
        problems.append(f"head_dim {head_dim} * heads != hidden_size")
    if arch != "LlamaForCausalLM" and cfg.get("num_labels", len(cfg.get("id2label") or [0])) != 1:
        problems.append(f"{arch} with num_labels != 1")
    if problems:
        raise InputError(f"{where}: not a plain Llama-2 ({', '.join(problems)})")
    try:
        return ModelArgs(
            dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], n_heads=cfg["num_attention_heads"],
            n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"], vocab_size=cfg["vocab_size"],
            hidden_dim=cfg["intermediate_size"], norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            max_seq_len=cfg.get("max_position_embeddings", 4096),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            head="lm" if arch == "LlamaForCausalLM" else "scalar")
    except (ValueError, TypeError) as e:  # ModelArgs' own checks (heads dividing dim, ...)
        raise InputError(f"{where}: {e}") from None


def _weights(fpath):
    """{name: tensor} of one weights file (.safetensors, .bin, .pth); a truncated or corrupt one is an InputError."""
    try:
        if fpath.endswith(".safetensors"):
            with safe_open(fpath, framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        return torch.load(fpath, map_location="cpu", weights_only=True, mmap=fpath.endswith(".pth"))
    except Exception as e:  # SafetensorError, torch's zip and pickle errors: name the file, not torch's internals
        raise InputError(f"{fpath}: cannot read the weights, truncated or corrupt? ({str(e).splitlines()[0]})"
                         ) from None


def _read_hf_tensors(path):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(f"{index}: no 'weight_map' object")
        files = sorted(set(weight_map.values()))
    else:
        files = [os.path.basename(p) for p in sorted(glob.glob(os.path.join(path, "*.safetensors")))]
    tensors = {}
    for fname in files:
        fpath = os.path.join(path, fname)
        if not os.path.exists(fpath):
            raise InputError(f"{fpath}: listed in {index} but missing")
        tensors.update({k: (v, fpath) for k, v in _weights(fpath).items()})
    if not files:  # older checkpoints: pytorch_model.bin or pytorch_model-0000N-of-0000M.bin
        for fpath in sorted(glob.glob(os.path.join(path, "pytorch_model*.bin"))):
            tensors.update({k: (v, fpath) for k, v in _weights(fpath).items()})
    if not tensors:
        raise InputError(f"{path}: config.json but no *.safetensors or pytorch_model*.bin weights")
    return tensors


def _load_hf(path, args):
    state = {}
    for hf_name, (t, fpath) in _read_hf_tensors(path).items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some old exports saved; we compute our own
        name = _rename(hf_name, _FROM_HF)
        if name is None:
            raise InputError(f"{fpath}: unexpected tensor {hf_name}")
        if name.endswith("attention.wq.weight"):
            t = permute_from_hf(t, args.n_heads)
        elif name.endswith("attention.wk.weight"):
            t = permute_from_hf(t, args.n_kv_heads)
        state[name] = (t, fpath)
    return args, state


# -----------------------------------------------------------------------------
# Meta layout

# how fairscale's model parallelism split each tensor across consolidated.NN.pth: concat dim, or None (replicated)
_META_SPLIT = {"tok_embeddings": 1, "output": 0, "wq": 0, "wk": 0, "wv": 0, "wo": 1, "w1": 0, "w2": 1, "w3": 0}


def _meta_params(path):
    where = os.path.join(path, "params.json")
    params = read_json(where)
    if not isinstance(params, dict) or not all(type(params.get(k)) is int and params[k] > 0 for k in ("dim", "n_layers",
                                                                                                     "n_heads")):
        raise InputError(f"{where}: dim, n_layers and n_heads must be positive integers")
    return params


def _load_meta(path):
    params = _meta_params(path)
    files = sorted(glob.glob(os.path.join(path, "consolidated.*.pth")))
    if not files:
        raise InputError(f"{path}: params.json but no consolidated.NN.pth shards")
    shards = [_weights(p) for p in files]
    state = {}
    for name in shards[0]:
        if name == "rope.freqs":
            continue
        parts = [s[name] for s in shards]
        dim = _META_SPLIT.get(name.split(".")[-2])
        t = parts[0] if dim is None or len(parts) == 1 else torch.cat(parts, dim=dim)
        state[name] = (t, files[0] if len(files) == 1 else f"{path}/consolidated.*.pth")
    vocab = params.get("vocab_size", -1)
    emb = state["tok_embeddings.weight"][0].shape
    known = {k: params[k] for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of", "ffn_dim_multiplier",
                                    "norm_eps", "rope_theta") if params.get(k) is not None}
    args = ModelArgs(**known, vocab_size=vocab if vocab > 0 else emb[0], max_seq_len=params.get("max_seq_len", 4096),
                     tie_embeddings="output.weight" not in state)
    return args, state


# -----------------------------------------------------------------------------


def resolve(path, name=None):
    """A checkpoint directory, or a nanopref run directory (out/sft) whose final model is in path/model.
    name: how the message names it (e.g. --init=path)."""
    if not os.path.exists(path):
        raise InputError(f"checkpoint directory not found: {name or path}")
    if not os.path.isdir(path):
        raise InputError(f"{name or path}: a file, not a checkpoint directory (give the one holding config.json)")
    if not any(os.path.exists(os.path.join(path, f)) for f in ("config.json", "params.json")) and \
            os.path.exists(os.path.join(path, "model", "config.json")):
        return os.path.join(path, "model")
    return path


HEADS = dict(lm="a policy (language-model head)", scalar="a reward or value model (scalar head)")


def model_config(path, head=None, flag=None):
    """-> ModelArgs of a checkpoint from its config.json or params.json alone (no weights read: a cheap check before
    any work). head: "lm" or "scalar", the kind of model the caller needs. flag: the option that named the path,
    for the message."""
    name = f"{flag}={path}" if flag else path
    path = resolve(path, name)
    if os.path.exists(os.path.join(path, "config.json")):
        args = args_from_hf_config(read_json(os.path.join(path, "config.json")), os.path.join(path, "config.json"))
    elif os.path.exists(os.path.join(path, "params.json")):
        args = ModelArgs(vocab_size=_meta_params(path).get("vocab_size", -1))  # all language models; -1: see weights
    else:
        ckpt = os.path.join(path, "ckpt")
        hint = f"; {ckpt} holds an unfinished run: run it again to finish it" if os.path.isdir(ckpt) else ""
        raise InputError(f"{name}: neither config.json (HF layout) nor params.json (Meta layout) found{hint}")
    if head is not None and args.head != head:
        raise InputError(f"{name}: {HEADS[args.head]}, but {HEADS[head]} is needed here")
    return args


def load_model(path, device="cpu", dtype=None, head=None):
    """Load a Llama-2 checkpoint directory (HF or Meta layout, or a nanopref run directory) into a Transformer.
    head: "lm" or "scalar" to insist on that kind of model."""
    args = model_config(path, head)
    path = resolve(path)
    args, state = _load_hf(path, args) if os.path.exists(os.path.join(path, "config.json")) else _load_meta(path)
    with torch.device("meta"):
        model = Transformer(args)
    expected = model.state_dict()
    if args.tie_embeddings:
        expected.pop("output.weight", None)
        state.pop("output.weight", None)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path}: tensors missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for name, (t, fpath) in state.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise InputError(f"{fpath}: tensor {name} has shape {tuple(t.shape)}, but the config implies "
                             f"{tuple(expected[name].shape)}")
    tensors = {k: t.to(device=device, dtype=dtype or t.dtype) for k, (t, _) in state.items()}
    model.load_state_dict(tensors, strict=not args.tie_embeddings, assign=True)
    if args.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight
    model.init_rope()
    model.checkpoint = path  # named in errors, e.g. when a reward model is asked to generate
    return model.eval()


def tokenizer_file(path):
    """The tokenizer.model of a checkpoint directory (or its parent, Meta's download layout), or path itself if it
    is a file; None if there is none."""
    path = resolve(path) if os.path.isdir(path) else path
    for cand in (os.path.join(path, "tokenizer.model"), os.path.join(path, "..", "tokenizer.model"), path):
        if os.path.isfile(cand):
            return os.path.normpath(cand)
    return None


def load_tokenizer(path, model=None):
    """tokenizer.model from a checkpoint directory (or its parent), checked against the model's vocabulary."""
    cand = tokenizer_file(path)
    if cand is None:
        raise InputError(f"no tokenizer.model in {path} or its parent")
    try:
        tok = Tokenizer(cand)
    except (RuntimeError, OSError, ValueError) as e:  # sentencepiece's "unable to parse" and friends
        raise InputError(f"{cand}: not a usable SentencePiece model ({str(e).splitlines()[0]})") from None
    if model is not None:
        check_tokenizer(tok, model)
    return tok


def check_tokenizer(tok, model):
    if tok.vocab_size != model.args.vocab_size:
        raise InputError(f"tokenizer {tok.path} has {tok.vocab_size} tokens but the model's vocabulary is "
                         f"{model.args.vocab_size}: they do not belong together")


def check_same_tokenizer(path, flag, base, base_flag):
    """The checkpoint at path (given as flag) must read the token ids of the one at base: the same vocabulary size
    and, where both have one, the same tokenizer.model bytes. A reference or reward model with another tokenizer
    would otherwise score other tokens than the policy's, silently."""
    a, b = tokenizer_file(path), tokenizer_file(base)
    va, vb = model_config(path).vocab_size, model_config(base).vocab_size
    if va > 0 and vb > 0 and va != vb:
        raise InputError(f"{flag}={path} has a vocabulary of {va} tokens, {base_flag}={base} one of {vb}: "
                         f"it must read the same token ids")
    if a and b:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            if fa.read() != fb.read():
                raise InputError(f"{flag}={path} has a different tokenizer from {base_flag}={base} ({a} and {b} "
                                 f"differ): it must read the same token ids")
