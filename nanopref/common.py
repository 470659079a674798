"""Small shared mechanism: paths, config parsing, JSONL I/O with clear errors, atomic writes,
distributed init, seeding and per-run metric logging. Scripts import from here; nothing here
knows about any algorithm."""
import dataclasses
import json
import os
import random
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Real benchmark / preference files. One setting for tests, evaluators and loaders.
DATA_DIR = os.environ.get("NANOPREF_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))
# The built world and the caches (reference log-probs, Best-of-N samples, code results). Run directories are each
# script's --out_dir instead (default out/<stage>, relative to the working directory).
OUT_DIR = os.environ.get("NANOPREF_OUT", os.path.join(REPO_ROOT, "out"))


def data_path(*parts):
    return os.path.join(DATA_DIR, *parts)


# -----------------------------------------------------------------------------
# config: one dataclass per script, overridden as --key=value


def _convert(field, raw):
    typ = field.type if isinstance(field.type, type) else type(field.default)
    if typ is bool:
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"--{field.name}={raw}: expected true/false")
    if typ in (int, float, str):
        try:
            return typ(raw)
        except ValueError:
            raise ValueError(f"--{field.name}={raw}: expected {typ.__name__}") from None
    if field.default is None:  # Optional[...] fields default to None: keep the string
        return None if raw.lower() == "none" else raw
    raise ValueError(f"--{field.name}: unsupported type {field.type}")


def fill_defaults(cfg, defaults):
    """Set each field named in `defaults` that the command line left unset (0 or "") to its default: the scripts
    keep two sets, the embedded world's and the paper's, and pick one once the data source is known."""
    for k, v in defaults.items():
        if not getattr(cfg, k):
            setattr(cfg, k, v)


def parse_config(cls, argv=None):
    """Build `cls()` and apply `--key=value` overrides; unknown keys are an error naming them."""
    argv = sys.argv[1:] if argv is None else argv
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            print(f"usage: --key=value overrides of {cls.__name__}:")
            for f in fields.values():
                print(f"  --{f.name}={f.default!r}")
            sys.exit(0)
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"argument {arg!r}: expected --key=value")
        key, raw = arg[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in fields:
            raise SystemExit(f"unknown config key --{key}; known: {', '.join(fields)}")
        try:
            kwargs[key] = _convert(fields[key], raw)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    return cls(**kwargs)


def print_config(cfg):
    print0(f"{type(cfg).__name__}:")
    for k, v in dataclasses.asdict(cfg).items():
        print0(f"  {k} = {v!r}")


# -----------------------------------------------------------------------------
# files


def read_jsonl(path, required=()):
    """Read a JSONL file; a malformed line or missing field raises ValueError naming file:line."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    opener = open
    if path.endswith(".gz"):
        import gzip
        opener = gzip.open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"{path}:{i}: missing field(s) {missing}; has {sorted(row)}")
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
    """One JSONL file per run: each `log(step, **metrics)` appends a line and prints one line."""

    def __init__(self, path, resume=False):
        self.path = path
        if is_main():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            if not resume and os.path.exists(path):
                os.remove(path)
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
