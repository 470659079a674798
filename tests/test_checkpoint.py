"""Checkpoints: Meta layout == HF layout, save -> load exact, transformers loads what we save, clear errors; run
checkpoints (runs.py) found after a kill in any window of a save, config checks, the out_dir lock, a full disk."""
import errno
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

import pytest
import torch

from nanopref import runs
from nanopref.checkpoint import check_tokenizer, load_model, load_tokenizer
from nanopref.common import InputError, MetricsLog
from nanopref.model import Transformer, model_args, score_last
from nanopref.runs import load_run, save_final, save_run
from nanopref.save import save_model
from nanopref.tokenizer import Tokenizer
from nanopref.training import make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    import nanopref.save as ck
    monkeypatch.setattr(ck, "save_file", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(model, str(tmp_path / "ckpt"))
    assert open(tmp_path / "ckpt" / "model.safetensors", "rb").read() == before
    assert load_model(str(tmp_path / "ckpt")) is not None


# -----------------------------------------------------------------------------
# run directories (nanopref/runs.py): a kill in any window of a save leaves a state that resumes at the right step


class Killed(BaseException):
    """Raised where common.fault_point would end the process: the files on disk are what a kill -9 leaves."""


def kill_at(monkeypatch, point, hit):
    """Make the hit-th pass through fault_point(point) raise Killed (the scripts' tests do it with os._exit)."""
    import nanopref.save as ck
    seen = []

    def fault(name):
        if name == point:
            seen.append(name)
            if len(seen) == hit:
                raise Killed(point)
    monkeypatch.setattr(ck, "fault_point", fault)
    monkeypatch.setattr(runs, "fault_point", fault)


def tiny(head="lm", seed=0):
    torch.manual_seed(seed)
    model = Transformer(model_args("test", head=head))
    model.init_weights()
    return model, make_optimizer(model, 1e-2)


def train_and_save(out, steps, policy, value, snapshots):
    """One optimizer step per model per step, then a checkpoint of both (as PPO saves); snapshots[s]: weights at s."""
    x = torch.randint(0, 512, (2, 8))
    for s in range(1, steps + 1):
        for m, opt in (policy, value):
            m(x).float().square().mean().backward()
            opt.step()
            opt.zero_grad()
        snapshots[s] = {k: v.clone() for k, v in policy[0].state_dict().items()}
        save_run(out, *policy, s, dict(lr=1.0), others={"value": value})


@pytest.mark.parametrize("point, hit, step", [
    ("replace_dir:between_renames", 1, 1),  # the first save, no old one: ckpt.tmp alone, complete
    ("replace_dir:between_renames", 2, 2),  # ckpt.old (step 1) and ckpt.tmp (step 2), both complete: the newer
    ("save:before_done", 2, 1),             # ckpt.tmp written but not marked: ignored
    ("save_run:between_models", 3, 1),      # the second save's policy written, its value model not: ignored
    ("remove:ckpt.old", 1, 2),              # the old one being deleted after the swap (its DONE goes first)
])
def test_kill_in_any_window_resumes_from_the_newest_complete_checkpoint(tmp_path, monkeypatch, point, hit, step):
    out, snapshots = str(tmp_path), {}
    kill_at(monkeypatch, point, hit)
    with pytest.raises(Killed):
        train_and_save(out, 3, tiny(), tiny("scalar", 1), snapshots)
    monkeypatch.undo()
    assert runs.recover(os.path.join(out, "ckpt")) == step
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # the leftovers are gone
    (policy, opt), (value, vopt) = tiny(seed=5), tiny("scalar", 6)
    assert load_run(out, policy, opt, others={"value": (value, vopt)}) == (step, {})
    assert all(torch.equal(v, snapshots[step][k]) for k, v in policy.state_dict().items())
    assert opt.state_dict()["state"][0]["step"] == step == vopt.state_dict()["state"][0]["step"]


def test_kill_while_deleting_the_checkpoint_after_the_final_save_resumes_as_finished(tmp_path, monkeypatch):
    out, snapshots = str(tmp_path), {}
    policy, value = tiny(), tiny("scalar", 1)
    train_and_save(out, 2, policy, value, snapshots)
    kill_at(monkeypatch, "remove:ckpt", 1)
    with pytest.raises(Killed):
        save_final(out, policy[0], None, None, dict(lr=1.0), 3)
    monkeypatch.undo()
    assert os.path.exists(tmp_path / "ckpt" / "train_state.pt") and not os.path.exists(tmp_path / "ckpt" / "DONE")
    runs.recover(os.path.join(out, "ckpt"))
    assert runs.resume_point(out) == (os.path.join(out, "model"), 3, True)
    fresh, opt = tiny(seed=5)
    assert load_run(out, fresh, opt) == (3, {})  # the finished weights, not trained again
    assert all(torch.equal(v, policy[0].state_dict()[k]) for k, v in fresh.state_dict().items())


@dataclass
class Cfg:
    out_dir: str
    lr: float = 3e-3
    log_every: int = 10
    resume: str = "auto"


def reopen(cfg):
    """open_run as a new process would: this process's lock on the directory released first."""
    if runs._lock is not None:
        runs._lock.close()
        runs._lock = None
    return runs.open_run(cfg)


def test_resume_refuses_changed_arguments_unless_forced(tmp_path):
    out = str(tmp_path)
    assert reopen(Cfg(out)) == 0
    assert json.load(open(tmp_path / "nanopref_config.json")) == asdict(Cfg(out))
    save_run(out, *tiny(), 5, asdict(Cfg(out)))
    with pytest.raises(SystemExit, match=r"checkpoint at step 5 of a run with other arguments: lr: 0.003 -> 0.5\. "
                                         r".*--resume=force"):
        reopen(Cfg(out, lr=0.5))
    assert reopen(Cfg(out, log_every=1)) == 5  # how often it logs may change
    assert reopen(Cfg(out, lr=0.5, resume="force")) == 5
    assert json.load(open(tmp_path / "nanopref_config.json"))["lr"] == 0.5
    save_final(out, tiny()[0], None, None, asdict(Cfg(out)), 9)
    assert reopen(Cfg(out)) == 9  # finished: not trained again
    with pytest.raises(SystemExit, match=r"a finished run \(step 9\).*lr: 0.003 -> 0.5.*--resume=no"):
        reopen(Cfg(out, lr=0.5, resume="force"))  # no optimizer state to go on with
    assert reopen(Cfg(out, lr=0.5, resume="no")) == 0
    assert not os.path.exists(tmp_path / "model") and not os.path.exists(tmp_path / "ckpt")
    runs._lock.close()


def test_second_run_in_the_same_out_dir_is_refused(tmp_path):
    """A helper process holds the lock; this process may not take it, and gets it once the holder is gone."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nanopref.runs import lock; lock(sys.argv[1]);"
                               " print('locked', flush=True); time.sleep(60)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"{tmp_path} is in use by another run \\(pid {holder.pid}\\)"):
            reopen(Cfg(str(tmp_path)))
    finally:
        holder.kill()
        holder.wait()
    assert reopen(Cfg(str(tmp_path))) == 0  # the kernel released the dead holder's lock
    runs._lock.close()


def test_metrics_rows_of_the_resumed_steps_are_dropped(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    log = MetricsLog(path)
    for s in range(5):
        log.log(s, quiet=True, loss=1.0)
    with open(path, "a") as f:
        f.write('{"step": 5, "lo')  # torn by a kill
    MetricsLog(path, start=3)
    assert [json.loads(line)["step"] for line in open(path)] == [0, 1, 2]
    MetricsLog(path)
    assert open(path).read() == ""


def test_disk_full_names_enospc_and_the_path_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import nanopref.save as ck
    from safetensors import SafetensorError
    out = str(tmp_path)
    model, opt = tiny()
    save_run(out, model, opt, 1, {})

    def full_safetensors(*a, **k):  # what safetensors raises on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(ck, "save_file", full_safetensors)
    with pytest.raises(SystemExit, match=r"saving .*ckpt\.tmp failed: ENOSPC \(No space left on device\)"):
        save_run(out, model, opt, 2, {})
    monkeypatch.undo()

    class Full:  # a file whose writes fail after 1000 bytes, as on a full disk: torch.save calls it a RuntimeError
        def __init__(self, path, mode):
            self.f, self.n = open(path, mode), 0

        def write(self, b):
            self.n += len(b)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(b)

        def flush(self):
            self.f.flush()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
    monkeypatch.setattr(runs, "open", Full, raising=False)
    with pytest.raises(SystemExit, match=r"saving .*ckpt\.tmp/train_state\.pt failed: ENOSPC"):
        save_run(out, model, opt, 2, {})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and runs.resume_point(out)[1] == 1  # nothing replaced


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: room for one checkpoint of the test model with its Adam state (2 MB), not for a second."""
    d = tmp_path / "disk"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root and mount rights")
    yield d
    subprocess.run(["umount", "-l", str(d)])


def test_real_full_disk(small_disk):
    model, opt = tiny()
    model(torch.randint(0, 512, (2, 8))).square().mean().backward()
    opt.step()  # now the optimizer has state to save
    save_run(str(small_disk), model, opt, 1, {})
    with pytest.raises(SystemExit, match=r"saving .*disk/ckpt\.tmp\S* failed: ENOSPC \(No space left on device\)"):
        save_run(str(small_disk), model, opt, 2, {})
    assert runs.resume_point(str(small_disk))[1] == 1 and not os.path.exists(small_disk / "ckpt.tmp")
