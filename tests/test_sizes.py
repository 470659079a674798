"""The reading budget (STYLE.md): model.py <= 400 lines, each top-level script <= 500, every other module <= 300,
the README <= 250; and the rooms: nothing under nanopref/world imports model code (tests/test_world_rooms.py).
Files over budget today are listed with their current size as a ceiling, so they can shrink but not grow."""
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVER = {  # debt: split or simplify these, then delete their line here
    "nanopref/checkpoint.py": 320,       # loading: HF and Meta layouts, tokenizer checks (saving is save.py)
    "nanopref/runs.py": 311,
    "nanopref/model.py": 400,
    "nanopref/ifeval_checks.py": 303,
    "nanopref/evals/code_exec.py": 370,
    "nanopref/evals/sandbox_child.py": 320,  # seccomp tables
}


def lines(path):
    with open(os.path.join(ROOT, path)) as f:
        return sum(1 for _ in f)


def budget(path):
    if path in OVER:
        return OVER[path]
    return 500 if "/" not in path else 300


def test_files_within_budget():
    files = [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "*.py")) +
             glob.glob(os.path.join(ROOT, "nanopref", "**", "*.py"), recursive=True)]
    over = {f: lines(f) for f in files if lines(f) > budget(f)}
    assert not over, f"over budget (lines): {over}"


def test_readme_is_short():
    assert lines("README.md") <= 250
