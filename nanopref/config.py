"""Config: one dataclass per script, its defaults the values a bare run uses, overridden as --key=value;
--recipe=paper applies the paper's values under any flag given; --help prints each field's default, comment and
paper value; check_config checks every field with a known meaning (CHECKS) before any data or model loads."""
import dataclasses
import inspect
import math
import re
import sys
import typing

from nanopref.common import print0


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
