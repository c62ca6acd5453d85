"""One measured run in a fresh interpreter: `python -m bench.child job|naive|lookups [...]`.

The parent (bench.main) keeps the stand-ins in its own process and passes the job's settings in the
environment, exactly as app settings reach the Functions host. This process prints one JSON object on its
last stdout line: wall time of the run, peak RSS (VmHWM) and what the run reported.

`job` calls the timer function registered in function_app.py the way the host does (devstack/demo.py does
the same); the clock covers the whole invocation, including the handler's own imports of the SDKs, the
Key Vault and token calls, every page, the upload and latest.json. `naive` runs bench.naive, `limit`
measures the network's limit (bench.limit) from a process like the job's. `lookups`
is the warm API instance of bench.lookups (it also serves the local host over HTTP for the parent),
`scale` the fresh API instance of bench.scale.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import time
from typing import Any

from bench.proc import peak_rss_mb


class _Events(logging.Handler):
    """Keeps (monotonic time, event, fields) of the job's structured log lines; parsed after the run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), record.getMessage()))

    def parsed(self) -> list[tuple[float, str, dict[str, Any]]]:
        out = []
        for at, message in self.records:
            name, _, fields = message.partition(" ")
            try:
                out.append((at, name, json.loads(fields) if fields.startswith("{") else {}))
            except ValueError:
                out.append((at, name, {}))
        return out


def run_job(profile: str | None, invocations: int = 1) -> dict[str, Any]:
    """Runs the timer function `invocations` times in this process: the first on a cold worker (the
    handler's imports happen inside it), the others on a warm one. Peak RSS covers all of them."""
    events = _Events()
    shared_log = logging.getLogger("shared")
    shared_log.setLevel(logging.INFO)
    shared_log.addHandler(events)
    shared_log.propagate = False

    started = time.perf_counter()
    from azure.functions.timer import TimerRequest

    import function_app

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    timer = functions["snapshot_customers"].get_user_function()
    indexed = time.perf_counter()
    rss_before = peak_rss_mb()

    profiler = None
    if profile:
        from pyinstrument import Profiler  # only for `--profile`; not a requirement of the bench

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    runs = []
    for invocation in range(invocations):
        if invocation:
            time.sleep(1.05 - time.time() % 1)  # snapshot names have one-second resolution
        events.records.clear()
        start = time.perf_counter()
        timer(TimerRequest(past_due=False))
        seconds = time.perf_counter() - start
        runs.append(_describe(start, seconds, events.parsed()))
    if profiler is not None:
        profiler.stop()
        with open(profile, "w", encoding="utf-8") as out:
            out.write(profiler.output_html() if profile.endswith(".html") else profiler.output_text())
    return {
        "runs": runs,
        "indexSeconds": indexed - started,
        "peakRssMB": peak_rss_mb(),
        "rssBeforeRunMB": rss_before,
    }


def _describe(
    start: float, seconds: float, parsed: list[tuple[float, str, dict[str, Any]]]
) -> dict[str, Any]:
    pages = [at for at, name, _ in parsed if name == "snapshot.page"]
    summary = next((fields for _, name, fields in parsed if name == "snapshot.summary"), {})
    numbered = sorted(((b - a, n + 2) for n, (a, b) in enumerate(itertools.pairwise(pages))), reverse=True)
    gaps = sorted(gap for gap, _ in numbered)
    return {
        "seconds": seconds,
        "pageGaps": {
            "median": statistics.median(gaps) if gaps else None,
            "p90": gaps[int(len(gaps) * 0.9)] if gaps else None,
            "max": gaps[-1] if gaps else None,
            "slowest": [[page, round(gap, 4)] for gap, page in numbered[:5]],  # [page number, seconds]
        },
        "firstPageSeconds": (pages[0] - start) if pages else None,
        "afterLastPageSeconds": (start + seconds - pages[-1]) if pages else None,
        "pages": len(pages),
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child", description=__doc__)
    parser.add_argument("what", choices=("job", "naive", "limit", "lookups", "scale"))
    parser.add_argument("--profile", help="job only: write a pyinstrument profile (.html or .txt)")
    parser.add_argument("--invocations", type=int, default=1, help="job only: timer runs in this process")
    parser.add_argument("--spec", help="lookups, scale: JSON file written by the parent")
    args = parser.parse_args(argv)
    if args.what == "job":
        result = run_job(args.profile, args.invocations)
    elif args.what == "limit":
        import os

        from bench.limit import measure

        result = measure(int(os.environ.get("BENCH_SAMPLES", "20")))
    elif args.what == "lookups":
        from bench.lookups import instance_main

        result = instance_main(args.spec)
    elif args.what == "scale":
        from bench.scale import instance_main as scale_main

        result = scale_main(args.spec)
    else:
        from bench.naive import run_naive

        start = time.perf_counter()
        result = run_naive()
        result["seconds"] = time.perf_counter() - start
        result["peakRssMB"] = peak_rss_mb()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
