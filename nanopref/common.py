"""Small shared mechanism: paths, config parsing, JSONL I/O with clear errors, atomic writes,
distributed init, seeding and per-run metric logging. Scripts import from here; nothing here
knows about any algorithm."""
import dataclasses
import hashlib
import inspect
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import typing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Real benchmark / preference files. One setting for tests, evaluators and loaders.
DATA_DIR = os.environ.get("NANOPREF_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
# The built world and the caches (reference log-probs, Best-of-N samples, code results). Run directories are each
# script's --out_dir instead (default out/<stage>, relative to the working directory).
OUT_DIR = os.environ.get("NANOPREF_OUT", os.path.join(REPO_ROOT, "out"))


def data_path(*parts):
    return os.path.join(DATA_DIR, *parts)


# -----------------------------------------------------------------------------
# config: one dataclass per script, its defaults the values a bare run uses, overridden as --key=value


def _convert(f, raw):
    """The command line's string as the field's type. `int | None` fields take "none" for None (unset)."""
    declared = type(f.default) if isinstance(f.type, str) else f.type  # a string under `from __future__ import ...`
    if type(None) in typing.get_args(declared) and raw.lower() == "none":
        return None
    typ = ([t for t in typing.get_args(declared) if t is not type(None)] or [declared])[0]
    if typ is bool:
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"--{f.name}={raw}: expected true or false")
    try:
        return typ(raw)
    except ValueError:
        raise ValueError(f"--{f.name}={raw}: expected {typ.__name__}") from None


def field_comments(cls):
    """{field: its trailing comment in the class source} (continuation lines of comments joined), for --help."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out, last = {}, None
    for line in lines[1:]:
        m = re.match(r"\s+(\w+)\s*:[^#]*?(?:#\s?(.*))?$", line)
        if m and not line.strip().startswith("#"):
            last = m.group(1)
            out[last] = (m.group(2) or "").strip()
        elif last and line.strip().startswith("#"):
            out[last] += " " + line.strip()[1:].strip()
        else:
            last = None
    return out


def parse_config(cls, argv=None, paper=None):
    """Build `cls()` and apply `--key=value` overrides; unknown keys are an error naming them.
    paper: {field: value}, the paper recipe's values: `--recipe=paper` (a field of cls) sets them, except the fields
    given on the command line. -h/--help prints every field with its default, its comment and its paper value."""
    argv = sys.argv[1:] if argv is None else argv
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            comments = field_comments(cls)
            print(f"{cls.__name__}: --key=value overrides (default, then what it means; [paper: --recipe=paper's])")
            for name, f in fields.items():
                extra = f"  [paper: {paper[name]!r}]" if paper and name in paper else ""
                print(f"  --{name}={f.default!r}  {comments.get(name, '')}{extra}")
            sys.exit(0)
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"argument {arg!r}: expected --key=value (see --help)")
        key, raw = arg[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in fields:
            raise SystemExit(f"unknown config key --{key}; known: {', '.join(fields)}")
        try:
            given[key] = _convert(fields[key], raw)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    cfg = cls(**given)
    if paper is not None:
        if cfg.recipe not in ("world", "paper"):
            raise SystemExit(f"--recipe={cfg.recipe}: expected world or paper")
        if cfg.recipe == "paper":
            for k, v in paper.items():
                if k not in given:
                    setattr(cfg, k, v)
    cfg._given = frozenset(given)  # the fields the command line set (not a field: neither printed nor saved)
    return cfg


def require_recipe(cfg, paper, what):
    """Real data with the world's hyperparameters is almost surely a mistake: ask for the recipe explicitly."""
    if cfg.recipe == "world" and "recipe" not in cfg._given:
        world = {f.name: f.default for f in dataclasses.fields(cfg)}
        show = lambda d: ", ".join(f"{k}={d[k]}" for k in paper)  # noqa: E731
        raise SystemExit(f"{what} is real data: add --recipe=paper for the paper's hyperparameters ({show(paper)}), "
                         f"or --recipe=world to keep the world's ({show(world)})")


