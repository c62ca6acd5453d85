"""Fails when a function in the given packages is longer than MAX_LINES (from `def` to its last line).

Ruff checks complexity (C901); this checks length, which ruff does not. Usage:
    python .ci/function_length.py shared [--max 60] [--report]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MAX_LINES = 60


def functions(root: Path) -> list[tuple[int, str]]:
    """(length in lines, "path:line name") of every function and method under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((length, f"{path}:{node.lineno} {node.name}"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--max", type=int, default=MAX_LINES)
    parser.add_argument("--report", action="store_true", help="print the five longest functions")
    args = parser.parse_args()
    found = sorted((f for root in args.roots for f in functions(root)), reverse=True)
    if args.report:
        for length, where in found[:5]:
            print(f"{length:4d}  {where}")
    too_long = [(length, where) for length, where in found if length > args.max]
    for length, where in too_long:
        print(f"{where} is {length} lines long (at most {args.max}): split it into named steps")
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())
