"""Rooms: the world (nanopref/world) imports nothing above it: no torch, no model, sampler or evaluators, directly
(read from the source with ast, imports inside functions included) or through another nanopref module (a fresh
interpreter that builds off-policy preference data never loads torch)."""
import ast
import os
import subprocess
import sys

import nanopref.world

WORLD = os.path.dirname(nanopref.world.__file__)
FORBIDDEN = ("torch", "nanopref.evals", "nanopref.model", "nanopref.generate", "nanopref.checkpoint",
             "nanopref.onpolicy")


def imports(source, package="nanopref.world"):
    """Absolute names of every module `source` imports, anywhere in it (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names += [mod] + [f"{mod}.{a.name}" for a in node.names]  # "from nanopref import evals"
    return names


def forbidden(source):
    return sorted({n for n in imports(source) for f in FORBIDDEN if n == f or n.startswith(f + ".")})


def test_the_checker_sees_every_form_of_import():
    for line in ["import torch", "import torch.nn as nn", "from torch import nn", "from nanopref.evals import lm",
                 "from nanopref import evals", "from .. import model", "from ..generate import generate",
                 "def f():\n    from nanopref.evals.lm import NanoprefLM", "import nanopref.checkpoint"]:
        assert forbidden(line), line
    for line in ["import json", "from . import constraints", "from .kb import find", "from nanopref.common import x",
                 "from nanopref.ifeval_checks import check", "import torchvision_free_name"]:
        assert not forbidden(line), line


def test_no_world_module_imports_anything_above_the_world():
    bad = {}
    for f in sorted(os.listdir(WORLD)):
        if f.endswith(".py"):
            with open(os.path.join(WORLD, f)) as fh:
                found = forbidden(fh.read())
            if found:
                bad[f] = found
    assert not bad, f"nanopref/world imports what it must not: {bad}"


def test_building_off_policy_data_never_loads_torch(tmp_path):
    code = ("import sys, random\n"
            "from nanopref.world import build, prefs, pool, make_kb, make_examples\n"
            "kb = make_kb(random.Random(0))\n"
            "prefs.make_sets([ex for c in ('math', 'ifeval') for ex in make_examples(c, 20, random.Random(c), kb)], kb)\n"
            "loaded = sorted({m.split('.')[0] if m.startswith('torch') else m for m in sys.modules\n"
            "                 if m.startswith(('torch', 'nanopref.evals'))})\n"
            "assert not loaded, loaded\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(WORLD)), env={**os.environ, "NANOPREF_OUT": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
