"""Fails when a function is longer than --max lines (from `def` to its last line) or a file longer than
--file-max lines, under the given roots: small functions and files a reader can hold in their head.

Ruff checks complexity (C901); this checks length, which ruff does not. Usage (make lint):
    python .ci/sizes.py shared function_app.py --max 60 --file-max 400
    python .ci/sizes.py tests --max 0 --file-max 800        (0: that size is not checked)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def sources(root: Path) -> list[Path]:
    return [root] if root.is_file() else sorted(root.rglob("*.py"))


def functions(path: Path) -> list[tuple[int, str]]:
    """(length in lines, "path:line name") of every function and method in `path`."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            found.append((length, f"{path}:{node.lineno} {node.name}"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--max", type=int, default=60, help="lines a function may have (0: unchecked)")
    parser.add_argument("--file-max", type=int, default=0, help="lines a file may have (0: unchecked)")
    parser.add_argument("--report", action="store_true", help="print the five longest functions and files")
    args = parser.parse_args()
    paths = [path for root in args.roots for path in sources(root)]
    found = sorted((f for path in paths for f in functions(path)), reverse=True)
    files = sorted(((len(p.read_text(encoding="utf-8").splitlines()), str(p)) for p in paths), reverse=True)
    if args.report:
        for length, where in found[:5] + files[:5]:
            print(f"{length:4d}  {where}")
    problems = [
        f"{where} is {length} lines long (at most {args.max}): split it into named steps"
        for length, where in found
        if args.max and length > args.max
    ] + [
        f"{where} has {length} lines (at most {args.file_max}): split it by concern"
        for length, where in files
        if args.file_max and length > args.file_max
    ]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
