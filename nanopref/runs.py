"""A run directory (--out_dir): its lock, its checkpoints, and where a run (re)starts.

    .lock                 flock'd by the run using out_dir (released by the kernel when it ends, however it ends)
    nanopref_config.json  the run's Config, written at the start; metrics.jsonl: common.MetricsLog
    ckpt/                 while training: the model in HF layout (PPO: + value/), train_state.pt (optimizers, every
                          rank's RNG states, step), nanopref_config.json, and DONE, written last
    model/                the final model (HF layout), nanopref_config.json, and DONE once the run has finished

A kill at any instant leaves a state to resume from: a directory counts only once its DONE marker is written (after
every other file, fsynced), deletions remove DONE first, and a kill between replace_dir's two renames leaves the old
and the new complete directory at ckpt.old and ckpt.tmp, of which `recover` keeps the newer. A rerun with the same
arguments continues from the newest state bit-identically; with other arguments it stops and names them, unless
--resume=force. Tests kill runs inside each window (common.fault_point)."""
import errno
import fcntl
import glob
import json
import os
import random
import re
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist

from nanopref.checkpoint import load_model
from nanopref.common import dist_info, fault_point, print0, write_json
from nanopref.save import DONE, remove_dir, replace_dir, write_model
from nanopref.training import full_state_dict

# Config fields a resumed run may change: where and how often it reports, evaluates and saves; not what it trains
MAY_CHANGE = {"device", "out_dir", "resume", "log_every", "save_every", "stop_after", "eval_every", "eval_limit",
              "eval_batch", "eval_data", "eval_pairs", "eval_split", "bon_n", "bon_limit", "ref_cache", "compile"}
_lock = None  # the open lock file, held for the life of the process


