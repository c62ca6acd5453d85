"""Import time of function_app.py, cold: what the Functions host pays to index the app before a cold start.

Each figure is the median over `repeats` fresh interpreters (after one run that compiles the .pyc files, as a
deployment ships them):

- `python -X importtime -c "import function_app"`: cumulative time of the top-level `function_app` line,
  i.e. with everything it imports, azure.functions included;
- the same with azure.functions imported first (`-c "import azure.functions, function_app"`): what
  function_app.py adds on a Python worker, which has azure.functions loaded before it indexes the app;
- wall time of `python -c "import function_app"` minus that of `python -c pass`.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.job import REPO_ROOT

_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)\s*$")


@dataclass
class ImportFigures:
    cold: list[float]  # seconds: cumulative of function_app, cold
    marginal: list[float]  # seconds: cumulative of function_app with azure.functions already imported
    wall: list[float]  # seconds: `import function_app` minus an empty interpreter
    heaviest: list[tuple[str, float]]  # function_app's direct imports, (module, median cumulative seconds)

    @property
    def cold_s(self) -> float:
        return statistics.median(self.cold)

    @property
    def marginal_s(self) -> float:
        return statistics.median(self.marginal)

    @property
    def wall_s(self) -> float:
        return statistics.median(self.wall)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )


def parse_importtime(stderr: str, module: str = "function_app") -> tuple[float, list[tuple[str, float]]]:
    """(cumulative seconds of the top-level `module` line, its direct imports heaviest first).

    -X importtime prints a module after everything it imports, indented by nesting depth (one space at the
    top level, two more per level)."""
    matches = [m for m in map(_LINE.match, stderr.splitlines()) if m]
    entries = [(len(m.group(3)), m.group(4), int(m.group(2)) / 1e6) for m in matches]
    for index, (indent, name, cumulative) in enumerate(entries):
        if name == module and indent == 1:
            children = []
            for child_indent, child, child_cumulative in reversed(entries[:index]):
                if child_indent == 1:
                    break
                if child_indent == 3:
                    children.append((child, child_cumulative))
            return cumulative, sorted(children, key=lambda c: -c[1])
    raise ValueError(f"no top-level `{module}` line in the -X importtime output")


def import_figures(repeats: int = 5) -> ImportFigures:
    _run(["-c", "import function_app"])
    figures = ImportFigures(cold=[], marginal=[], wall=[], heaviest=[])
    children: dict[str, list[float]] = {}
    for _ in range(repeats):
        cold = _run(["-X", "importtime", "-c", "import function_app"])
        total, direct = parse_importtime(cold.stderr)
        for name, seconds in direct:
            children.setdefault(name, []).append(seconds)
        figures.cold.append(total)
        marginal, _ = parse_importtime(
            _run(["-X", "importtime", "-c", "import azure.functions, function_app"]).stderr
        )
        figures.marginal.append(marginal)
        start = time.perf_counter()
        _run(["-c", "pass"])
        empty = time.perf_counter() - start
        start = time.perf_counter()
        _run(["-c", "import function_app"])
        figures.wall.append(time.perf_counter() - start - empty)
    medians = [(name, statistics.median(times)) for name, times in children.items()]
    figures.heaviest = sorted(medians, key=lambda child: -child[1])
    return figures
