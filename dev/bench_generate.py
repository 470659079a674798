"""Generation speed: nanopref's static-KV-cache sampler vs transformers' generate on the same weights, same run.

    python dev/bench_generate.py                 # CPU, fp32: tiny preset at batch 64, bench-20m at batch 1 and 16
    python dev/bench_generate.py --gpu           # CUDA: llama2-7b shape, bf16, random weights, batch 1, eager and compiled
    python dev/bench_generate.py --blocked       # CPU: nanopref as is vs with the blocked-matmul decode trick (below)

Both sides decode greedily for exactly 128 new tokens (no EOS), from the same left-padded prompts, and must
produce the same tokens. After a warm-up each side runs 5 times, interleaved with the other; the ratio is the
median of the 5 per-pair ratios (their range beside it). Ratios are what to compare across machines, not
absolute numbers. At batch 1, decoding reads every weight once per token, so weight bytes per second
over the machine's measured copy bandwidth says how close to the memory limit a step runs.

--blocked measures a CPU trick nanopref used to have and dropped: a product with few rows (decoding), which PyTorch
runs as a single-threaded matrix-vector product, written as a batched matmul over 8 blocks of output rows, which
bmm spreads over the cores. On a quiet 2-core AMD EPYC it made batch-1 decoding of bench-20m 2.0-2.1x
transformers; on a 2-core Intel Xeon the same code gave 0.73-0.77x. On a 2-core EPYC shared with other jobs (load
6-10), two runs of this mode (8 pairs each) gave plain/blocked time ratios, min / median / max:
    bench-20m batch 1:  0.27 / 0.39 / 0.56 and 0.33 / 0.84 / 1.05
    bench-20m batch 4:  0.60 / 1.15 / 2.78 and 0.49 / 1.44 / 6.39
    bench-20m batch 16: 0.40 / 1.14 / 1.38 and 0.29 / 1.19 / 2.83
    tiny batch 1:       0.44 / 0.57 / 0.84 and 0.10 / 0.86 / 3.64
    tiny batch 16:      0.75 / 1.31 / 1.51 and 0.61 / 1.04 / 1.80
i.e. slower at batch 1, the case it was written for, and no reliable win at 4-16 rows. It also changes the float
summation order (its results are not bitwise nn.Linear's; greedy tokens were equal in every pair), so choosing it
by a timing at run time would make samples depend on the machine's load. It is gone; this mode patches it back in.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nanopref.generate import generate, left_pad  # noqa: E402
from nanopref.model import Transformer, model_args, num_params  # noqa: E402
from nanopref.save import save_model  # noqa: E402

NEW = 128


def timed(fn, repeats, sync, warmup=True):
    if warmup:
        fn()  # (and compilation)
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def copy_bandwidth(device, sync, nbytes=512 * 2**20):
    """Bytes moved per second (read + write) by a large device-to-device copy."""
    a = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    b = torch.empty_like(a)
    t, _ = timed(lambda: b.copy_(a), 5, sync)
    return 2 * nbytes / t


def prompts(batch, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[1] + torch.randint(3, vocab, (int(n),), generator=g).tolist()
            for n in torch.randint(8, 33, (batch,), generator=g)]


def bench_cpu(preset, batch, bandwidth, repeats=5):
    import transformers
    torch.manual_seed(0)
    model = Transformer(model_args(preset)).eval()
    model.init_weights()
    with tempfile.TemporaryDirectory() as d:
        save_model(model, d)
        hf = transformers.LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ps = prompts(batch, model.args.vocab_size)
    tokens, mask = left_pad(ps, 0, "cpu")
    noop = lambda: None  # noqa: E731
    ours_fn = lambda: generate(model, ps, NEW, eos_id=-1, pad_id=0, temperature=0).tokens  # noqa: E731

    @torch.no_grad()
    def hf_fn():
        return hf.generate(input_ids=tokens, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW,
                           do_sample=False, pad_token_id=0, eos_token_id=None)[:, tokens.shape[1]:]
    # interleaved (ours, HF, ours, HF, ...): a machine whose speed drifts during the run (shared CPUs) moves both
    # sides of each pair alike, so the median of the per-pair ratios is steadier than a ratio of two medians
    ours, theirs = ours_fn(), hf_fn()  # warm-up
    pairs = [(timed(ours_fn, 1, noop, warmup=False), timed(hf_fn, 1, noop, warmup=False)) for _ in range(repeats)]
    t_ours = statistics.median(p[0][0] for p in pairs)
    t_hf = statistics.median(p[1][0] for p in pairs)
    row = dict(preset=preset, params=num_params(model), batch=batch, ours=batch * NEW / t_ours,
               hf=batch * NEW / t_hf, ratio=statistics.median(p[1][0] / p[0][0] for p in pairs),
               spread=(min(p[1][0] / p[0][0] for p in pairs), max(p[1][0] / p[0][0] for p in pairs)),
               same_tokens=(theirs == ours).float().mean().item())
    if batch == 1:
        row["weight_bw_frac"] = num_params(model) * 4 * row["ours"] / bandwidth
        row["hf_weight_bw_frac"] = num_params(model) * 4 * row["hf"] / bandwidth
    return row


def blocked_forward(self, x):
    """nn.Linear.forward with the dropped trick: on CPU, without autograd, for <= 16 rows, x @ W.T as one bmm over
    8 blocks of W's output rows."""
    rows, (N, K) = x.numel() // x.shape[-1], self.weight.shape
    if x.device.type != "cpu" or torch.is_grad_enabled() or rows > 16 or N % 8 or self.bias is not None:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    y = torch.bmm(self.weight.view(8, N // 8, K), x.reshape(rows, K).t().expand(8, K, rows))  # (8, N/8, rows)
    return y.reshape(N, rows).t().reshape(*x.shape[:-1], N)


def bench_blocked(pairs=8, new=32):
    """Interleaved pairs (plain, blocked | blocked, plain): the ratio plain time / blocked time (> 1: the trick
    wins), its min / median / max over the pairs, and whether greedy tokens were equal."""
    plain = torch.nn.Linear.forward
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"{new} new tokens, {pairs} pairs")
    for preset, batch in [("bench-20m", 1), ("bench-20m", 4), ("bench-20m", 16), ("tiny", 1), ("tiny", 16)]:
        torch.manual_seed(0)
        model = Transformer(model_args(preset)).eval()
        model.init_weights()
        ps = prompts(batch, model.args.vocab_size)

        def run(forward):
            torch.nn.Linear.forward = forward
            try:
                t = time.perf_counter()
                tokens = generate(model, ps, new, -1, 0, temperature=0).tokens
                return time.perf_counter() - t, tokens
            finally:
                torch.nn.Linear.forward = plain
        run(plain), run(blocked_forward)  # warm-up
        ratios, equal = [], 0
        for r in range(pairs):
            order = (plain, blocked_forward) if r % 2 else (blocked_forward, plain)
            res = {f: run(f) for f in order}
            ratios.append(res[plain][0] / res[blocked_forward][0])
            equal += torch.equal(res[plain][1], res[blocked_forward][1])
        print(f"{preset:10} batch {batch:3d}: plain/blocked {min(ratios):.2f} / {statistics.median(ratios):.2f} / "
              f"{max(ratios):.2f} (min / median / max); greedy tokens equal in {equal}/{pairs}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true", help="7B-shaped bf16 model on CUDA instead of the CPU runs")
    ap.add_argument("--blocked", action="store_true", help="nanopref vs nanopref with the dropped CPU decode trick")
    args = ap.parse_args()
    if args.gpu:
        return bench_gpu()
    if args.blocked:
        return bench_blocked()
    bw = copy_bandwidth("cpu", lambda: None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; copy bandwidth {bw / 1e9:.1f} GB/s "
          f"(read + write of a 512 MiB fp32 copy)")
    print(f"{'preset':10} {'params':>8} {'batch':>5} {'nanopref tok/s':>15} {'HF tok/s':>9} {'ratio':>6} "
          f"{'(min-max)':>11} {'same tokens':>11} {'weights/bw':>10}")
    for preset, batch in [("tiny", 64), ("bench-20m", 1), ("bench-20m", 16)]:
        r = bench_cpu(preset, batch, bw)
        frac = f"{r['weight_bw_frac']:.0%} (HF {r['hf_weight_bw_frac']:.0%})" if "weight_bw_frac" in r else ""
        print(f"{r['preset']:10} {r['params'] / 1e6:7.1f}M {r['batch']:5d} {r['ours']:15.0f} {r['hf']:9.0f} "
              f"{r['ratio']:5.2f}x {r['spread'][0]:5.2f}-{r['spread'][1]:.2f}x {r['same_tokens']:11.1%} {frac}", flush=True)


def bench_gpu():
    sync = torch.cuda.synchronize
    bw = copy_bandwidth("cuda", sync, nbytes=4 * 2**30)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Transformer(model_args("llama2-7b", max_seq_len=512)).to(torch.bfloat16).eval()
    model.init_weights()
    nbytes = num_params(model) * 2
    ps = prompts(1, 32000)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; copy bandwidth {bw / 1e12:.2f} TB/s; "
          f"llama2-7b shape, bf16, {nbytes / 1e9:.1f} GB of weights, batch 1, {NEW} new tokens")
    for compile in (False, True):
        t, out = timed(lambda: generate(model, ps, NEW, -1, 0, temperature=0, compile=compile), 3, sync)
        tps = NEW / t
        print(f"{'compiled (reduce-overhead)' if compile else 'eager':27} {tps:8.1f} tok/s  "
              f"weights read {nbytes * tps / 1e12:.2f} TB/s = {nbytes * tps / bw:.0%} of copy bandwidth", flush=True)


if __name__ == "__main__":
    main()
