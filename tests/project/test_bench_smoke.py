"""`python -m bench --quick`: the benchmark harness runs end to end and prints every figure (not the targets:
tiny sizes on a shared CI machine say nothing about them; `make bench` does)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from bench.importtime import parse_importtime
from bench.lookups import percentile
from tests.support.paths import REPO

REPO_ROOT = REPO
FIGURES = (
    "run time / limit",
    "run time vs naive client",
    "peak RSS growth from",
    "snapshot bytes stored / raw JSON bytes",
    "lookup by id, warm instance",
    "lookup by id through the local host over HTTP",
    "first lookup after a new snapshot is published",
    "whole snapshot answer",
    "change events sent per second",
    "import time of `function_app.py`",
)
SCALE_FIGURES = (
    "stored snapshot; its index",
    "first lookup by id of a fresh instance",
    "lookup by id, warm, in-process, random ids",
    "`?domain=` warm p50",
    "`?q=contoso` warm p50",
    "whole snapshot (gzip), answer or 307 followed",
    "longest lookup while the next snapshot is published",
    "API instance peak RSS growth",
    "API instance peak RSS, absolute",
)
QUICK = "n/a (quick)"  # the verdict of a row with a target in a --quick run
NUMBER = re.compile(r"\*\*([+-]?\d[\d,]*(?:\.\d+)?)")


def test_quick_run_prints_every_figure(tmp_path):
    output = tmp_path / "latest.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert output.read_text() == done.stdout
    main_table, _, scale_table = done.stdout.partition("| lookup API at scale |")
    scale_table, _, job_table = scale_table.partition("| job at scale |")
    lines = main_table.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| figure")]
    assert len(rows) == len(FIGURES)
    for row, figure in zip(rows, FIGURES, strict=True):
        assert row.startswith(f"| {figure}"), (figure, row)
    for row in rows:
        figure, _how, measured, _target, met = (cell.strip() for cell in row.strip("|").split(" | "))
        values = [float(v.replace(",", "")) for v in NUMBER.findall(measured)]
        assert values, f"no bold number in {figure}: {measured}"
        assert all(v == v for v in values), measured  # no nan
        if not figure.startswith("peak RSS growth"):  # tiny sizes: growth may be noise either way
            assert all(v >= 0 for v in values), measured
        assert met in {QUICK, "report"}  # tiny sizes judge no target: none says yes or no
    ratio = float(NUMBER.findall(rows[0])[0])
    assert ratio >= 0.9, "the job cannot beat the network's limit by much; the limit is wrong"
    assert "Limit = pages x round trip" in done.stdout
    # The scale run: both sizes side by side, one fresh API instance each.
    assert scale_table.startswith(" 1,000 customers | 3,000 customers | target at 3,000 |")
    scale_rows = [line for line in scale_table.splitlines()[2:] if line.startswith("| ")]
    assert len(scale_rows) == len(SCALE_FIGURES)
    for row, figure in zip(scale_rows, SCALE_FIGURES, strict=True):
        assert row.startswith(f"| {figure}"), (figure, row)
    for row in scale_rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert all(NUMBER.findall(cell) for cell in cells[1:3]), row  # a bold figure for each size
        assert cells[-1] in {QUICK, ""}, row
    # The job's memory at scale: a quiet night and a night where every customer changed.
    assert job_table.startswith(" peak RSS growth, 200 → 3,000 customers | target | met? |")
    job_rows = [line for line in job_table.splitlines()[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in job_rows] == [
        "| timer function, second run (no customer changed)",
        "| timer function, second run (every customer changed)",
    ]
    assert all(NUMBER.findall(row) and row.endswith(f" {QUICK} |") for row in job_rows)
    assert "--quick: tiny sizes, so no target is judged" in done.stdout


def test_make_bench_passes_args_and_its_help_gives_the_documented_duration():
    dry = subprocess.run(
        [shutil.which("make") or "make", "-n", "bench", "ARGS=--quick --only events"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "-m bench --quick --only events" in dry.stdout
    documented = {
        minutes
        for page in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
        for minutes in re.findall(r"`make bench` \(about (\d+) minutes", page.read_text(encoding="utf-8"))
    }
    helped = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert documented and {re.search(r"full run \(about (\d+) minutes", helped).group(1)} == documented


def test_importtime_parsing():
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 | encodings",
            "import time:        50 |         50 |       werkzeug.http",
            "import time:       300 |        350 |     azure.functions._abc",
            "import time:      1000 |       1350 |   azure.functions",
            "import time:        20 |         20 |   shared",
            "import time:      2000 |       3370 | function_app",
        ]
    )
    total, children = parse_importtime(stderr)
    assert round(total * 1e6) == 3370
    assert [(name, round(seconds * 1e6)) for name, seconds in children] == [
        ("azure.functions", 1350),
        ("shared", 20),
    ]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0


def test_the_crafted_keys_bench_prints_both_kinds_of_keys():
    done = subprocess.run(
        [sys.executable, "-m", "bench.keys", "--customers", "500", "--lookups", "50"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "customers" in line]
    assert [row.split(",")[0] for row in rows] == ["| random ids", "| crafted ids"]
    for row in rows:
        assert len(NUMBER.findall(row)) == 3, row  # build seconds, lookup and absent lookup p50
