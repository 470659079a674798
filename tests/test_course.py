"""The course (docs/course/): every code link points at a line holding its code, every lesson's command runs (on the
smallest preset, a few steps), in order, each on the previous lesson's run directory, and every metric those runs
log is explained in docs/metrics.md."""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "dev"))
import course_links  # noqa: E402

LESSONS = sorted(glob.glob(os.path.join(ROOT, "docs", "course", "0*.md")))
# what makes each script quick here: the smallest preset where a model is made, a couple of steps, a few prompts
FAST = {"train_sft.py": ["--preset=test", "--max_steps=2", "--eval_limit=2"],
        "train_rm.py": ["--max_steps=2", "--bon_n=2", "--bon_limit=2"],
        "train_dpo.py": ["--max_steps=2", "--eval_every=0", "--eval_limit=2"],
        "train_ppo.py": ["--max_steps=1", "--batch_size=16", "--minibatch=8", "--eval_limit=2"],
        "evaluate.py": ["--limit=2"]}


def lesson_command(path):
    """The command of a lesson's "Run it" block."""
    text = open(path).read()
    block = re.search(r"\*\*Run it\*\*.*?```bash\n(.*?)```", text, re.S)
    assert block, f"{path}: no **Run it** block"
    return block.group(1).strip()


def test_every_code_link_resolves():
    assert len(LESSONS) == 7
    links = [link for md in LESSONS for link in course_links.links(md)]
    assert len(links) >= 25
    assert course_links.check() == []


def test_lessons_have_equation_code_command_and_exercises():
    for md in LESSONS:
        text = open(md).read()
        for part in ("**Equation", "**The code.**", "**Run it**", "**What to observe.**", "**Exercises.**"):
            assert part in text, f"{md}: missing {part}"
        assert len(re.findall(r"^\d\. ", text.split("**Exercises.**")[1], re.M)) >= 2, md


def metric_names():
    text = open(os.path.join(ROOT, "docs", "metrics.md")).read()
    return {k for cell in re.findall(r"^\| ([^|]+) \|", text, re.M) for k in re.findall(r"`([^`]+)`", cell)}


def documented(key, names):
    return key in names or any(re.fullmatch(n.replace("<c>", r"\w+").replace("<section>", r"\w+"), key)
                               for n in names if "<" in n)


@pytest.mark.slow
def test_lesson_commands_run_in_order(tmp_path):
    runs = str(tmp_path / "course")
    for md in LESSONS:
        cmd = lesson_command(md).replace("out/course", runs)
        argv = shlex.split(cmd)
        if argv[:3] == ["python", "-m", "pytest"]:  # lesson 1 runs tests this suite runs anyway: check they exist
            assert all(os.path.exists(os.path.join(ROOT, a)) for a in argv[3:] if a.endswith(".py"))
            continue
        assert argv[0] == "python", cmd
        script = argv[1]
        p = subprocess.run([sys.executable] + argv[1:] + FAST.get(script, []), cwd=ROOT, capture_output=True,
                           text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert p.returncode == 0, f"{md}: {cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    names = metric_names()
    for path in glob.glob(os.path.join(runs, "*", "metrics.jsonl")):
        keys = {k for line in open(path) for k in json.loads(line)} - {"step", "time"}
        missing = sorted(k for k in keys if not documented(k, names))
        assert not missing, f"{path}: metrics not in docs/metrics.md: {missing}"
