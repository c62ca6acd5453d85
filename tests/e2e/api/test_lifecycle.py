"""The API over a snapshot's life: before the first one, a new publish, a corrupt latest.json, a stored
snapshot not in the layout, large snapshots served by SAS redirect, concurrent first requests, and 100k
customers (not in CI)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest
import requests

from devstack.population import make_customers
from shared.api.context import api_context
from shared.snapshots.store import SnapshotStore
from tests.support.api import (
    SPECIAL,
    assert_error,
    assert_no_internals,
    body,
    call,
    customer_call,
    date_call,
    write_snapshot,
)
from tests.support.functions import InstanceSettings, run_timer


# -- lifecycle: nothing yet, a new publish, a corrupt latest.json, large snapshots ---------------------
def test_before_the_first_snapshot(make_stack):
    make_stack(customers=3)
    assert_error(call("customers"), 404, "no_snapshot")
    assert_error(call("customers", {"q": "x"}), 404, "no_snapshot")
    assert_error(customer_call(SPECIAL[0]["id"]), 404, "no_snapshot")
    assert_error(date_call("2024-02-29"), 404, "snapshot_not_found", "date")
    listing = call("snapshots")
    assert listing.status_code == 200
    assert body(listing) == {"snapshots": [], "nextLink": None}
    health = call("health")
    assert health.status_code == 503
    assert json.loads(health.get_body())["status"] == "empty"


def test_a_new_snapshot_is_served_from_the_next_request_and_never_half_written(make_stack):
    stack, snapshots = make_stack(customers=SPECIAL[:3])
    run_timer()
    container = stack.blob_service_client().get_container_client(snapshots.container)
    kept, dropped, added = SPECIAL[0], SPECIAL[1], SPECIAL[4]
    before = customer_call(kept["id"])
    assert before.status_code == 200
    assert customer_call(dropped["id"]).status_code == 200
    whole_before = call("customers").headers["ETag"]
    next_link = urlsplit(body(call("customers", {"top": "1"}))["nextLink"])
    later = datetime.now(UTC) + timedelta(minutes=1)

    # Staged but never committed, then committed but not published: neither is visible.
    write_snapshot(container, [kept, added], later, commit=False)
    committed = write_snapshot(container, [kept, added], later, publish=False)
    assert customer_call(dropped["id"]).status_code == 200
    assert_error(customer_call(added["id"]), 404, "customer_not_found", "customerId")

    # Published: the very next request sees it, and the old ETags no longer match.
    SnapshotStore(container).publish(committed)
    assert customer_call(added["id"]).status_code == 200
    assert_error(customer_call(dropped["id"]), 404, "customer_not_found", "customerId")
    again = customer_call(kept["id"], headers={"If-None-Match": before.headers["ETag"]})
    assert again.status_code == 200
    assert again.headers["ETag"] != before.headers["ETag"]
    assert call("customers", headers={"If-None-Match": whole_before}).status_code == 200
    # A listing that started on the previous snapshot cannot continue on this one.
    assert_error(call("customers", parse_qsl(next_link.query)), 409, "snapshot_changed")
    assert json.loads(call("health").get_body())["customerCount"] == 2


CORRUPT_LATEST = {
    "truncated": b"{not json",
    "empty": b"",
    "incomplete": b'{"schemaVersion":1}',
    "binary": b"\xff\xfe\x00garbage",
    "names-a-missing-snapshot": json.dumps(
        {
            "snapshot": "snapshots/2020/01/01/customers-20200101T000000Z.json",
            "etag": '"0x1"',
            "generatedAt": "2020-01-01T00:00:00Z",
            "customerCount": 1,
            "sha256": "0" * 64,
        }
    ).encode(),
}


def test_a_corrupt_latest_json_is_503_until_the_next_good_publish(make_stack):
    from shared.job import run_snapshot

    stack, snapshots = make_stack(customers=SPECIAL)
    run_timer()
    container = stack.blob_service_client().get_container_client(snapshots.container)
    later = datetime.now(UTC)
    for kind, latest in CORRUPT_LATEST.items():
        assert customer_call(SPECIAL[0]["id"]).status_code == 200, kind
        container.upload_blob("latest.json", latest, overwrite=True)

        for response in (call("customers"), call("customers", {"q": "a"}), customer_call(SPECIAL[1]["id"])):
            payload = assert_error(response, 503, "snapshot_unavailable")
            assert response.headers["Retry-After"] == "60"
            assert_no_internals(payload["message"])
        health = call("health")  # unavailable, or stale for the manifest of a 2020 snapshot
        assert health.status_code == 503
        assert json.loads(health.get_body())["status"] in (
            "unavailable",
            "stale",
        )
        assert call("snapshots").status_code == 200, kind  # the listing does not depend on latest.json

        later += timedelta(minutes=1)
        if kind == "truncated":
            run_snapshot(now=later)  # the job's next run heals it...
        else:
            write_snapshot(container, SPECIAL, later)  # ...as does any good publish (same publish code)
        assert customer_call(SPECIAL[1]["id"]).status_code == 200, kind
        assert call("health").status_code == 200, kind


def test_a_snapshot_that_does_not_match_its_manifest_is_503(make_stack):
    stack, snapshots = make_stack(customers=0)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    write_snapshot(container, SPECIAL, datetime.now(UTC))
    latest = snapshots.latest()
    latest["sha256"] = "0" * 64  # e.g. a manifest edited by hand
    container.upload_blob("latest.json", json.dumps(latest).encode(), overwrite=True)
    assert_error(customer_call(SPECIAL[0]["id"]), 503, "snapshot_unavailable")


_ONE_LINE = json.dumps({"customers": SPECIAL}).encode()


@pytest.mark.parametrize(
    ("stored", "document", "reason"),
    [
        (gzip.compress(_ONE_LINE), _ONE_LINE, "not a complete snapshot document"),
        (gzip.compress(json.dumps({"customers": SPECIAL}, indent=1).encode()), None, "layout"),
        (None, None, "truncated gzip stream"),
        (b"\x1f\x8b\x08\x00 not deflate at all", None, "damaged gzip stream"),
    ],
    ids=["json-on-one-line", "pretty-printed", "truncated-gzip", "damaged-gzip"],
)
def test_a_stored_snapshot_not_in_our_layout_is_503_and_logged(make_stack, caplog, stored, document, reason):
    from azure.storage.blob import ContentSettings

    stack, snapshots = make_stack(customers=0)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    committed = write_snapshot(container, SPECIAL, datetime.now(UTC))
    if stored is None:  # the real snapshot, cut short
        stored = snapshots.raw(committed.name)[0][:-10]
    # Rewritten in place (by hand, by a tool) and latest.json made to match it: only the layout is wrong.
    uploaded = container.get_blob_client(committed.name).upload_blob(
        stored,
        overwrite=True,
        content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
    )
    latest = snapshots.latest()
    latest["etag"] = uploaded["etag"]
    # Sizes made to match too (the API stops at the published sizes): only the layout is wrong.
    latest["storedBytes"] = len(stored)
    latest["jsonBytes"] = len(document) if document is not None else 1 << 20
    if document is not None:
        latest["sha256"] = hashlib.sha256(document).hexdigest()
    container.upload_blob("latest.json", json.dumps(latest).encode(), overwrite=True)

    assert_error(customer_call(SPECIAL[0]["id"]), 503, "snapshot_unavailable")

    unreadable = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("api.snapshot_unreadable")
    ]
    assert len(unreadable) == 1
    assert reason in unreadable[0]


def _sas_stack(make_stack, azurite, *, connection_string: bool, **overrides: str):
    extra = {"API_SNAPSHOT_INLINE_MAX_BYTES": "1000", **overrides}
    if connection_string:  # as in local runs: an account key, so a service SAS
        extra |= {
            "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
            "SNAPSHOT_STORAGE_CONNECTION_STRING": azurite.connection_string,
        }
    stack, snapshots = make_stack(customers=0, env_overrides=extra)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    write_snapshot(container, make_customers(60, seed=3), datetime.now(UTC))
    return stack, snapshots


def test_a_large_snapshot_redirects_to_a_short_lived_read_only_sas(make_stack, azurite, monkeypatch):
    _, snapshots = _sas_stack(make_stack, azurite, connection_string=True, API_SAS_LIFETIME_SECONDS="120")
    latest = snapshots.latest()
    stored, _ = snapshots.raw(latest["snapshot"])

    response = call("customers", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 307
    assert response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    payload = json.loads(response.get_body())
    assert payload["location"] == location
    assert payload["snapshot"]["name"] == latest["snapshot"]
    sas = dict(parse_qsl(urlsplit(location).query))
    assert sas["sp"] == "r"
    assert sas["sr"] == "b"
    assert sas["spr"] == "https"
    lifetime = datetime.fromisoformat(sas["se"]) - datetime.now(UTC)
    assert timedelta(seconds=100) < lifetime <= timedelta(seconds=121)

    downloaded = requests.get(location, timeout=10)  # what a client following the redirect gets
    assert downloaded.status_code == 200
    assert downloaded.headers["Content-Encoding"] == "gzip"
    assert downloaded.content == gzip.decompress(stored)  # requests inflates Content-Encoding: gzip
    assert (
        requests.put(location, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code
        == 403
    )

    day = latest["generatedAt"][:10]
    assert date_call(day, headers={"Accept-Encoding": "gzip"}).status_code == 307
    # Small enough as gzip, too large once inflated for a client that refuses gzip: redirected too.
    InstanceSettings(monkeypatch).setenv("API_SNAPSHOT_INLINE_MAX_BYTES", str(len(stored) + 10))
    assert call("customers", headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert call("customers").status_code == 307
    assert date_call(day, headers={"Accept-Encoding": "gzip"}).status_code == 200
    assert date_call(day).status_code == 307


def test_with_managed_identity_the_redirect_is_a_user_delegation_sas(make_stack, azurite):
    stack, _ = _sas_stack(make_stack, azurite, connection_string=False)
    response = call("customers", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 307
    location = response.headers["Location"]
    sas = dict(parse_qsl(urlsplit(location).query))
    # Signed with a key Azurite issued to the app's managed identity: no account key involved.
    assert sas["skoid"] == stack.identity.principal_id
    assert sas["sktid"] == stack.identity.tenant_id
    assert sas["sp"] == "r"
    assert sas["sr"] == "b"
    assert sas["spr"] == "https"
    assert azurite_accepts_user_delegation_sas(location, api_context().sas._key)


def azurite_accepts_user_delegation_sas(location: str, key: Any) -> bool:
    """Azurite 3.35 signs user-delegation SAS without the signed request headers / query lines that
    service version 2026-04-06 added (the SDK sends sv=2026-10-06, so Azurite answers 403 to the SDK's
    own signature). Re-signing the same fields in Azurite's layout with the same delegation key proves
    everything else — identity, tenant, key, permissions, times, resource — is what Azurite expects."""
    url, _, query = location.partition("?")
    sas = dict(parse_qsl(query))
    fields = [sas["sp"], sas["st"], sas["se"], "/blob" + unquote(urlsplit(url).path)]
    fields += [sas[k] for k in ("skoid", "sktid", "skt", "ske", "sks", "skv")] + [""] * 5
    fields += [sas.get("sip", ""), sas["spr"], sas["sv"], sas["sr"]] + [""] * 7
    mac = hmac.new(base64.b64decode(key.value), "\n".join(fields).encode(), hashlib.sha256)
    sas["sig"] = base64.b64encode(mac.digest()).decode()
    answer = requests.get(f"{url}?{urlencode(sas)}", timeout=10)
    return answer.status_code == 200 and answer.json()["customerCount"] == 60


def test_concurrent_requests_load_the_snapshot_once(world, env):
    env.setenv("API_SAS_LIFETIME_SECONDS", "302")  # a cold instance
    results: list[int] = []

    def lookup(i: int) -> None:
        results.append(customer_call(world.customers[i]["id"]).status_code)

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 16
    assert api_context().latest.loads == 1


# -- scale: not in CI (RUN_SCALE_TESTS=1 pytest -s tests/e2e/api/test_lifecycle.py -k 100k) ---------------
_SCALE_CHILD = r"""
import json, statistics, sys, time
from urllib.parse import urlencode
import azure.functions as func
from tests.support.functions import registered

