"""The world and train_sft.py: same seed -> byte-identical world and identical SFT metrics; FSDP2 over two
processes (gloo, CPU) trains to the same weights as one process; a killed run resumes to the same result."""
import json
import os
import subprocess
import sys

import pytest
import torch

from nanopref.checkpoint import load_model
from nanopref.world.build import SIZES, build_world

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(SIZES, sft={c: 60 for c in SIZES["sft"]}, eval=10, pref={c: 10 for c in SIZES["pref"]},
             ppo_general={c: 5 for c in SIZES["ppo_general"]}, ppo_math={"math": 10},
             drills=dict(arith=50, facts=50), vocab=400)


def test_same_seed_same_world_bytes(tmp_path):
    a = build_world(3, out=str(tmp_path / "a"), sizes=SMALL, quiet=True)
    b = build_world(3, out=str(tmp_path / "b"), sizes=SMALL, quiet=True)
    c = build_world(4, out=str(tmp_path / "c"), sizes=SMALL, quiet=True)
    files = sorted(os.listdir(a))
    assert "tokenizer.model" in files and "sft.jsonl" in files and files == sorted(os.listdir(b))
    for f in files:
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    assert open(os.path.join(a, "sft.jsonl"), "rb").read() != open(os.path.join(c, "sft.jsonl"), "rb").read()
    eval_prompts = {json.loads(l)["prompt"] for f in files if f.startswith("eval_") for l in open(os.path.join(a, f))}
    sft_prompts = {json.loads(l)["messages"][0]["content"] for l in open(os.path.join(a, "sft.jsonl"))}
    assert eval_prompts and not eval_prompts & sft_prompts  # held out


def sft(tmp_path, name, *args, nproc=1, ok=True):
    env = dict(os.environ, NANOPREF_OUT=str(tmp_path / "shared_out"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "train_sft.py"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "train_sft.py"]
    out = str(tmp_path / name)
    r = subprocess.run(cmd + [f"--out_dir={out}", "--preset=test", "--eval_limit=4", "--log_every=1", *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert (r.returncode == 0) == ok, r.stdout[-2000:] + r.stderr[-3000:]
    return out, [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]


@pytest.mark.slow
def test_sft_reproducible_and_sharded_equals_single(tmp_path):
    a, ma = sft(tmp_path, "a", "--max_steps=4")
    b, mb = sft(tmp_path, "b", "--max_steps=4")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "tok_per_s")} for r in rows]  # noqa
    assert strip(ma) == strip(mb)  # identical losses, grad norms and evaluation scores
    assert any("eval/overall" in r for r in ma)
    for f in ("model/model.safetensors", "eval_world.json", "eval_world_samples.jsonl"):
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    # evaluate.py on the saved checkpoint gives the trainer's own numbers (same prompts, same greedy responses)
    env = dict(os.environ, NANOPREF_OUT=str(tmp_path / "shared_out"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "evaluate.py", f"--model={a}", "--tasks=world", "--split=val", "--limit=4",
                        f"--out={tmp_path / 'ev.json'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    mine = json.load(open(os.path.join(a, "eval_world.json")))
    theirs = json.load(open(tmp_path / "ev.json"))[a]["world"]["metrics"]
    assert {c: m["score"] for c, m in mine.items()} == {c: theirs[c] for c in mine}, (mine, theirs)
    outputs = lambda rows: [(r["id"], r["output"], r["score"]) for r in rows]  # noqa: E731 (4 steps: scores are 0)
    samples = [json.loads(l) for l in open(os.path.join(a, "eval_world_samples.jsonl"))]
    assert outputs(samples) == outputs(json.load(open(tmp_path / "ev.json"))[a]["world"]["records"])
    c, _ = sft(tmp_path, "c", "--max_steps=4", "--micro_batch=8", nproc=2)  # 2 ranks x 2 micro-batches of 8
    wa, wc = load_model(a).state_dict(), load_model(c).state_dict()
    assert max((wa[k] - wc[k]).abs().max().item() for k in wa) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])  # 2: FSDP2 over two gloo ranks, sharded optimizer state gathered and re-sharded
def test_killed_run_resumes_to_the_same_weights(tmp_path, nproc):
    args = ["--max_steps=6", "--save_every=3", "--micro_batch=8"]
    full, _ = sft(tmp_path, "full", *args, nproc=nproc)
    part, _ = sft(tmp_path, "part", *args, "--stop_after=3", nproc=nproc, ok=False)
    assert os.path.exists(os.path.join(part, "ckpt", "train_state.pt"))  # "killed" after step 3, saved at 3
    part, m = sft(tmp_path, "part", *args, nproc=nproc)
    assert [r["step"] for r in m if "loss" in r][:1] == [0] and m[-1]["step"] == 6
    wa, wb = load_model(full).state_dict(), load_model(part).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_sft_on_real_messages_and_checkpoint(tmp_path, data_file):
    """The real-data path: a messages JSONL (UltraFeedback's chosen conversations) and an HF-layout checkpoint
    with the Llama-2 tokenizer; over-long conversations are dropped and counted."""
    from nanopref.save import save_model
    from nanopref.data import load_preferences
    from nanopref.model import Transformer, model_args
    from nanopref.tokenizer import Tokenizer
    tok = Tokenizer(data_file("tokenizer", "llama2_tokenizer.model"))
    torch.manual_seed(0)
    save_model(Transformer(model_args("test", vocab_size=32000, max_seq_len=1024)), str(tmp_path / "init"),
               tokenizer=tok)
    ex, _ = load_preferences(data_file("ultrafeedback", "train_prefs.sample500.jsonl"), limit=40)
    with open(tmp_path / "sft.jsonl", "w") as f:
        for e in ex:
            f.write(json.dumps({"messages": e["prompt"] + [{"role": "assistant", "content": e["chosen"]}]}) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "train_sft.py", f"--data={tmp_path / 'sft.jsonl'}",
                        f"--init={tmp_path / 'init'}", "--recipe=paper", f"--out_dir={tmp_path / 'out'}", "--max_len=512",
                        "--batch_size=4", "--micro_batch=2", "--max_steps=2", "--log_every=1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "longer than 512 tokens dropped" in r.stdout
    model = load_model(str(tmp_path / "out"))
    assert model.args.vocab_size == 32000 and os.path.exists(tmp_path / "out" / "model" / "tokenizer.model")
