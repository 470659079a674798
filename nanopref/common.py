"""Small shared mechanism: paths, JSONL I/O with clear errors, atomic writes, distributed init, seeding and
per-run metric logging (config parsing is nanopref/config.py). Scripts import from here; nothing here
knows about any algorithm."""
import hashlib
import inspect
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
# files


class InputError(ValueError, SystemExit):
    """A bad input file, data row or checkpoint, its message naming file:line, field or flag. A ValueError to code
    that calls the loaders, and a SystemExit too, so a script that does not catch it ends with just the message and
    exit status 1, no traceback. (ValueError and SystemExit combine: neither adds fields of its own in C.)"""

    def __init__(self, message):
        super().__init__(message)
        self.code = message  # what SystemExit prints; ValueError's __init__ (first in the MRO) does not set it


def text_lines(path):
    """Yield (line number, text) for each line of a UTF-8 text file (.gz too; a leading byte-order mark dropped).
    Bytes that are not UTF-8, or a truncated or corrupt .gz, are an InputError naming path:line."""
    import gzip
    import zlib
    i = 0
    try:
        # binary lines decoded one by one: a decoding error then names its own line (a text stream decodes ahead)
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            for i, raw in enumerate(f, 1):
                try:
                    yield i, raw.decode("utf-8-sig" if i == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{i}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                                     ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # gzip's errors surface while reading the next line
        raise InputError(f"{path}: truncated or corrupt gzip data after line {i} ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def jsonl_rows(path, raw=False):
    """Yield (line number, row), or (line number, row, line text) with raw, from a JSONL file (.gz too). Line
    numbers count blank lines, as an editor does. Every problem is an InputError naming path:line: a missing or
    unreadable file, bytes that are not UTF-8, a truncated or corrupt .gz, malformed JSON, a line that is not a JSON
    object."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: a directory, not a JSONL file")
    for i, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
        yield (i, row, line) if raw else (i, row)


def read_json(path):
    """A JSON file -> its value; unreadable or malformed is an InputError naming the file and the position."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


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
