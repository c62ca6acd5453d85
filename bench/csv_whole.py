"""`python -m bench.csv_whole [--customers 100000,1000000]`: the whole latest snapshot as CSV
(GET /api/customers?format=csv), memory and time, in a fresh API instance (child process) per size.

The parent writes a snapshot of N customers with the job's own writer (in pieces: N customers never sit
in memory at once) and publishes it. The child calls the registered function the way the host does,
twice (after one /api/health call, which imports the SDKs): the first CSV call of a fresh instance, then
again. Above API_SNAPSHOT_INLINE_MAX_BYTES (16 MiB by default) the first call writes the CSV rendition
beside the snapshot, streaming from the stored blob, and answers a 307; the second finds it. Below, the
answer is built from the instance's loaded snapshot. Peak RSS growth is VmHWM after the call minus RSS
before it. The parent then downloads the rendition through the SAS URL and counts its rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from typing import Any

from bench.job import REPO_ROOT, child_env
from devstack.azurite import Azurite
from devstack.population import make_customers
from devstack.stack import DevStack

_CHILD = r"""
import json, sys, time
import azure.functions as func
from bench.proc import peak_rss_mb, reset_peak, rss_mb
from devstack.host import registered_functions

handler = registered_functions()["customers"].get_user_function()
# Warm up: the SDK imports, settings and storage client, latest.json (as any earlier request would).
health = registered_functions()["health"].get_user_function()
health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
out = {}
for label in ("first", "second"):
    before = rss_mb()
    reset_peak()
    started = time.perf_counter()
    response = handler(func.HttpRequest(
        "GET", "http://localhost/api/customers?format=csv", params={"format": "csv"},
        headers={"Accept-Encoding": "gzip"}, body=b""))
    out[label] = {
        "seconds": round(time.perf_counter() - started, 3),
        "status": response.status_code,
        "rssBeforeMB": round(before, 1),
        "peakGrowthMB": round(peak_rss_mb() - before, 1),
        "bodyBytes": len(response.get_body()),
        "location": response.headers.get("Location"),
    }
print(json.dumps(out))
"""


def measure(azurite: Azurite, customers: int) -> dict[str, Any]:
    from shared.jsonenc import compact as dumps
    from shared.snapshots.store import SnapshotStore
    from shared.storage.layout import snapshot_name

    with DevStack(customers=0, azurite=azurite) as stack:
        env = child_env(stack, 500)
        container = stack.blob_service_client(retry_total=2).get_container_client(env["SNAPSHOT_CONTAINER"])
        store = SnapshotStore(container)
        store.ensure_container()
        when = datetime.now(UTC).replace(microsecond=0)
        generated_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        writer = store.new_snapshot(snapshot_name(when), generated_at)
        written = 0
        started = time.perf_counter()
        for seed in range(-(-customers // 100_000)):  # 100,000 at a time, distinct ids per seed
            part = make_customers(min(100_000, customers - written), seed=1000 + seed)
            for start in range(0, len(part), 500):
                writer.add([dumps(c) for c in part[start : start + 500]])
            written += len(part)
            del part
        committed = writer.commit(
            {"customerCount": customers, "source": {"bench": True}},
            {"generatedat": generated_at, "correlationid": "bench", "pages": str(-(-customers // 500))},
        )
        manifest = store.publish(committed)
        assert manifest is not None
        write_seconds = time.perf_counter() - started

        child = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", _CHILD],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-4000:])
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        rows = None
        if figures["first"]["location"]:
            # With the shared key: Azurite rejects the SDK's user-delegation SAS
            # (see tests/e2e/api/test_lifecycle.py).
            from shared.storage.layout import rendition_name

            blob = container.get_blob_client(rendition_name(manifest.snapshot))
            inflate = zlib.decompressobj(31)
            rows, last = -1, b""  # -1: the header row
            for chunk in blob.download_blob(decompress=False, max_concurrency=1).chunks():
                text = last + inflate.decompress(chunk)
                rows += text.count(b"\r\n")
                last = text[-1:] if text.endswith(b"\r") else b""  # a CRLF split between two chunks
        return {
            "customers": customers,
            "storedBytes": manifest.stored_bytes,
            "jsonBytes": manifest.json_bytes,
            "writeSeconds": round(write_seconds, 1),
            "csvRows": rows,
            **figures,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", default="100000,1000000", help="comma-separated sizes")
    args = parser.parse_args(argv)
    with Azurite() as azurite:
        for size in (int(n) for n in args.customers.split(",")):
            print(json.dumps(measure(azurite, size), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
