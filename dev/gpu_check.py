"""One GPU check for the paper-scale path (issue 13): the CUDA code paths run once, in <= 8 minutes on one GPU, and
ONE table comes out, each row against its target and against dev/memory_plan.py's prediction of its peak memory.

    bash dev/gpu_check.sh                 # one CUDA GPU (exits with a message, checking nothing, without one)
    python dev/gpu_check.py --cpu_smoke   # the same code on CPU with tiny models (tests/test_scale.py runs it)

Rows: greedy tokens of the compiled decode step (torch.compile mode="reduce-overhead", CUDA graphs) == eager;
batch-1 decode tokens/s of a llama2-7b-shaped bf16 model (random weights) and the fraction of memory bandwidth it
reaches (weight bytes read per second over a measured device copy; target >= 70% compiled); an SFT and a DPO step of
a 1.07B model (llama2-7b's shapes, 4 blocks) with tokens/s and MFU (6N + attention FLOPs per token, see
memory_plan.train_flops_per_token; target >= 35%); three PPO steps (policy, reference, reward, value, all 1.07B);
an FSDP2 run under `torchrun --nproc_per_node=1` with NCCL, checkpointing and an offloaded frozen model. The
training rows run FSDP2 as the scripts should at scale (training.shard_model: bf16 parameters, fp32 master
weights), in a 1-rank process group, so memory_plan.plan_bytes predicts their memory with W = 1.
"""
import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist

DEV = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, DEV)
sys.path.insert(0, os.path.dirname(DEV))
import memory_plan as mplan  # noqa: E402
from bench_generate import copy_bandwidth, prompts  # noqa: E402
import nanopref.generate as generate_module  # noqa: E402
from nanopref.generate import generate  # noqa: E402
from nanopref.losses import (dpo_loss, gae, kl_estimate, ppo_policy_loss, ppo_rewards, ppo_value_loss,  # noqa: E402
                             response_logps, sequence_logps, sft_loss, whiten)
from nanopref.model import Transformer, last_real_index, model_args  # noqa: E402
from nanopref.training import make_optimizer, sampling_copy, shard_model  # noqa: E402

PEAK_TFLOPS = {"H100 PCIe": 756, "H100": 989, "H200": 989, "A100": 312}  # bf16 dense TFLOP/s; first name match
BF16 = torch.bfloat16


def sizes(cpu):
    """(decode model args, training model args, training sequence length, decode tokens)."""
    if cpu:
        return model_args("test", max_seq_len=256), model_args("test", max_seq_len=256), 32, 8
    return (model_args("llama2-7b", max_seq_len=512), model_args("llama2-7b", n_layers=4, max_seq_len=2048), 2048,
            128)


def build(a, dev, dtype=torch.float32, trainable=True, seed=0):
    torch.manual_seed(seed)
    with torch.device(dev):
        m = Transformer(a)
    m.init_weights()
    m = m.to(dtype).requires_grad_(trainable)
    m.init_rope()  # fp32 rotary tables whatever the weights' dtype, as under FSDP2
    return m


def meta(a):
    with torch.device("meta"):
        return Transformer(a)