def lock(out_dir):
    """Take out_dir/.lock, or stop at once naming the process that holds it: two runs in one directory would
    interleave their checkpoints and metrics."""
    global _lock
    os.makedirs(out_dir, exist_ok=True)
    f = open(os.path.join(out_dir, ".lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise SystemExit(f"{out_dir} is in use by another run (pid {f.read().strip() or '?'}): wait for it to end, "
                         f"or give this run another --out_dir") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    _lock = f


def _step(path):
    """The step in path/DONE: path is a complete checkpoint or final model. None: not a complete directory."""
    try:
        with open(os.path.join(path, DONE)) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _candidates(path):
    return [path, path + ".old"] + sorted(glob.glob(glob.escape(path) + ".tmp*"))


def recover(path):
    """Finish whatever a kill interrupted around `path`: the newest complete one of path, path.old and path.tmp*
    becomes path, the others are deleted. -> its step, or None. With none complete, path itself is left alone."""
    found = [(_step(d), d) for d in _candidates(path)]
    best = max([f for f in found if f[0] is not None], key=lambda f: f[0], default=(None, None))  # ties: path
    for _, d in found:
        if d != best[1] and (d != path or best[1]):
            remove_dir(d)
    if best[1] not in (None, path):
        os.rename(best[1], path)
    elif best[1] is None and os.path.isdir(path):
        print0(f"{path} has no {DONE} marker (an older nanopref's, or half deleted): not resumed; replaced when this "
               f"run saves")
    return best[0]


def resume_point(out_dir):
    """(directory, step, finished): the finished model, else the checkpoint; None: start from scratch."""
    for name, finished in (("model", True), ("ckpt", False)):
        step = _step(os.path.join(out_dir, name))
        if step is not None:
            return os.path.join(out_dir, name), step, finished
    return None


def open_run(cfg):
    """Call first, before data and models load: lock cfg.out_dir, recover its checkpoints, check that a run found
    there had the same arguments (Config fields outside MAY_CHANGE), and save the Config as nanopref_config.json.
    cfg.resume: auto | force (resume a checkpoint whatever changed) | no (delete checkpoint and final model first).
    -> the step this run starts at (0: from scratch; a finished run's step count: it is not trained again)."""
    config = json.loads(json.dumps(asdict(cfg)))  # as it is stored (lists for tuples)
    out = cfg.out_dir
    if dist_info()[0] == 0:
        lock(out)
        for name in ("ckpt", "model"):
            if cfg.resume != "no":
                recover(os.path.join(out, name))
            else:
                for d in [d for d in _candidates(os.path.join(out, name)) if os.path.isdir(d)]:
                    print0(f"--resume=no: deleting {d}")
                    remove_dir(d)
    if dist.is_initialized():
        dist.barrier()
    point = resume_point(out)
    if point:
        path, step, finished = point
        try:
            with open(os.path.join(path, "nanopref_config.json")) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        changed = [f"{k}: {json.dumps(old[k]) if k in old else '(absent)'} -> {json.dumps(v)}"
                   for k, v in config.items() if k not in MAY_CHANGE and old.get(k, ...) != v]
        if changed and (finished or cfg.resume != "force"):
            what = f"a finished run (step {step})" if finished else f"a checkpoint at step {step}"
            how = "" if finished else "--resume=force to resume it anyway, "
            raise SystemExit(f"{out} holds {what} of a run with other arguments: {'; '.join(changed)}. Run with "
                             f"the same arguments to continue it, {how}--resume=no to start over in {out}, or give "
                             f"another --out_dir")
    if dist_info()[0] == 0:
        write_json(os.path.join(out, "nanopref_config.json"), config)
    return point[1] if point else 0


# -----------------------------------------------------------------------------
# saving


@contextmanager
def save_errors(tmp):
    """A failed save (full disk, no permission, ...) ends the run naming the error and the path; the incomplete
    `tmp` is deleted (its space freed), and the last complete checkpoint is left as it was."""
    try:
        yield
    except Exception as e:
        # torch.save's and safetensors' own errors say no errno: torch_save recovers it; safetensors prints it
        m = None if isinstance(e, OSError) else re.search(r"os error (\d+)", str(e))
        code = e.errno if isinstance(e, OSError) else int(m.group(1)) if m else None
        if code is None:
            raise
        remove_dir(tmp)
        raise SystemExit(f"saving {getattr(e, 'filename', None) or tmp} failed: {errno.errorcode.get(code, code)} "
                         f"({os.strerror(code)}); nothing was replaced, the last complete checkpoint (if any) is kept "
                         f"in {os.path.dirname(tmp)}") from None


class _Recorder:
    """Keeps the OSError of a failed write: torch.save turns it into 'unexpected pos' or 'basic_ios::clear'."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b):
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.f.flush()


def torch_save(obj, path):
    with open(path, "wb") as f:
        rec = _Recorder(f)
        try:
            torch.save(obj, rec)
        except RuntimeError:
            if rec.error is not None:
                raise OSError(rec.error.errno, rec.error.strerror, path) from None
            raise


def _seal(path, step):
    """Make `path` complete: every file flushed to disk, then the DONE marker (atomically)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    fault_point("save:before_done")
    write_json(os.path.join(path, DONE), {"step": step})


def _optim_state(model, optimizer):
    """The optimizer's state, under FSDP gathered by hand in torch.distributed.checkpoint's "full state dict" format
    (state and param_groups keyed by parameter name), which _load's set_optimizer_state_dict reads. Collective under
    FSDP: one all-gather per state tensor in parameter order, the same on every rank; only rank 0 keeps tensors."""
    if not dist.is_initialized():
        return optimizer.state_dict()
    names = {p: n for n, p in model.named_parameters()}
    state, groups = {}, []
    for g in optimizer.param_groups:
        groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": [names[p] for p in g["params"]]})
        for p in g["params"]:
            for k, v in optimizer.state.get(p, {}).items():
                full = v.full_tensor() if hasattr(v, "full_tensor") else v
                if dist.get_rank() == 0:
                    state.setdefault(names[p], {})[k] = full.detach().cpu()
    return dict(state=state, param_groups=groups)


def _rng_states():
    """Every rank's generators (CPU, CUDA, Python, NumPy), gathered: [rank 0's, rank 1's, ...]. Collective."""
    mine = dict(torch=torch.get_rng_state(), python=random.getstate(), numpy=np.random.get_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    if not dist.is_initialized():
        return [mine]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def save_run(out_dir, model, optimizer, step, config, tokenizer=None, extra=None, others=None):
    """Save model (HF layout), optimizer, every rank's RNG states and the step as out_dir/ckpt, atomically.
    others: {name: (model, optimizer)} saved in the same checkpoint (PPO's value model, as ckpt/value/): resumed
    together or not at all. Collective under FSDP."""
    parts = {"": (model, optimizer), **(others or {})}
    states = {name: (full_state_dict(m), _optim_state(m, o)) for name, (m, o) in parts.items()}
    rng = _rng_states()
    if dist_info()[0] == 0:
        ckpt = os.path.join(out_dir, "ckpt")
        tmp = ckpt + ".tmp"
        with save_errors(tmp):
            remove_dir(tmp)
            for name, (m, _) in parts.items():
                os.makedirs(os.path.join(tmp, name), exist_ok=True)
                write_model(m, os.path.join(tmp, name), tokenizer, state=states[name][0],
                            template=config.get("template", "tulu"))
                fault_point("save_run:between_models")
            torch_save(dict(optimizers={name: s[1] for name, s in states.items()}, step=step, config=config,
                            extra=extra or {}, rng=rng), os.path.join(tmp, "train_state.pt"))
            write_json(os.path.join(tmp, "nanopref_config.json"), config)
            _seal(tmp, step)
            replace_dir(tmp, ckpt)
    if dist.is_initialized():
        dist.barrier()


def save_final(out_dir, model, state, tokenizer, config, step):
    """Rank 0, at the end: out_dir/model (HF layout + tokenizer, nanopref_config.json, and DONE, which marks the run
    finished at `step`), atomically; then the checkpoint, no longer needed, is deleted."""
    final = os.path.join(out_dir, "model")
    tmp = final + f".tmp{os.getpid()}"
    with save_errors(tmp):
        remove_dir(tmp)
        os.makedirs(tmp)
        write_model(model, tmp, tokenizer, state=state, template=config.get("template", "tulu"))  # its chat template
        write_json(os.path.join(tmp, "nanopref_config.json"), config)
        _seal(tmp, step)
        replace_dir(tmp, final)
    for d in _candidates(os.path.join(out_dir, "ckpt")):
        remove_dir(d)


# -----------------------------------------------------------------------------
# resuming


def _load(model, optimizer, state, optim_state):
    if dist.is_initialized():  # every rank reads the whole file and keeps its shard
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)
        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
        set_model_state_dict(model, state, options=opts)
        if optimizer is not None:
            set_optimizer_state_dict(model, optimizer, optim_state, options=opts)
    else:
        model.load_state_dict(state)
        if optimizer is not None:
            optimizer.load_state_dict(optim_state)


def load_run(out_dir, model, optimizer, others=None):
    """Load what open_run found into model/optimizer (and `others`, as save_run took them) -> (step, extra). A
    finished run loads its final weights only and returns its step count: the training loop is skipped. The model
    must already be built with the same shapes (and sharded, if FSDP). Every rank restores its own RNG states."""
    point = resume_point(out_dir)
    if point is None:
        return 0, {}
    path, step, finished = point
    if finished:
        _load(model, None, load_model(path).state_dict(), None)
        print0(f"{path}: this run finished at step {step}; not training again, only saving and evaluating "
               f"(--resume=no trains from scratch)")
        return step, {}
    st = torch.load(os.path.join(path, "train_state.pt"), map_location="cpu", weights_only=False)
    for name, (m, o) in {"": (model, optimizer), **(others or {})}.items():
        _load(m, o, load_model(os.path.join(path, name)).state_dict(), st["optimizers"][name])
    rank = dist_info()[0]
    if rank < len(st["rng"]):
        s = st["rng"][rank]
        torch.set_rng_state(s["torch"])
        random.setstate(s["python"])
        np.random.set_state(s["numpy"])
        if s["cuda"] is not None and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])
    else:
        print(f"rank {rank}: {path} has the RNG states of {len(st['rng'])} ranks only; this rank keeps its seed")
    print0(f"resumed from {path} at step {step}")
    return step, st["extra"]