# What each common field must satisfy: name -> (test, what it must be). One meaning per name across the scripts,
# so one table checks them all, before any data or model loads.
_pos_int = (lambda v: isinstance(v, int) and v > 0, "a positive integer")
_opt_pos_int = (lambda v: v is None or (isinstance(v, int) and v > 0), "a positive integer or none")
_nonneg_int = (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
_pos = (lambda v: v > 0 and math.isfinite(v), "a positive number")
_opt_pos = (lambda v: v is None or (v > 0 and math.isfinite(v)), "a positive number or none")
_nonneg = (lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
_frac = (lambda v: 0 <= v < 1, "in [0, 1)")
CHECKS = dict(
    batch_size=_pos_int, micro_batch=_pos_int, minibatch=_pos_int, epochs=_pos_int, ppo_epochs=_pos_int,
    max_len=_pos_int, max_prompt_len=_pos_int, max_new_tokens=_pos_int, log_every=_pos_int, eval_batch=_pos_int,
    max_steps=_opt_pos_int, max_pairs=_opt_pos_int, eval_limit=_opt_pos_int, gen_batch=_opt_pos_int,
    limit=_opt_pos_int, bon_limit=_opt_pos_int, stop_after=_opt_pos_int, head_std=(lambda v: v is None or v > 0,
                                                                                 "a positive number or none"),
    save_every=_nonneg_int, eval_every=_nonneg_int, bon_n=_nonneg_int, world_seed=_nonneg_int, seed=_nonneg_int,
    lr=_pos, grad_clip=_pos, temperature=_pos, beta=_pos, cliprange=_pos, cliprange_value=_pos,
    kl_coef=_nonneg, kl_target=_opt_pos, kl_horizon=_pos, weight_decay=_nonneg, vf_coef=_nonneg, margin=_nonneg,
    margin_scale=_nonneg, simpo_gamma=_nonneg, warmup=_frac, end_lr_ratio=(lambda v: 0 <= v <= 1, "in [0, 1]"),
    adam_beta2=_frac, label_smoothing=(lambda v: 0 <= v < 0.5, "in [0, 0.5)"), gamma=(lambda v: 0 < v <= 1, "in (0, 1]"),
    lam=(lambda v: 0 <= v <= 1, "in [0, 1]"), dtype=(lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16"),
    template=(lambda v: v in ("tulu", "llama2", "none"), "tulu, llama2 or none"),
    split=(lambda v: v in ("val", "test"), "val or test"), eval_split=(lambda v: v in ("val", "test"), "val or test"),
    device=(lambda v: v == "auto" or re.fullmatch(r"cpu|cuda(:\d+)?|mps", v), "auto, cpu, cuda, cuda:N or mps"),
    resume=(lambda v: v in ("auto", "force", "no"), "auto, force or no"),
)


def check_config(cfg):
    """Every field with a known meaning checked against it; the first violation is an error naming the flag."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in CHECKS:
            ok, what = CHECKS[f.name]
            try:
                good = bool(ok(value))
            except TypeError:
                good = False
            if not good:
                raise SystemExit(f"--{f.name}={value}: must be {what}")


def print_config(cfg):
    print0(f"{type(cfg).__name__}:")
    for k, v in dataclasses.asdict(cfg).items():
        print0(f"  {k} = {v!r}")


# -----------------------------------------------------------------------------
# files


class InputError(ValueError, SystemExit):
    """A bad input file, data row or checkpoint, its message naming file:line, field or flag. A ValueError to code
    that calls the loaders, and a SystemExit too, so a script that does not catch it ends with just the message and
    exit status 1, no traceback. (ValueError and SystemExit combine: neither adds fields of its own in C.)"""

    def __init__(self, message):
        super().__init__(message)
        self.code = message  # what SystemExit prints; ValueError's __init__ (first in the MRO) does not set it


def jsonl_rows(path):
    """Yield (line number, row) from a JSONL file (.gz too). Line numbers count blank lines, as an editor does.
    Every problem is an InputError naming path:line: a missing or unreadable file, bytes that are not UTF-8, a
    truncated or corrupt .gz, malformed JSON, a line that is not a JSON object."""
    import gzip
    import zlib
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: a directory, not a JSONL file")
    i = 0
    try:
        # binary lines decoded one by one: a decoding error then names its own line (a text stream decodes ahead)
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            for i, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if i == 1 else "utf-8")  # a leading byte-order mark is fine
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{i}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                                     ) from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
                yield i, row
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # gzip's errors surface while reading the next line
        raise InputError(f"{path}: truncated or corrupt gzip data after line {i} ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def read_jsonl(path, required=()):
    """Read a JSONL file (jsonl_rows' checks); a row missing a required field is an InputError naming file:line."""
    rows = []
    for i, row in jsonl_rows(path):
        missing = [k for k in required if k not in row]
        if missing:
            raise InputError(f"{path}:{i}: missing field(s) {missing}; has {sorted(row)}")
        rows.append(row)
    return rows


def atomic_write(path, write_fn, mode="w"):
    """Call write_fn(f) on a temp file in the same directory, fsync, then rename over `path`,
    so a killed process never leaves a half-written file behind."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_jsonl(path, rows):
    atomic_write(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path, obj):
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, ensure_ascii=False))


# -----------------------------------------------------------------------------
# runtime


# torch and numpy are imported where used: the world (nanopref.world) uses this module's file helpers without torch


def seed_all(seed):
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dist_info():
    """(rank, local_rank, world_size) from torchrun's environment; (0, 0, 1) under plain python."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def is_main():
    return dist_info()[0] == 0


def print0(*args, **kwargs):
    if is_main():
        print(*args, **kwargs, flush=True)


def autodevice(device="auto"):
    import torch
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", dist_info()[1])
    return torch.device("cpu")


class MetricsLog:
    """One JSONL file per run: each `log(step, **metrics)` appends a line and prints one line. A run that starts at
    step `start` keeps only the rows of earlier steps (rewritten atomically): a killed run's rows logged after its
    last checkpoint are logged again by the resumed run, never twice; start 0 begins an empty file."""

    def __init__(self, path, start=0):
        self.path = path
        if is_main():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if os.path.exists(path):
                with open(path) as f:
                    # a line torn by a kill has no newline yet: dropped too
                    keep = [line for line in f if line.endswith("\n") and json.loads(line)["step"] < start]
                atomic_write(path, lambda f: f.writelines(keep))
        self.t0 = time.time()

    def log(self, step, quiet=False, **metrics):
        if not is_main():
            return
        row = {"step": step, "time": round(time.time() - self.t0, 2), **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if not quiet:
            parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
            print(f"step {step:5d} | " + " | ".join(parts), flush=True)


def source_hash(*objs):
    """sha256 of the source of functions, classes or modules (by object or module name): a cache keyed on it is
    rebuilt when the code that computed its content changes."""
    import importlib
    objs = [importlib.import_module(o) if isinstance(o, str) else o for o in objs]
    return hashlib.sha256("".join(inspect.getsource(o) for o in objs).encode()).hexdigest()


def fault_point(name):
    """For tests only: NANOPREF_FAULT=name (or name@k) ends the process right here, as a kill -9 would (no cleanup,
    exit code 137), the first (k-th) time it passes fault_point(name). Tests use it to kill a run inside each window
    of a checkpoint save; outside them the variable is unset and this does nothing."""
    want = os.environ.get("NANOPREF_FAULT", "")
    target, _, k = want.partition("@")
    if target == name:
        _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
        if _FAULT_HITS[name] == int(k or 1):
            sys.stdout.flush()
            os._exit(137)


_FAULT_HITS = {}