def measure(fn, dev, steps):
    """Run fn() once to warm up, then `steps` times: (seconds per call, peak bytes allocated, last result)."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out = fn()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        out = fn()
    sync()
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    return (time.perf_counter() - t) / steps, peak, out


def row(check, result, speed="", eff="", peak=0, plan=0, verdict="ok"):
    return dict(check=check, result=result, speed=speed, eff=eff, verdict=verdict,
                peak=f"{peak / 2**30:.1f}" if peak else "-", plan=f"{plan / 2**30:.1f}" if plan else "-")


def decode_rows(a, dev, new, cpu):
    model = build(a, dev, BF16 if not cpu else torch.float32, trainable=False).eval()
    model.output.weight.data.mul_(4)  # random weights: sharper logits, so no greedy choice is a near-tie
    p1 = prompts(1, a.vocab_size)
    p2 = [[1] + [(t * 7 + 3) % a.vocab_size for t in p1[0][1:]]]  # same length, other tokens: a graph replay
    go = lambda ps, c: generate(model, ps, new, -1, 0, temperature=0, compile=c).tokens  # noqa: E731
    same = [torch.equal(go(p, False), go(p, True)) for p in (p1, p2)]
    rows = [row("decode compiled == eager", f"{sum(same)}/2 prompts x {new} tokens equal" +
                (" (CPU: no compile)" if cpu else ""), verdict="ok" if all(same) else "FAIL")]
    bw = copy_bandwidth(dev, torch.cuda.synchronize if dev.type == "cuda" else (lambda: None),
                        nbytes=(2**30 if dev.type == "cuda" else 2**26))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    plan = weights + new * 2 * a.n_layers * a.n_kv_heads * a.head_dim * model.output.weight.element_size()
    for c in (False, True):
        t, peak, _ = measure(lambda: go(p1, c), dev, 1 if cpu else 3)
        frac = weights * new / t / bw
        target = "n/a (CPU)" if cpu else ("ok" if frac >= 0.7 or not c else "below 70% target")
        rows.append(row(f"decode batch 1, {'compiled' if c else 'eager'}", f"{a.n_layers} blocks, dim {a.dim}",
                        f"{new / t:.1f} tok/s", f"{frac:.0%} of {bw / 1e9:.0f} GB/s copy", peak, plan, target))
    return rows


def mfu(a, seq, tok_s, dev, ckpt=False, extra_fwd=0):
    flops = mplan.train_flops_per_token(a, seq, ckpt) + extra_fwd * mplan.train_flops_per_token(a, seq,
                                                                                                 forward_only=True)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else ""
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return f"MFU {tok_s * flops / (peak * 1e12):.0%}" if peak else "MFU n/a", (tok_s * flops / (peak * 1e12)
                                                                                 if peak else None)


def train_row(kind, a, seq, dev, cpu, ckpt=False):
    """SFT or DPO steps: the model sharded with bf16 parameters (1 rank), AdamW, random tokens."""
    rows = 4 if kind == "sft" else 2  # sequences (SFT) or pairs (DPO) per micro-batch
    model = shard_model(build(a, dev), param_dtype=BF16, grad_ckpt=ckpt)
    opt = make_optimizer(model, 1e-5)
    tokens = torch.randint(3, a.vocab_size, (rows * (1 if kind == "sft" else 2), seq), device=dev)
    mask = torch.ones_like(tokens)
    mask[:, :seq // 4] = 0  # a prompt: the first quarter of each row is not scored
    ref = shard_model(build(a, dev, BF16, trainable=False)) if kind == "dpo" else None

    def step():
        if kind == "sft":
            nll, n = sft_loss(model(tokens), tokens, mask)
            loss = nll / n
        else:
            lp = sequence_logps(model(tokens), tokens, mask)
            with torch.no_grad():  # the live reference's forward, as with --precompute_ref=false
                ref_lp = sequence_logps(ref(tokens), tokens, mask)
            loss = dpo_loss(lp[:rows], lp[rows:], ref_lp[:rows], ref_lp[rows:])[0].mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    t, peak, loss = measure(step, dev, 1 if cpu else 3)
    tok_s = tokens.numel() / t
    text, frac = mfu(a, seq, tok_s, dev, ckpt, extra_fwd=1 if kind == "dpo" else 0)
    models = [(meta(a), True)] + ([(meta(a), False)] if kind == "dpo" else [])
    plan = mplan.plan_bytes(models, 1, tokens.shape[0], seq, ckpt, False)["total"]
    verdict = "n/a (CPU)" if cpu else ("ok" if frac and frac >= 0.35 else "below 35% target")
    n = sum(p.numel() for p in model.parameters())
    return row(f"{kind} step", f"{n / 1e9:.2f}B, {tokens.shape[0]}x{seq} tokens, loss {loss:.3f}",
               f"{tok_s:,.0f} tok/s", text, peak, plan, verdict if torch.isfinite(torch.tensor(loss)) else "FAIL")


def ppo_row(a, dev, cpu):
    """Three PPO steps: sample from a bf16 copy of the policy, score with the reference, reward and value models,
    GAE, then one clipped update of policy and value (the train_ppo.py pieces, not its data handling)."""
    b, new = (4, 16) if cpu else (16, 128)
    scalar = dataclasses.replace(a, head="scalar")
    policy = shard_model(build(a, dev), param_dtype=BF16)
    value = shard_model(build(scalar, dev, seed=1), param_dtype=BF16)
    ref = shard_model(build(a, dev, BF16, trainable=False))
    rm = shard_model(build(scalar, dev, BF16, trainable=False, seed=1))
    opts = [make_optimizer(m, 1e-6) for m in (policy, value)]
    ps = prompts(b, a.vocab_size)
    state = dict(sampler=None)

    def step():
        state["sampler"] = sampling_copy(policy, BF16, into=state["sampler"])
        g = generate(state["sampler"], ps, new, 2, 0, temperature=0.7)
        seq, attn, Tp, mask = torch.cat([g.prompt_tokens, g.tokens], 1), torch.cat([g.prompt_mask, g.mask], 1), \
            g.prompt_tokens.shape[1], g.mask
        with torch.no_grad():
            old = response_logps(policy(seq, mask=attn), seq, Tp, 0.7) * mask
            ref_lp = response_logps(ref(seq, mask=attn), seq, Tp, 0.7) * mask
            values = value(seq, mask=attn)[:, Tp - 1:-1].float() * mask
            score = rm(seq, mask=attn).float().gather(1, last_real_index(attn)[:, None]).squeeze(1)
            adv, ret = gae(ppo_rewards(score, kl_estimate(old, ref_lp) * mask, mask), values, mask)
            adv = whiten(adv, mask)
        lp = response_logps(policy(seq, mask=attn), seq, Tp, 0.7) * mask
        pg, _ = ppo_policy_loss(lp, old, adv, mask)
        vf, _ = ppo_value_loss(value(seq, mask=attn)[:, Tp - 1:-1].float(), values, ret, mask)
        ((pg.sum() + 0.1 * vf.sum()) / mask.sum()).backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        return seq.shape[1]
    t, peak, T = measure(step, dev, 2)  # warm-up + 2 = three steps
    plan = mplan.plan_bytes([(meta(a), True), (meta(a), False), (meta(scalar), False), (meta(scalar), True)], 1, b,
                            T, False, False, sampler=meta(a), gen_batch=b)["total"]
    return row("ppo steps (3)", f"4 models of {sum(p.numel() for p in policy.parameters()) / 1e9:.2f}B, {b} "
               f"rollouts x {new} tokens", f"{b / t:.2f} rollouts/s", "", peak, plan)


def fsdp_child(cpu):
    """Under torchrun: NCCL (gloo on CPU) through training.init_distributed, 3 SFT steps with checkpointing, and a
    frozen model offloaded to (pinned) host memory that must give the on-GPU frozen model's outputs."""
    from nanopref.training import finish_distributed, init_distributed
    _, world, dev = init_distributed("cpu" if cpu else "auto")
    if not dist.is_initialized():  # init_distributed starts a group only for 2+ ranks; FSDP2 needs one here
        dist.init_process_group("gloo" if cpu else "nccl")
    _, a, seq, _ = sizes(cpu)
    r = train_row("sft", a, seq, dev, cpu, ckpt=True)
    frozen = shard_model(build(a, dev, BF16, trainable=False))
    off = shard_model(build(a, dev, BF16, trainable=False), offload=True)  # the same weights (same seed)
    tokens = torch.randint(3, a.vocab_size, (2, 64), device=dev)
    with torch.no_grad():
        same = torch.equal(frozen(tokens), off(tokens))
    local = next(iter(off.parameters())).to_local()
    on_host = local.device.type == "cpu" and (cpu or local.is_pinned())
    r["check"] = f"torchrun fsdp ({world} rank, {'gloo' if cpu else 'nccl'}, ckpt)"
    r["result"] += f"; offloaded frozen model {'==' if same else '!='} on-device{'' if on_host else ', NOT on host'}"
    r["verdict"] = r["verdict"] if same and on_host else "FAIL"
    print("FSDP_RESULT " + json.dumps(r), flush=True)
    finish_distributed()


