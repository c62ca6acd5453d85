"""The snapshot job against the network's limit, the naive client, and memory as the data grows.

The stand-ins (and Azurite) run in this process; each measured run is a child process (bench.child) with
the job's settings in its environment, so the job never competes with the stand-ins for the GIL.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.azurite import Azurite
from devstack.stack import DevStack

REPO_ROOT = Path(__file__).resolve().parent.parent
_containers = itertools.count(1)


class BenchError(RuntimeError):
    pass


def child_env(stack: DevStack, page_size: int) -> dict[str, str]:
    """The job's app settings for this stack, on top of a clean copy of this environment."""
    prefixes = ("PARTNER_CENTER_", "SNAPSHOT_", "AzureWebJobsStorage", "KEY_VAULT", "AZURE_", "MSI_", "API_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("IDENTITY_ENDPOINT", None)
    env.pop("IDENTITY_HEADER", None)
    env.update(stack.env)
    env.update(
        SNAPSHOT_CONTAINER=f"bench-{os.getpid()}-{next(_containers)}",
        PARTNER_CENTER_PAGE_SIZE=str(page_size),
        PYTHONPATH=str(REPO_ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run_child(
    what: str,
    env: dict[str, str],
    *,
    profile: str | None = None,
    invocations: int = 1,
    timeout: float = 1800,
) -> dict:
    args = [sys.executable, "-m", "bench.child", what, "--invocations", str(invocations)]
    args += ["--profile", profile] if profile else []
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"bench.child {what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def quiet_stand_ins() -> None:
    """The stand-ins hold every customer as Python objects in this process; a full collection walks them
    all (100 ms and more) while the Partner Center stand-in is serving a page. Partner Center does not do
    that, so the objects alive now are frozen out of the cyclic GC."""
    gc.collect()
    gc.freeze()


@dataclass
class JobFigures:
    customers: int
    latency: float
    page_size: int
    pages: int
    round_trip: float
    round_trip_samples: list[float]
    auth_seconds: float
    cold: list[dict[str, Any]]  # first invocation in a fresh worker process, one per measured child
    warm: list[dict[str, Any]]  # second invocation in the same worker
    naive: dict[str, Any]
    first_run: dict[str, Any] | None

    @property
    def limit(self) -> float:
        return self.pages * self.round_trip + self.auth_seconds

    @staticmethod
    def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]


def job_figures(
    azurite: Azurite,
    *,
    customers: int,
    latency: float,
    page_size: int,
    samples: int = 20,
    repeats: int = 3,
    warm_up: bool = True,
    profile: str | None = None,
) -> JobFigures:
    """One stack. With `warm_up`, a first run into an empty container, so that every measured run has a
    previous snapshot to compare with, as every night but the first. Then the limit, `repeats` worker
    processes that each run the timer function twice (cold, then warm worker), and the naive client."""
    with DevStack(customers=customers, page_latency=latency, azurite=azurite) as stack:
        stack.partner_center.warm(page_size)
        quiet_stand_ins()
        env = child_env(stack, page_size)
        first = None
        if warm_up:
            first = run_child("job", env)["runs"][0]
            _wait_for_next_second()  # snapshot names have one-second resolution
        limit = run_child("limit", {**env, "BENCH_SAMPLES": str(samples)})
        measured = [
            run_child("job", env, invocations=2, profile=profile if attempt == 0 else None)
            for attempt in range(repeats)
        ]
        naive = run_child("naive", env)
    pages = max(1, math.ceil(customers / page_size))
    for worker in measured:
        for run in worker["runs"]:
            if run["summary"].get("pages") != pages or run["summary"].get("customerCount") != customers:
                raise BenchError(f"a job run fetched {run['summary'].get('pages')} pages, expected {pages}")
    return JobFigures(
        customers=customers,
        latency=latency,
        page_size=page_size,
        pages=pages,
        round_trip=statistics.median(limit["roundTrips"]),
        round_trip_samples=limit["roundTrips"],
        auth_seconds=limit["authSeconds"],
        cold=[worker["runs"][0] for worker in measured],
        warm=[worker["runs"][1] for worker in measured],
        naive=naive,
        first_run=first,
    )


def change_everything(stack: DevStack, page_size: int) -> None:
    """The worst night for the change record: every customer renamed and the list in reverse order (no pair
    meets within the window: everything spills to disk and every customer is a changed entry)."""
    customers = list(reversed(stack.partner_center.customers))
    for customer in customers:
        profile = customer["companyProfile"]
        customer["companyProfile"] = {**profile, "companyName": profile["companyName"] + " (renamed)"}
    stack.partner_center.customers = customers
    stack.partner_center.warm(page_size)
    quiet_stand_ins()


def memory_figures(
    azurite: Azurite,
    *,
    sizes: tuple[int, ...],
    page_size: int,
    warm_up: bool = True,
    change_all: bool = False,
    naive: bool = True,
) -> dict[str, dict[int, dict[str, Any]]]:
    """Peak RSS of the job and of the naive client at each size. The job's measured run is its second
    (`warm_up`), so it also streams the previous snapshot and writes the change record, as every night but
    the first does; with `change_all`, against a list where every customer changed (change_everything).
    No added latency: only memory counts here, so the sizes run side by side."""
    runs: dict[str, dict[int, dict[str, Any]]] = {"job": {}, "naive": {}}

    def job(stack: DevStack, env: dict[str, str]) -> dict[str, Any]:
        if warm_up:
            run_child("job", env)
            _wait_for_next_second()
            if change_all:
                change_everything(stack, page_size)
        return run_child("job", env)

    with ExitStack() as stacks, ThreadPoolExecutor(4) as pool:
        futures = {}
        for size in sizes:
            stack = stacks.enter_context(DevStack(customers=size, azurite=azurite))
            stack.partner_center.warm(page_size)
            quiet_stand_ins()
            env = child_env(stack, page_size)
            futures["job", size] = pool.submit(job, stack, env)
            if naive:
                futures["naive", size] = pool.submit(run_child, "naive", env)
        for (what, size), future in futures.items():
            runs[what][size] = future.result()
    for size in sizes:
        for what in [w for w in runs if runs[w]]:
            result = runs[what][size]
            got = (
                result["customers"] if what == "naive" else result["runs"][0]["summary"].get("customerCount")
            )
            if got != size:
                raise BenchError(f"{what} stored {got} customers, expected {size}")
    return runs


def _wait_for_next_second() -> None:
    time.sleep(1.05 - time.time() % 1)
