"""Keep the course's code links valid: every link of the form [`code`](path#L12) in docs/ must point at a line
that contains `code`. A test runs check(); after code moves, this script rewrites the line numbers.

    python dev/course_links.py            # rewrite stale line numbers (to the first line containing the code)
    python dev/course_links.py --check    # list stale or unresolvable links, exit 1 if any
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[`([^`]+)`\]\(([^)#\s]+)#L(\d+)\)")


def links(md):
    """-> [(match, code, target file, line)] for every code link of a markdown file."""
    text = open(md).read()
    return [(m, m.group(1), os.path.normpath(os.path.join(os.path.dirname(md), m.group(2))), int(m.group(3)))
            for m in LINK.finditer(text)]


def find(path, code):
    """1-based number of the first line of `path` containing `code`, or None."""
    if not os.path.exists(path):
        return None
    for i, line in enumerate(open(path), 1):
        if code in line:
            return i
    return None


def check(files=None):
    """-> list of problems 'file: [`code`](target#Ln): why'."""
    problems = []
    for md in files or sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)):
        for m, code, path, line in links(md):
            lines = open(path).read().splitlines() if os.path.exists(path) else []
            if not (0 < line <= len(lines) and code in lines[line - 1]):
                where = find(path, code)
                problems.append(f"{os.path.relpath(md, ROOT)}: {m.group(0)}: " +
                                (f"now at line {where}" if where else "code not found in the file"))
    return problems


def fix(md):
    text = open(md).read()
    for m, code, path, line in links(md):
        where = find(path, code)
        if where and where != line:
            text = text.replace(m.group(0), m.group(0).replace(f"#L{line})", f"#L{where})"))
    open(md, "w").write(text)


if __name__ == "__main__":
    if "--check" in sys.argv:
        bad = check()
        print("\n".join(bad) or "all links valid")
        sys.exit(1 if bad else 0)
    for md in sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)):
        fix(md)
    print("\n".join(check()) or "all links valid")