def fsdp_row(cpu):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
           "--part=fsdp"] + (["--cpu_smoke"] if cpu else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("FSDP_RESULT ")), None)
    if r.returncode or line is None:
        err = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.split(":")[0].endswith(("Error", "Exception"))]
        return row("torchrun fsdp", f"rc {r.returncode}: {(err or ['see its output'])[0][:200]}", verdict="FAIL")
    return json.loads(line[len("FSDP_RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu_smoke", action="store_true", help="tiny models on CPU: every code path, no numbers")
    ap.add_argument("--part", default="all", choices=["all", "fsdp"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part == "fsdp":
        return fsdp_child(args.cpu_smoke)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False), so nothing was checked. Run it on a "
              "machine with one GPU, or `python dev/gpu_check.py --cpu_smoke` to try the code paths on CPU.")
        return 0
    dev = torch.device("cpu" if args.cpu_smoke else "cuda")
    dec, a, seq, new = sizes(args.cpu_smoke)
    t0, rows = time.time(), []
    with tempfile.TemporaryDirectory() as d:  # a 1-rank group, so shard_model applies FSDP2 in this process
        dist.init_process_group("gloo" if args.cpu_smoke else "nccl", init_method=f"file://{d}/pg", rank=0,
                                world_size=1)
        parts = [("decode", lambda: decode_rows(dec, dev, new, args.cpu_smoke)),
                 ("sft step", lambda: [train_row("sft", a, seq, dev, args.cpu_smoke)]),
                 ("dpo step", lambda: [train_row("dpo", a, seq, dev, args.cpu_smoke)]),
                 ("ppo steps", lambda: [ppo_row(a, dev, args.cpu_smoke)])]
        for name, fn in parts:
            try:
                rows += fn()
            except Exception as e:  # noqa: BLE001  one failing row must not hide the others
                rows.append(row(name, f"{type(e).__name__}: {str(e)[:200]}", verdict="FAIL"))
            if name == "decode":  # drop the compiled step: its CUDA graphs would keep the 7B model alive
                generate_module._compiled_step = None
                torch._dynamo.reset()
            gc.collect()  # FSDP2's hooks make reference cycles: free the last row's models before the next
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        dist.destroy_process_group()
    rows.append(fsdp_row(args.cpu_smoke))
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU smoke (tiny models: no numbers to read)"
    print(f"\ngpu_check: {name}, torch {torch.__version__}, {time.time() - t0:.0f} s\n")
    print("| check | result | speed | efficiency | peak GiB | plan GiB | verdict |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['check']} | {r['result']} | {r['speed']} | {r['eff']} | {r['peak']} | {r['plan']} | "
              f"{r['verdict']} |")
    return 1 if any(r["verdict"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
