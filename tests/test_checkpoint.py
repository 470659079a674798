"""Checkpoints: Meta layout == HF layout, save -> load exact, transformers loads what we save, clear errors."""
import json
import os
import shutil

import pytest
import torch

from nanopref.checkpoint import check_tokenizer, load_model, load_tokenizer, save_model
from nanopref.common import InputError
from nanopref.model import Transformer, model_args, score_last
from nanopref.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


def random_hf(path, n_heads=4, n_kv=2, tied=False, theta=10000.0):
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                   num_attention_heads=n_heads, num_key_value_heads=n_kv, rope_theta=theta,
                                   tie_word_embeddings=tied, max_position_embeddings=128, rms_norm_eps=1e-5)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.15)
    ref.save_pretrained(path)
    return ref, cfg


def hf_rows_to_meta(w, n_heads):
    """Undo HF's q/k row permutation by explicit index bookkeeping (independent of checkpoint.py's reshapes):
    within a head, Meta row 2i+j (pair i, element j) is HF row j*D/2 + i."""
    D = w.shape[0] // n_heads
    index = [h * D + j * (D // 2) + i for h in range(n_heads) for i in range(D // 2) for j in range(2)]
    return w[index]


def write_meta(ref, cfg, path, n_shards):
    """Meta layout written from the HF weights: params.json + consolidated.NN.pth split as fairscale's model
    parallelism splits them (column-parallel on dim 0, row-parallel and the embedding on dim 1)."""
    sd = ref.state_dict()
    L, H, K = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    meta = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
            "output.weight": sd["lm_head.weight"], "rope.freqs": torch.zeros(8)}
    for i in range(L):
        p = f"model.layers.{i}."
        meta.update({
            f"layers.{i}.attention.wq.weight": hf_rows_to_meta(sd[p + "self_attn.q_proj.weight"], H),
            f"layers.{i}.attention.wk.weight": hf_rows_to_meta(sd[p + "self_attn.k_proj.weight"], K),
            f"layers.{i}.attention.wv.weight": sd[p + "self_attn.v_proj.weight"],
            f"layers.{i}.attention.wo.weight": sd[p + "self_attn.o_proj.weight"],
            f"layers.{i}.feed_forward.w1.weight": sd[p + "mlp.gate_proj.weight"],
            f"layers.{i}.feed_forward.w2.weight": sd[p + "mlp.down_proj.weight"],
            f"layers.{i}.feed_forward.w3.weight": sd[p + "mlp.up_proj.weight"],
            f"layers.{i}.attention_norm.weight": sd[p + "input_layernorm.weight"],
            f"layers.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
        })
    split = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1, "tok_embeddings": 1}
    os.makedirs(path)
    for r in range(n_shards):
        shard = {}
        for k, v in meta.items():
            d = split.get(k.split(".")[-2])
            shard[k] = v.clone() if d is None else v.chunk(n_shards, dim=d)[r].clone()
        torch.save(shard, os.path.join(path, f"consolidated.{r:02d}.pth"))
    # ffn_dim_multiplier chosen so that Meta's rule gives intermediate_size 160 for dim 64
    params = dict(dim=64, n_layers=L, n_heads=H, n_kv_heads=K, vocab_size=-1, multiple_of=32,
                  ffn_dim_multiplier=0.94, norm_eps=1e-5, rope_theta=cfg.rope_parameters["rope_theta"])
    with open(os.path.join(path, "params.json"), "w") as f:
        json.dump(params, f)


@pytest.mark.parametrize("n_shards", [1, 2])
def test_meta_layout_equals_hf_layout(tmp_path, n_shards):
    ref, cfg = random_hf(tmp_path / "hf")
    write_meta(ref, cfg, tmp_path / "meta", n_shards)
    a, b = load_model(str(tmp_path / "hf")), load_model(str(tmp_path / "meta"))
    assert a.args.ffn_hidden == b.args.ffn_hidden == 160
    x = torch.randint(0, 101, (2, 30))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("tied", [False, True])
def test_save_load_exact_and_transformers_reads_it(tmp_path, tied):
    random_hf(tmp_path / "hf", tied=tied, theta=50000.0)
    model = load_model(str(tmp_path / "hf"))
    save_model(model, str(tmp_path / "ours"), max_shard_bytes=40_000)  # forces several shards + index
    files = os.listdir(tmp_path / "ours")
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 1
    again = load_model(str(tmp_path / "ours"))
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "ours")).eval()
    x = torch.randint(0, 101, (2, 30))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert (hf(x).logits - model(x)).abs().max() <= 1e-5


def test_scalar_head_checkpoint(tmp_path):
    torch.manual_seed(0)
    rm = Transformer(model_args("test", head="scalar")).eval()
    rm.init_weights()
    save_model(rm, str(tmp_path / "rm"))
    again = load_model(str(tmp_path / "rm"))
    assert again.args.head == "scalar"
    hf = transformers.LlamaForSequenceClassification.from_pretrained(str(tmp_path / "rm")).eval()
    x = torch.randint(3, 500, (2, 11))
    mask = torch.ones_like(x)
    with torch.no_grad():
        ours = score_last(again, x, mask)
        assert torch.equal(ours, score_last(rm, x, mask))
        assert (hf(x, attention_mask=mask).logits[:, 0] - ours).abs().max() <= 1e-5


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(InputError, match="neither config.json"):
        load_model(str(tmp_path / "empty"))
    random_hf(tmp_path / "hf")
    cfg = json.load(open(tmp_path / "hf" / "config.json"))
    shutil.copytree(tmp_path / "hf", tmp_path / "bad")
    json.dump({**cfg, "intermediate_size": 128}, open(tmp_path / "bad" / "config.json", "w"))
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor layers\.0\.feed_forward\.w[123]\.weight has shape .* the config implies"):
        load_model(str(tmp_path / "bad"))
    json.dump({**cfg, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}, open(tmp_path / "bad" / "config.json", "w"))
    with pytest.raises(ValueError, match="rope scaling"):
        load_model(str(tmp_path / "bad"))
    model = load_model(str(tmp_path / "hf"))
    save_model(model, str(tmp_path / "sharded"), max_shard_bytes=40_000)
    os.remove(sorted(f for f in (tmp_path / "sharded").iterdir() if f.suffix == ".safetensors")[-1])
    with pytest.raises(InputError, match="listed in .*index.json but missing"):
        load_model(str(tmp_path / "sharded"))


def test_tokenizer_must_match_vocabulary(tmp_path, data_file):
    tok = Tokenizer(data_file("tokenizer", "llama2_tokenizer.model"))
    random_hf(tmp_path / "hf")  # vocabulary 101
    model = load_model(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="32000 tokens but the model's vocabulary is 101"):
        check_tokenizer(tok, model)
    shutil.copyfile(tok.path, tmp_path / "hf" / "tokenizer.model")
    with pytest.raises(ValueError, match="do not belong together"):
        load_tokenizer(str(tmp_path / "hf"), model)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that dies midway leaves the previous checkpoint intact."""
    model = Transformer(model_args("test")).eval()
    save_model(model, str(tmp_path / "ckpt"))
    before = open(tmp_path / "ckpt" / "model.safetensors", "rb").read()
    import nanopref.checkpoint as ck
    monkeypatch.setattr(ck, "save_file", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(model, str(tmp_path / "ckpt"))
    assert open(tmp_path / "ckpt" / "model.safetensors", "rb").read() == before
    assert load_model(str(tmp_path / "ckpt")) is not None
