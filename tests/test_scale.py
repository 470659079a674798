"""Scale: the memory plan (dev/memory_plan.py) against the code, and training.shard_model's FSDP2 options on CPU
(bf16 parameters, activation checkpointing, CPU offload of frozen models) over a 2-rank gloo group."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "dev"))
import memory_plan as mplan  # noqa: E402
from nanopref.losses import sft_loss  # noqa: E402
from nanopref.model import Transformer, model_args  # noqa: E402
from nanopref.training import make_optimizer, shard_model  # noqa: E402


def test_parameter_counts_match_llama2():
    counts = {k: mplan.count(mplan.meta_model(k))[0] for k in ("llama2-7b", "llama2-13b", "llama2-70b")}
    assert round(counts["llama2-7b"] / 1e9, 2) == 6.74  # Meta's published 6.74B, 13.0B, 69.0B (HF: 6_738_415_616)
    assert counts["llama2-7b"] == 6_738_415_616
    assert round(counts["llama2-13b"] / 1e9, 1) == 13.0
    assert round(counts["llama2-70b"] / 1e9, 1) == 69.0


def saved_bytes(model, tokens, lm, weight_shapes=()):
    """Bytes autograd saves for backward in one forward (and the loss), each storage once, parameters excluded
    (under FSDP2 the gathered weights are other storages: recognised by their shapes)."""
    params = {(p.to_local() if hasattr(p, "to_local") else p).untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params and tuple(t.shape) not in weight_shapes:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(tokens)
        if lm:
            sft_loss(out, tokens, torch.ones_like(tokens))
    return sum(seen.values())


@pytest.mark.parametrize("dtype,head", [(torch.bfloat16, "lm"), (torch.bfloat16, "scalar"), (torch.float32, "lm")])
def test_activation_formula_is_what_autograd_saves(dtype, head):
    """The plan's per-token activation bytes equal what autograd keeps, in bf16 (the FSDP2 compute dtype: the
    parameters in bf16, the rotary tables fp32) and fp32, with grouped-query attention."""
    torch.manual_seed(0)
    a = model_args("tiny", n_kv_heads=2, head=head)
    model = Transformer(a).to(dtype)
    model.init_rope()  # fp32 tables, as under FSDP2 (buffers are not cast)
    B, T = 3, 40
    got = saved_bytes(model, torch.randint(0, a.vocab_size, (B, T)), head == "lm")
    want = mplan.activation_bytes(a, B, T, grad_ckpt=False, p=dtype.itemsize, transient=False)
    assert got == want


def test_grad_ckpt_same_gradients_and_saves_what_the_plan_says():
    torch.manual_seed(0)
    a = model_args("test")
    model = Transformer(a)
    model.init_weights()
    tokens = torch.randint(0, a.vocab_size, (2, 48))
    grads = []
    for ckpt in (False, True):
        shard_model(model, grad_ckpt=ckpt)  # outside torchrun: only sets checkpointing
        model.zero_grad()
        nll, n = sft_loss(model(tokens), tokens, torch.ones_like(tokens))
        (nll / n).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7), k
    # with checkpointing autograd keeps each block's input and the head's tensors, as the plan says; without, every
    # block's tensors
    for ckpt in (True, False):
        shard_model(model, grad_ckpt=ckpt)
        want = mplan.activation_bytes(a, 2, 48, ckpt, p=4, transient=False)
        assert saved_bytes(model, tokens, True) == want, ckpt
    with torch.no_grad():  # and nothing changes where there is no backward
        assert torch.equal(model(tokens), shard_model(model, grad_ckpt=True)(tokens))


def test_offload_is_for_frozen_models():
    model = Transformer(model_args("test"))
    with pytest.raises(ValueError, match="frozen models"):
        shard_model(model, offload=True)


# -----------------------------------------------------------------------------
# 2 ranks, gloo, FSDP2: per-rank bytes against the plan; bf16 and checkpointing against fp32


def local_bytes(tensors):
    return sum((t.to_local() if hasattr(t, "to_local") else t).numel() *
               (t.to_local() if hasattr(t, "to_local") else t).element_size() for t in tensors)


def _worker(rank, world, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    a = model_args("test", dim=72, n_heads=6, n_kv_heads=2, vocab_size=501)  # 501 rows: uneven shards
    base = Transformer(a)
    base.init_weights()
    tokens = torch.randint(0, a.vocab_size, (4, 32))  # the same batch on both ranks

    def run(model):
        nll, n = sft_loss(model(tokens), tokens, torch.ones_like(tokens))
        (nll / n).backward()
        return (nll / n).item(), {k: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad)
                                  for k, p in model.named_parameters()}

    def copy(**kw):
        m = Transformer(a)
        m.load_state_dict(base.state_dict())
        return shard_model(m, **kw)
    ref_loss, ref_grads = run(copy())  # sharded, fp32: what every option below is held to; it equals one process
    single = Transformer(a)
    single.load_state_dict(base.state_dict())
    assert all((ref_grads[k] - g).abs().max() < 1e-5 for k, g in run_single(single, tokens).items())

    # per-rank bytes: fp32 parameter shard, fp32 gradient shard, AdamW m and v, as the plan predicts
    m = copy(param_dtype=torch.bfloat16)
    run(m)
    opt = make_optimizer(m, 1e-3)
    opt.step()
    want = mplan.state_bytes(base, world, rank, trainable=True)
    assert local_bytes(m.parameters()) == want["params"]
    assert local_bytes(p.grad for p in m.parameters()) == want["grads"]
    assert local_bytes(v for s in opt.state.values() for k, v in s.items() if k != "step") == want["optim"]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in m.parameters())

    # bf16 compute: loss and gradients within bf16 rounding of fp32
    loss, grads = run(copy(param_dtype=torch.bfloat16))
    assert abs(loss - ref_loss) < 2e-2 * abs(ref_loss), (loss, ref_loss)
    for k, g in grads.items():
        err = (g - ref_grads[k]).norm() / ref_grads[k].norm()
        assert err < 5e-2, (k, err.item())
    assert loss != ref_loss  # bf16 really was used

    # activation checkpointing under FSDP: the same gradients; with and without it, in fp32 and bf16, the activations
    # the plan predicts
    loss, grads = run(copy(grad_ckpt=True))
    assert abs(loss - ref_loss) < 1e-6 and all((g - ref_grads[k]).abs().max() < 1e-6 for k, g in grads.items())
    shapes = {s for p in base.parameters() for s in (tuple(p.shape), tuple(p.shape)[::-1])}  # B*T = 128: none
    for dtype in (torch.float32, torch.bfloat16):
        for ckpt in (False, True):
            want = mplan.activation_bytes(a, 4, 32, ckpt, p=dtype.itemsize, transient=False)
            got = saved_bytes(copy(grad_ckpt=ckpt, param_dtype=dtype), tokens, True, shapes)
            assert got == want, (dtype, ckpt, got, want)

    # a frozen model, stored in bf16, offloaded: the plan's bytes, and the unsharded model's outputs
    frozen = Transformer(a).to(torch.bfloat16).requires_grad_(False)
    frozen.load_state_dict(base.state_dict())
    frozen.init_rope()
    with torch.no_grad():
        want_out = frozen(tokens)
        f = shard_model(frozen, offload=True)
        assert local_bytes(f.parameters()) == mplan.state_bytes(base, world, rank, trainable=False)["params"]
        assert all((p.to_local().device.type == "cpu") for p in f.parameters())
        assert torch.equal(f(tokens), want_out)
    dist.destroy_process_group()


def run_single(model, tokens):
    nll, n = sft_loss(model(tokens), tokens, torch.ones_like(tokens))
    (nll / n).backward()
    return {k: p.grad for k, p in model.named_parameters()}


@pytest.mark.slow
def test_fsdp_two_ranks_bytes_bf16_and_checkpointing(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init")), nprocs=2)  # a rank's failure re-raised with its traceback


@pytest.mark.slow
def test_gpu_check_cpu_smoke():
    """dev/gpu_check.py --cpu_smoke: every row of the GPU check's table runs on a tiny preset on CPU."""
    r = subprocess.run([sys.executable, "dev/gpu_check.py", "--cpu_smoke"], cwd=ROOT, capture_output=True,
                       text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in ("decode compiled == eager", "decode batch 1", "sft step", "dpo step", "ppo steps", "torchrun fsdp"):
        assert name in r.stdout, (name, r.stdout[-3000:])
    assert "FAIL" not in r.stdout, r.stdout[-3000:]


def test_run_scripts_pass_only_config_fields():
    """Every --flag in runs/*.sh is a field of its train_*.py's Config (a typo would stop a 16-GPU job at launch),
    apart from the fields docs/scale.md asks to add."""
    import re
    pending = {"recipe", "grad_ckpt", "offload_frozen"}  # wired in with docs/scale.md's changes
    runs = os.path.join(ROOT, "runs")
    for name in sorted(f for f in os.listdir(runs) if f[0].isdigit()):
        text = open(os.path.join(runs, name)).read()
        script = re.search(r"(train_\w+\.py)", text).group(1)
        src = open(os.path.join(ROOT, script)).read()
        body = src[src.index("class Config:"):src.index("\n\n\n", src.index("class Config:"))]
        fields = set(re.findall(r"^    (\w+):", body, re.M))
        flags = set(re.findall(r"--(\w+)=", text.split(script, 1)[1]))
        assert flags - fields <= pending, (name, sorted(flags - fields - pending))
