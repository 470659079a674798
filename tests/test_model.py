"""nanopref's Llama against transformers' LlamaForCausalLM (an independent implementation) on the same weights."""
import pytest
import torch

from nanopref.checkpoint import load_model
from nanopref.model import ModelArgs, Transformer, last_real_index, model_args, score_last

transformers = pytest.importorskip("transformers")

CONFIGS = {  # (n_heads, n_kv_heads, tied output, rope theta)
    "mha-untied": (4, 4, False, 10000.0),
    "gqa-tied": (4, 2, True, 10000.0),
    "mqa-untied-theta": (4, 1, False, 500000.0),
    "gqa-untied-theta": (8, 2, False, 1e6),
}


def hf_reference(tmp_path, n_heads, n_kv, tied, theta, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
                                   num_attention_heads=n_heads, num_key_value_heads=n_kv, rope_theta=theta,
                                   tie_word_embeddings=tied, max_position_embeddings=256, rms_norm_eps=1e-5)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.15)  # large enough that a wrong permutation or mask shows up in the logits
    ref.save_pretrained(tmp_path)
    return ref


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_transformers(tmp_path, name):
    ref = hf_reference(tmp_path, *CONFIGS[name])
    model = load_model(str(tmp_path))
    assert model.args.rope_theta == CONFIGS[name][3] and model.args.tie_embeddings == CONFIGS[name][2]
    x = torch.randint(0, 97, (3, 40))
    with torch.no_grad():
        diff = (ref(x).logits - model(x)).abs().max().item()
    assert diff <= 1e-4, f"{name}: max abs logit diff {diff}"


@pytest.mark.parametrize("name", ["mha-untied", "gqa-tied"])
def test_padded_batches_match_transformers(tmp_path, name):
    """Left and right padding with a mask: real positions match HF given the same mask and position ids,
    and match each sequence run alone."""
    ref = hf_reference(tmp_path, *CONFIGS[name])
    model = load_model(str(tmp_path))
    lens = [12, 5, 9]
    seqs = [torch.randint(3, 97, (n,)) for n in lens]
    T = max(lens)
    for side in ("left", "right"):
        tokens = torch.zeros(3, T, dtype=torch.long)
        mask = torch.zeros(3, T, dtype=torch.long)
        for i, s in enumerate(seqs):
            sl = slice(T - len(s), T) if side == "left" else slice(0, len(s))
            tokens[i, sl], mask[i, sl] = s, 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            ours = model(tokens, mask=mask)
            theirs = ref(tokens, attention_mask=mask, position_ids=pos).logits
            for i, s in enumerate(seqs):
                real = mask[i].bool()
                assert (ours[i][real] - theirs[i][real]).abs().max() <= 1e-4, side
                alone = model(s[None])[0]
                assert (ours[i][real] - alone).abs().max() <= 1e-4, side
            assert torch.isfinite(ours).all()


def test_ffn_hidden_rule_and_presets():
    # Meta's rule reproduces the published FFN sizes
    assert model_args("llama2-7b").ffn_hidden == 11008
    assert model_args("llama2-13b").ffn_hidden == 13824
    assert model_args("llama2-70b").ffn_hidden == 28672
    with torch.device("meta"):
        n7 = sum(p.numel() for p in Transformer(model_args("llama2-7b")).parameters())
    assert abs(n7 - 6.74e9) < 0.01e9
    with pytest.raises(ValueError, match="not divisible"):
        ModelArgs(dim=64, n_heads=4, n_kv_heads=3)


def test_scalar_head_reads_last_real_token():
    torch.manual_seed(0)
    model = Transformer(model_args("test", head="scalar")).eval()
    model.init_weights()
    s = torch.randint(3, 500, (7,))
    alone = model(s[None])[0, -1]
    for pad_left, pad_right in [(0, 0), (4, 0), (0, 4)]:
        tokens = torch.cat([torch.zeros(pad_left, dtype=torch.long), s, torch.zeros(pad_right, dtype=torch.long)])
        mask = torch.cat([torch.zeros(pad_left), torch.ones(7), torch.zeros(pad_right)]).long()
        assert last_real_index(mask[None]).item() == pad_left + 6
        with torch.no_grad():
            assert torch.allclose(score_last(model, tokens[None], mask[None])[0], alone, atol=1e-5)


def test_return_hidden():
    model = Transformer(model_args("test")).eval()
    x = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        h = model(x, return_hidden=True)
        assert h.shape == (2, 9, 64)
        assert torch.allclose(model.output(h), model(x))
