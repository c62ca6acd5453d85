"""The lookup API at scale: one fresh API instance per size, answering from a snapshot of N customers.

The parent writes two snapshots with the job's own writer and index (A published; B committed, a night
later: A with about 1% of its customers changed, some renamed, some gone and some new), then starts
an API instance as a child process (`python -m bench.child scale`), which measures, in-process (the
registered functions, called the way the host calls them):

1. the first lookup by id of the fresh instance (it loads what it needs: the index, or the whole snapshot);
2. warm lookups by random ids of A (p50/p99), by domain and by `?q=` a common word (p50);
3. the whole snapshot (`GET /api/customers`): answered inline, or a 307 to a SAS URL that is followed;
4. B published while 8 threads look up A's ids (nearly all of them still in B): the longest any lookup
   waited, until B answers and 2 s on;
5. peak RSS growth (VmHWM) from before the first request (the SDKs imported) to the end, publish included,
   and the absolute peak of the process (what the instance's memory size must hold).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.job import REPO_ROOT, BenchError, child_env
from bench.lookups import percentile, write_snapshot
from devstack.azurite import Azurite
from devstack.population import make_customers
from devstack.stack import DevStack

COMMON_WORD = "contoso"  # one stem in 26 (devstack/population.py)
CONCURRENT = 8


@dataclass
class ScaleFigures:
    customers: int
    first_lookup: float
    by_id: list[float]
    by_domain: list[float]
    by_text: list[float]
    text_matches: int
    whole_status: int
    whole_seconds: float  # the answer, and the download from the SAS URL when it is a 307
    whole_bytes: int
    publish_longest: float  # the longest lookup while B was published and taken up
    publish_warm_p50: float  # a warm lookup meanwhile, for comparison
    publish_visible: float  # seconds from publishing B to its first answer
    peak_growth_mb: float
    ready_growth_mb: float  # RSS growth once warm, before the publish
    base_mb: float  # RSS of the instance before its first request, the SDKs imported
    peak_mb: float  # the instance's absolute peak RSS (VmHWM), publish included
    changed: int  # customers of B that are not in A as they were (renamed, new or gone)
    index_bytes: int
    stored_bytes: int


def scale_figures(azurite: Azurite, *, customers: int, lookups: int) -> ScaleFigures:
    from shared.snapshots.store import SnapshotStore

    rng = random.Random(11)
    with DevStack(customers=0, azurite=azurite) as stack, tempfile.TemporaryDirectory() as tmp:
        env = child_env(stack, 500)
        env["API_LATEST_CHECK_SECONDS"] = "1"
        # An account key, as in local runs: a service SAS for the 307 (Azurite has no user delegation keys).
        env |= {
            "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
            "SNAPSHOT_STORAGE_CONNECTION_STRING": azurite.connection_string,
        }
        container = stack.blob_service_client(retry_total=2).get_container_client(env["SNAPSHOT_CONTAINER"])
        store = SnapshotStore(container)
        store.ensure_container()
        now = datetime.now(UTC).replace(microsecond=0)
        published = make_customers(customers, seed=1)
        first = write_snapshot(store, published, now - timedelta(hours=1))
        store.publish(first)
        sample = [rng.choice(published) for _ in range(lookups)]
        spec: dict[str, Any] = {
            "ids": [c["id"] for c in sample],
            "domains": [c["companyProfile"]["domain"] for c in sample[:200]],
        }
        del sample
        upcoming, changed, arrived = a_night_later(published, rng)
        del published
        committed = write_snapshot(store, upcoming, now)
        spec["afterPublishId"] = arrived
        spec["publish"] = asdict(committed)
        del upcoming
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        run = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", "scale", "--spec", str(path)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if run.returncode != 0:
            raise BenchError(f"bench.child scale failed ({run.returncode}):\n{run.stderr[-4000:]}")
        index_bytes = container.get_blob_client(first.index).get_blob_properties().size if first.index else 0
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return ScaleFigures(
        customers=customers,
        index_bytes=index_bytes,
        stored_bytes=first.stored_bytes,
        changed=changed,
        **result,
    )


def a_night_later(
    customers: list[dict[str, Any]], rng: random.Random, share: float = 0.01
) -> tuple[list[dict[str, Any]], int, str]:
    """(B, how many customers changed, the id of one that arrived): `customers` a night later, with `share`
    of them changed: 80% of those renamed, 10% gone and 10% new (appended, as Partner Center lists them)."""
    changed = max(3, round(len(customers) * share))
    chosen = rng.sample(range(len(customers)), changed)
    gone = set(chosen[: changed // 10 or 1])
    renamed = chosen[len(gone) : changed - (changed // 10 or 1)]
    upcoming = list(customers)
    for position in renamed:
        customer = json.loads(json.dumps(customers[position]))  # a copy: A's dicts stay as published
        customer["companyProfile"]["companyName"] += " Holdings"
        upcoming[position] = customer
    upcoming = [c for position, c in enumerate(upcoming) if position not in gone]
    arrivals = make_customers(changed - len(gone) - len(renamed), seed=2)
    upcoming.extend(arrivals)
    return upcoming, changed, arrivals[0]["id"]


# -- the API instance (child process) -------------------------------------------------------------------
def instance_main(spec_path: str) -> dict[str, Any]:
    import azure.functions as func
    import requests

    from bench.proc import peak_rss_mb, rss_mb
    from devstack.host import registered_functions

    spec = json.loads(Path(spec_path).read_text())
    functions = registered_functions()
    routes = {
        f.get_trigger().route: f.get_user_function() for f in functions.values() if f.is_http_function()
    }
    lookup, listing = routes["customers/{customerId}"], routes["customers"]

    def by_id(customer_id: str) -> func.HttpResponse:
        return lookup(
            func.HttpRequest(
                "GET",
                f"http://localhost:7071/api/customers/{customer_id}",
                headers={},
                params={},
                route_params={"customerId": customer_id},
                body=b"",
            )
        )

    def listed(params: dict[str, str], headers: dict[str, str] | None = None) -> func.HttpResponse:
        return listing(
            func.HttpRequest(
                "GET", "http://localhost:7071/api/customers", headers=headers or {}, params=params, body=b""
            )
        )

    def timed(call: Any, *args: Any) -> tuple[float, func.HttpResponse]:
        start = time.perf_counter()
        response = call(*args)
        return time.perf_counter() - start, response

    def ok(response: func.HttpResponse, what: str) -> func.HttpResponse:
        if response.status_code != 200:
            raise BenchError(f"{what}: HTTP {response.status_code} {response.get_body()[:300]!r}")
        return response

    ids = spec["ids"]
    # What every instance imports on its first request, whatever the snapshot: growth is measured from here.
    import azure.identity
    import azure.storage.blob  # noqa: F401

    import shared.api.handlers
    import shared.api.latest  # noqa: F401

    before = rss_mb()
    first_lookup, response = timed(by_id, ids[0])
    ok(response, "first lookup")
    time.sleep(0.5)
    for _ in range(600):  # a large stored blob is fetched in the background: measure warm once it is in
        loaded = _loaded()
        if getattr(loaded, "_stored", True) is not None:
            break
        time.sleep(0.1)
    by_id_times = []
    for customer_id in ids:
        seconds, response = timed(by_id, customer_id)
        ok(response, "lookup")
        by_id_times.append(seconds)
    by_domain = [timed(listed, {"domain": d})[0] for d in spec["domains"]]
    seconds, response = timed(listed, {"q": COMMON_WORD})
    matches = json.loads(ok(response, "q").get_body())["count"]
    by_text = [timed(listed, {"q": COMMON_WORD})[0] for _ in range(20)]

    start = time.perf_counter()
    whole = listed({}, {"accept-encoding": "gzip"})
    whole_bytes = len(whole.get_body())
    if whole.status_code == 307:  # too large for one answer: follow it to Blob Storage, as a client would
        # Streamed and counted, not kept: a client's memory is not the instance's.
        with requests.get(whole.headers["Location"], timeout=600, verify=False, stream=True) as download:  # noqa: S501 - loopback
            if download.status_code != 200:
                raise BenchError(f"SAS download: HTTP {download.status_code}")
            whole_bytes = sum(len(chunk) for chunk in download.iter_content(1024 * 1024))
    elif whole.status_code != 200:
        ok(whole, "whole snapshot")
    whole_seconds = time.perf_counter() - start
    ready_growth = rss_mb() - before

    publish = _publish_under_load(by_id, ids, spec)
    return {
        "first_lookup": first_lookup,
        "by_id": by_id_times,
        "by_domain": by_domain,
        "by_text": by_text,
        "text_matches": matches,
        "whole_status": whole.status_code,
        "whole_seconds": whole_seconds,
        "whole_bytes": whole_bytes,
        **publish,
        "peak_growth_mb": peak_rss_mb() - before,
        "ready_growth_mb": ready_growth,
        "base_mb": before,
        "peak_mb": peak_rss_mb(),
    }


def _loaded() -> Any:
    from shared.api.context import api_context

    return api_context().latest._loaded


def _publish_under_load(by_id: Any, ids: list[str], spec: dict[str, Any]) -> dict[str, float]:
    from shared.api.context import api_context
    from shared.snapshots.writer import CommittedSnapshot

    stop = threading.Event()
    waits: list[list[float]] = [[] for _ in range(CONCURRENT)]

    def worker(mine: list[float], offset: int) -> None:
        n = offset
        while not stop.is_set():
            start = time.perf_counter()
            response = by_id(ids[n % len(ids)])  # A's ids: a few are gone from B (404), the rest answer
            mine.append(time.perf_counter() - start)
            if response.status_code not in (200, 404):
                raise BenchError(f"lookup during publish: HTTP {response.status_code}")
            n += CONCURRENT

    threads = [threading.Thread(target=worker, args=(waits[i], i), daemon=True) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    api_context().store.publish(CommittedSnapshot(**spec["publish"]))
    published = time.perf_counter()
    while by_id(spec["afterPublishId"]).status_code != 200:
        if time.perf_counter() - published > 600:
            raise BenchError("the published snapshot was not taken up in 10 minutes")
        time.sleep(0.01)
    visible = time.perf_counter() - published
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(60)
    every = [seconds for mine in waits for seconds in mine]
    return {
        "publish_longest": max(every),
        "publish_warm_p50": percentile(every, 50),
        "publish_visible": visible,
    }
