"""Sampler: cached decoding == full forward, batching == alone, returned log-probs == recomputation."""
import pytest
import torch

from nanopref.generate import generate, left_pad, process_logits, sample_token, score_tokens
from nanopref.model import Transformer, model_args

EOS, PAD = 2, 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Transformer(model_args("test", vocab_size=64, max_seq_len=128)).eval()
    m.init_weights(std=0.3)  # peaky enough that greedy continuations differ between prompts
    return m


def prompts(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[1] + torch.randint(3, 64, (n,), generator=g).tolist() for n in (9, 1, 4, 14, 6)]


@torch.no_grad()
def test_cached_decoding_equals_full_forward(model):
    """Prefill part of each (left-padded) row, then feed the rest one token at a time through the cache: the
    logits at every real position equal those of one full forward."""
    seqs = [p + [5, 6, 7, 8, 9, 10] for p in prompts()]
    tokens, mask = left_pad(seqs, PAD, "cpu")
    B, T = tokens.shape
    full = model(tokens, mask=mask)  # (B, T, V)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    for prefill in (1, 8, T - 1):
        model.setup_cache(B, T)
        out = [model(tokens[:, :prefill], mask=mask[:, :prefill], positions=positions[:, :prefill],
                     cache_pos=torch.arange(prefill))]
        for t in range(prefill, T):
            out.append(model(tokens[:, t:t + 1], mask=mask[:, t:t + 1], positions=positions[:, t:t + 1],
                             cache_pos=torch.tensor([t])))
        model.clear_cache()
        cached = torch.cat(out, 1)
        real = mask.bool()
        assert (cached[real] - full[real]).abs().max() < 1e-4, prefill


def test_batched_greedy_equals_each_alone(model):
    ps = prompts()
    batched = generate(model, ps, 24, EOS, PAD, temperature=0)
    assert batched.tokens.shape == (5, 24)
    for i, p in enumerate(ps):
        alone = generate(model, [p], 24, EOS, PAD, temperature=0)
        assert alone.lists()[0] == batched.lists()[i]
        assert torch.allclose(alone.logprobs[0], batched.logprobs[i], atol=1e-5)


def test_rows_stop_at_their_own_eos(model):
    ps = prompts(1)
    free = generate(model, ps, 30, eos_id=-1, pad_id=PAD, temperature=0).tokens  # no EOS: 30 tokens each
    eos = free[0, 3].item()  # pretend the token row 0 emits at step 3 is EOS
    g = generate(model, ps, 30, eos_id=eos, pad_id=PAD, temperature=0)
    for i in range(len(ps)):
        hits = (free[i] == eos).nonzero()
        n = hits[0].item() + 1 if len(hits) else 30
        assert g.mask[i].sum() == n and g.tokens[i, :n].tolist() == free[i, :n].tolist()
        assert (g.tokens[i, n:] == PAD).all() and (g.logprobs[i, n:] == 0).all()
    assert g.mask[0].sum() == 4


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 8, 1.0),
                                                     (0.8, 0, 0.9), (1.3, 12, 0.6), (0, 0, 1.0)])
def test_logprobs_equal_full_forward_recomputation(model, temperature, top_k, top_p):
    torch.manual_seed(1)
    g = generate(model, prompts(2), 20, EOS, PAD, temperature, top_k, top_p)
    again = score_tokens(model, g.prompt_tokens, g.prompt_mask, g.tokens, g.mask, temperature, top_k, top_p)
    assert (again - g.logprobs).abs().max() < 1e-4
    assert torch.isfinite(g.logprobs).all()


def naive_process(logits, temperature, top_k, top_p):
    """One row at a time with Python lists: scale, keep the k best, then the smallest nucleus reaching top_p."""
    out = []
    for row in logits.tolist():
        row = [x / temperature for x in row]
        order = sorted(range(len(row)), key=lambda j: -row[j])
        keep = set(order[:top_k]) if top_k else set(order)
        kept = [j for j in order if j in keep]
        z = sum(torch.tensor([row[j] for j in kept]).exp().tolist())
        mass, nucleus = 0.0, []
        for j in kept:
            if mass >= top_p:
                break
            nucleus.append(j)
            mass += torch.tensor(row[j]).exp().item() / z
        out.append([row[j] if j in nucleus else float("-inf") for j in range(len(row))])
    return torch.tensor(out)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.5, 3, 1.0), (1.0, 0, 0.8), (2.0, 6, 0.7)])
def test_process_logits_against_naive_loop(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(6, 10) * 2
    ours = process_logits(logits, temperature, top_k, top_p)
    ref = naive_process(logits, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)], atol=1e-6)


def test_sampling_frequencies_match_probabilities():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]).expand(200_000, 5)
    for T, k, p in [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.7)]:
        tok, logp = sample_token(logits, T, k, p)
        freq = torch.bincount(tok, minlength=5).float() / len(tok)
        probs = process_logits(logits[:1], T, k, p).softmax(-1)[0]
        assert (freq - probs).abs().max() < 0.006, (T, k, p, freq, probs)
        assert torch.allclose(logp.exp(), probs[tok])


def test_bad_lengths(model):
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len 128"):
        generate(model, [[1] * 100], 40, EOS, PAD)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, [[1], []], 4, EOS, PAD)


@pytest.mark.gpu
def test_compiled_decode_step_matches_eager_on_gpu():
    torch.manual_seed(0)
    m = Transformer(model_args("small", vocab_size=512)).cuda().eval()
    m.init_weights(std=0.3)
    ps = prompts(3)
    eager = generate(m, ps, 48, EOS, PAD, temperature=0)
    compiled = generate(m, ps, 48, EOS, PAD, temperature=0, compile=True)
    compiled2 = generate(m, prompts(4), 48, EOS, PAD, temperature=0, compile=True)  # replays the graphs
    assert eager.lists() == compiled.lists()
    assert compiled2.lists() == generate(m, prompts(4), 48, EOS, PAD, temperature=0).lists()


def test_reward_model_cannot_generate():
    rm = Transformer(model_args("test", vocab_size=64, head="scalar")).eval()
    with pytest.raises(ValueError, match=r"^this model is a reward model \(scalar head\); it cannot generate$"):
        generate(rm, [[1, 5]], 4, EOS, PAD)
