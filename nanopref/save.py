"""Models out, in the HF layout (config.json + safetensors, sharded above 2 GiB; tokenizer.model and
tokenizer_config.json with the chat template), loadable by transformers as LlamaForCausalLM /
LlamaForSequenceClassification and servable by vLLM; and directories replaced so that a kill at any instant leaves
either the old or the new complete one (the DONE marker is written last and removed first)."""
import json
import os
import shutil

from safetensors.torch import save_file

from nanopref.checkpoint import _HF_NAMES, _rename, permute_to_hf
from nanopref.common import fault_point
from nanopref.model import ModelArgs
from nanopref.tokenizer import hf_tokenizer_files


def hf_config(args: ModelArgs, dtype, tok=None):
    cfg = {
        "architectures": ["LlamaForCausalLM" if args.head == "lm" else "LlamaForSequenceClassification"],
        "model_type": "llama", "hidden_size": args.dim, "intermediate_size": args.ffn_hidden,
        "num_hidden_layers": args.n_layers, "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads, "head_dim": args.head_dim, "vocab_size": args.vocab_size,
        "rms_norm_eps": args.norm_eps, "rope_theta": args.rope_theta, "rope_scaling": None,
        "max_position_embeddings": args.max_seq_len, "tie_word_embeddings": args.tie_embeddings,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "initializer_range": 0.02,
        "bos_token_id": tok.bos_id if tok else 1, "eos_token_id": tok.eos_id if tok else 2,
        "pad_token_id": tok.pad_id if tok else 0, "use_cache": True,
        "torch_dtype": str(dtype).replace("torch.", ""), "dtype": str(dtype).replace("torch.", ""),
    }
    if args.head == "scalar":
        cfg.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    return cfg


def write_model(model, path, tokenizer=None, max_shard_bytes=2 * 1024**3, dtype=None, state=None, template="tulu"):
    """Write the HF layout (config.json, model.safetensors or sharded model-0000i-of-0000n.safetensors + index; with a
    tokenizer, tokenizer.model + tokenizer_config.json with `template`) into the directory `path`. state: a full state
    dict to write instead of model.state_dict() (e.g. gathered from FSDP shards)."""
    args = model.args
    state = {k: v.detach() for k, v in (state if state is not None else model.state_dict()).items()}
    if args.tie_embeddings:
        state.pop("output.weight", None)  # HF re-ties lm_head to embed_tokens from tie_word_embeddings
    dtype = dtype or state["tok_embeddings.weight"].dtype
    hf = {}
    for name, t in state.items():
        if name.endswith(("attention.wq.weight", "attention.wk.weight")):  # rotary pairs -> HF's halves
            t = permute_to_hf(t, args.n_heads if name.endswith("wq.weight") else args.n_kv_heads)
        hf[_rename(name, _HF_NAMES)] = t.to("cpu", dtype).contiguous().clone()
    shards, size = [[]], 0
    for name, t in hf.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards, size = shards + [[]], 0
        shards[-1].append(name)
        size += nbytes
    weight_map = {}
    for i, names in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: hf[n] for n in names}, os.path.join(path, fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in names})
    files = {"config.json": hf_config(args, dtype, tokenizer)}
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in hf.values())
        files["model.safetensors.index.json"] = {"metadata": {"total_size": total}, "weight_map": weight_map}
    if tokenizer is not None:
        shutil.copyfile(tokenizer.path, os.path.join(path, "tokenizer.model"))
        files.update(hf_tokenizer_files(tokenizer, template, args.max_seq_len))
    for name, obj in files.items():
        with open(os.path.join(path, name), "w") as f:
            json.dump(obj, f, indent=2)


def save_model(model, path, tokenizer=None, max_shard_bytes=2 * 1024**3, dtype=None, state=None, template="tulu"):
    """write_model atomically: into a temp directory renamed over `path` at the end."""
    tmp = path.rstrip("/") + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_model(model, tmp, tokenizer, max_shard_bytes, dtype, state, template)
    replace_dir(tmp, path)


DONE = "DONE"  # written last into a run's checkpoint or final model: the directory is complete ({"step": N})


def remove_dir(path):
    """Delete a directory so that no kill midway leaves it looking complete: its DONE marker goes first."""
    if not os.path.isdir(path):
        return
    if os.path.exists(os.path.join(path, DONE)):
        os.remove(os.path.join(path, DONE))
    fault_point("remove:" + os.path.basename(path))
    shutil.rmtree(path, ignore_errors=True)


def replace_dir(tmp, path):
    """Move directory tmp to path, replacing any old one, so that `path` is always either the old or the new
    complete directory (a kill between the two renames leaves the old one at path + '.old' and the new at tmp:
    runs.recover picks the newer)."""
    old = path.rstrip("/") + ".old"
    remove_dir(old)
    if os.path.exists(path):
        os.rename(path, old)
    fault_point("replace_dir:between_renames")
    os.rename(tmp, path)
    remove_dir(old)
