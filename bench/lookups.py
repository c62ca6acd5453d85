"""Lookups served by the HTTP functions of function_app.py from a 100,000-customer snapshot.

The parent writes two snapshots with the job's own writer (A published, B committed but not yet published),
then starts one API instance as a child process (`python -m bench.child lookups`), which:

1. answers the whole snapshot (`GET /api/customers`, gzip accepted) as its first request, cold: time and
   peak memory of the call, which loads and indexes the snapshot; then again, warm;
2. looks up `lookups` random ids of A in-process (the registered function, func.HttpRequest with
   route_params, the way the host calls it): p50 / p99;
3. publishes B (latest.json), then looks up an id of B until it is found: the lookup that finds it is the
   one that read latest.json again (at most API_LATEST_CHECK_SECONDS after publishing) and loaded B;
4. serves the same functions over HTTP through devstack/host.py until the parent, which times keep-alive
   GETs against it from its own process, says it is done.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bench.job import REPO_ROOT, BenchError, child_env
from devstack.azurite import Azurite
from devstack.population import make_customers
from devstack.stack import DevStack

ID_ROUTE = "customers/{customerId}"


@dataclass
class LookupFigures:
    customers: int
    in_process: list[float]  # seconds per warm lookup
    over_http: list[float]
    first_after_publish: float  # the lookup that found the new latest.json and loaded the snapshot
    visible_after_publish: float  # seconds from publishing to that lookup's answer
    check_interval: float  # API_LATEST_CHECK_SECONDS
    second_after_publish: float
    whole_cold: float
    whole_warm: float
    whole_peak_mb: float  # peak RSS growth during the cold whole-snapshot call
    whole_warm_peak_mb: float
    whole_bytes: int
    instance_rss_mb: float  # resident set of the warm instance at the end, the snapshot loaded


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]  # nearest rank


def write_snapshot(store: Any, customers: list[dict[str, Any]], when: datetime) -> Any:
    """A committed (not published) snapshot written by the job's own writer, as the job would lay it out."""
    from shared.jsonenc import compact as dumps
    from shared.storage.layout import snapshot_name

    generated_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    writer = store.new_snapshot(snapshot_name(when), generated_at)
    for start in range(0, len(customers), 500):
        writer.add([dumps(c) for c in customers[start : start + 500]])
    committed = writer.commit(
        {"customerCount": len(customers), "source": {"bench": True}},
        {"generatedat": generated_at, "correlationid": "bench", "pages": str(-(-len(customers) // 500))},
    )
    return store.commit_index(committed, writer.index)  # as the job does, before latest.json names it


def lookup_figures(azurite: Azurite, *, customers: int, lookups: int, http_lookups: int) -> LookupFigures:
    from shared.snapshots.store import SnapshotStore

    rng = random.Random(7)
    with DevStack(customers=0, azurite=azurite) as stack, tempfile.TemporaryDirectory() as tmp:
        env = child_env(stack, 500)
        container = stack.blob_service_client(retry_total=2).get_container_client(env["SNAPSHOT_CONTAINER"])
        store = SnapshotStore(container)
        store.ensure_container()
        now = datetime.now(UTC).replace(microsecond=0)
        published = make_customers(customers, seed=1)
        store.publish(write_snapshot(store, published, now - timedelta(hours=1)))
        ids = [c["id"] for c in published]
        lookup_ids = [rng.choice(ids) for _ in range(lookups)]
        del published, ids
        upcoming = make_customers(customers, seed=2)
        committed = write_snapshot(store, upcoming, now)
        after_id = rng.choice(upcoming)["id"]
        http_ids = [rng.choice(upcoming)["id"] for _ in range(http_lookups)]  # B is the latest by then
        del upcoming
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps({"ids": lookup_ids, "afterPublishId": after_id, "publish": asdict(committed)})
        )
        instance = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", "lookups", "--spec", str(spec)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            over_http = _over_http(instance, http_ids)
            out, err = instance.communicate("done\n", timeout=600)
        finally:
            if instance.poll() is None:
                instance.kill()
                instance.wait()
        if instance.returncode != 0:
            raise BenchError(f"bench.child lookups failed ({instance.returncode}):\n{err[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return LookupFigures(customers=customers, over_http=over_http, **result)


def _over_http(instance: subprocess.Popen[str], ids: list[str]) -> list[float]:
    assert instance.stdout is not None
    line = instance.stdout.readline()
    if not line.startswith("SERVING "):
        _, err = instance.communicate(timeout=60)
        raise BenchError(f"the API instance did not start serving: {line!r}\n{err[-4000:]}")
    _, url, key = line.split()
    times: list[float] = []
    with requests.Session() as session:
        session.trust_env = False  # loopback, plain HTTP: no proxies from the environment
        session.headers["x-functions-key"] = key
        session.get(f"{url}/api/health", timeout=60)  # connect
        for customer_id in ids:
            start = time.perf_counter()
            response = session.get(f"{url}/api/customers/{customer_id}", timeout=60)
            response.content  # noqa: B018 - read the whole body inside the clock
            times.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise BenchError(f"GET /api/customers/{customer_id} over HTTP: {response.status_code}")
    return times


# -- the API instance (child process) -------------------------------------------------------------------
def instance_main(spec_path: str) -> dict[str, Any]:
    import azure.functions as func

    from bench.proc import peak_rss_mb, reset_peak, rss_mb
    from devstack.host import FunctionsHost, registered_functions

    spec = json.loads(Path(spec_path).read_text())
    functions = registered_functions()
    by_route = {
        f.get_trigger().route: f.get_user_function() for f in functions.values() if f.is_http_function()
    }
    lookup, listing = by_route[ID_ROUTE], by_route["customers"]

    def by_id(customer_id: str) -> func.HttpRequest:
        return func.HttpRequest(
            "GET",
            f"http://localhost:7071/api/customers/{customer_id}",
            headers={},
            params={},
            route_params={"customerId": customer_id},
            body=b"",
        )

    def checked(response: func.HttpResponse, what: str) -> func.HttpResponse:
        if response.status_code != 200:
            raise BenchError(f"{what}: HTTP {response.status_code} {response.get_body()[:300]!r}")
        return response

    whole = func.HttpRequest(
        "GET", "http://localhost:7071/api/customers", headers={"accept-encoding": "gzip"}, body=b""
    )
    before = rss_mb()
    reset_peak()
    start = time.perf_counter()
    answer = checked(listing(whole), "whole snapshot")
    whole_cold = time.perf_counter() - start
    whole_peak = peak_rss_mb() - before
    whole_bytes = len(answer.get_body())
    del answer
    before = rss_mb()
    reset_peak()
    start = time.perf_counter()
    checked(listing(whole), "whole snapshot (warm)")
    whole_warm = time.perf_counter() - start
    whole_warm_peak = peak_rss_mb() - before

    requests_ = [by_id(customer_id) for customer_id in spec["ids"]]
    checked(lookup(requests_[0]), "first lookup")
    in_process: list[float] = []
    for request in requests_:
        start = time.perf_counter()
        response = lookup(request)
        in_process.append(time.perf_counter() - start)
        if response.status_code != 200:
            checked(response, "lookup")

    from shared.api.context import api_context
    from shared.snapshots.writer import CommittedSnapshot

    context = api_context()
    context.store.publish(CommittedSnapshot(**spec["publish"]))
    published = time.perf_counter()
    while True:  # until the instance looks at latest.json again (API_LATEST_CHECK_SECONDS)
        request = by_id(spec["afterPublishId"])
        start = time.perf_counter()
        response = lookup(request)
        first_after = time.perf_counter() - start
        if response.status_code == 200:
            break
        if response.status_code != 404 or time.perf_counter() - published > 120:
            checked(response, "first lookup after publishing")
        time.sleep(0.005)
    visible_after = time.perf_counter() - published
    start = time.perf_counter()
    checked(lookup(by_id(spec["afterPublishId"])), "second lookup after publishing")
    second_after = time.perf_counter() - start

    with FunctionsHost() as host:
        sys.stdout.write(f"SERVING {host.url} {host.function_key}\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the parent's HTTP lookups run now
    return {
        "in_process": in_process,
        "first_after_publish": first_after,
        "visible_after_publish": visible_after,
        "check_interval": context.settings.latest_check_seconds,
        "second_after_publish": second_after,
        "whole_cold": whole_cold,
        "whole_warm": whole_warm,
        "whole_peak_mb": whole_peak,
        "whole_warm_peak_mb": whole_warm_peak,
        "whole_bytes": whole_bytes,
        "instance_rss_mb": rss_mb(),
    }


def summarize(times: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "mean": statistics.fmean(times) if times else float("nan"),
    }