def rss():
    # VmHWM: this process's peak RSS (ru_maxrss would include the parent's peak from before the exec).
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

def get(name, query=None, headers=None, route=None, path=""):
    query = query or {}
    url = "http://localhost/api/" + path + ("?" + urlencode(query) if query else "")
    request = func.HttpRequest(
        "GET", url, headers=headers or {}, params=query, route_params=route or {}, body=b""
    )
    started = time.perf_counter()
    response = registered()[name].get_user_function()(request)
    return response, time.perf_counter() - started

ids = json.loads(sys.argv[1])
out = {"rssBeforeMB": rss()}
response, out["coldGzipSeconds"] = get("customers", headers={"Accept-Encoding": "gzip"})
assert response.status_code == 200, response.get_body()[:300]
out["gzipBodyBytes"] = len(response.get_body())
out["rssAfterColdMB"] = rss()
response, out["warmGzipSeconds"] = get("customers", headers={"Accept-Encoding": "gzip"})
response, _ = get("customers")
out["identityStatus"] = response.status_code
lookups = [get("customer", route={"customerId": i}, path="customers/" + i)[1] for i in ids]
out["lookupMedianMs"] = statistics.median(lookups) * 1000
out["searchMs"] = {q: get("customers", {"q": q})[1] * 1000 for q in ("contoso", "muller", "a", "zzzz")}
out["rssPeakMB"] = rss()
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.environ.get("RUN_SCALE_TESTS"), reason="slow: set RUN_SCALE_TESTS=1")
def test_the_whole_snapshot_of_100k_customers_is_served_within_the_platform_limits(make_stack):
    import subprocess
    import sys

    customers = make_customers(100_000, seed=1)
    stack, snapshots = make_stack(customers=0)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    write_snapshot(container, customers, datetime.now(UTC))
    latest = snapshots.latest()
    sample = json.dumps([c["id"] for c in customers[::1000]])
    child = subprocess.run(
        [sys.executable, "-c", _SCALE_CHILD, sample], capture_output=True, text=True, check=True, timeout=600
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {"storedBytes": latest["storedBytes"], "jsonBytes": latest["jsonBytes"], **figures}, indent=2
        )
    )
    assert figures["gzipBodyBytes"] == latest["storedBytes"] < 16 * 1024 * 1024
    assert figures["identityStatus"] == 307  # ~60 MB of JSON: redirected, not buffered
    assert figures["coldGzipSeconds"] < 60
    assert figures["warmGzipSeconds"] < 1
