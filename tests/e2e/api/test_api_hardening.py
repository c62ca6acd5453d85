"""The HTTP API under hostile answers: odd customers, storage outages, unreadable,
unpublished or hostile snapshots, `If-None-Match: *`, and the Azure SDKs' log volume.

Every test goes through the functions registered in function_app.py and the real SDKs against Azurite;
a storage outage is a relay in front of Azurite (devstack/relay.py) that refuses or holds connections.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.relay import Relay
from shared.api.context import api_context, build, use
from shared.settings import Settings
from shared.snapshots.store import SnapshotStore
from shared.storage.layout import snapshot_name
from tests.support.api import (
    SPECIAL,
    assert_error,
    body,
    call,
    customer_call,
    date_call,
    follow,
    ids,
    write_snapshot,
)
from tests.support.functions import MovableClock, run_timer
from tests.support.paths import REPO

GOOD = SPECIAL[:4]


def _container(stack: Any, snapshots: Any) -> Any:
    return stack.blob_service_client().get_container_client(snapshots.container)


def _health() -> tuple[int, dict]:
    response = call("health")
    return response.status_code, json.loads(response.get_body())


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(name + " ")]


def _gzip_document(lines: list[bytes], generated_at: str = "2020-01-01T00:00:00Z") -> tuple[bytes, bytes]:
    """(document, gzip of it) in the writer's one-customer-per-line layout."""
    head = b'{"schemaVersion":1,"generatedAt":"' + generated_at.encode() + b'","customers":['
    document = head + b"\n" + b",\n".join(lines) + b'\n],"customerCount":' + str(len(lines)).encode() + b"}\n"
    return document, gzip.compress(document, 6, mtime=0)


def _upload_snapshot_blob(container: Any, name: str, stored: bytes) -> str:
    """A blob in the snapshot layout, as if committed: its ETag."""
    from azure.storage.blob import ContentSettings

    result = container.get_blob_client(name).upload_blob(
        stored,
        overwrite=True,
        content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
    )
    return result["etag"]


def _point_latest_at(container: Any, manifest: dict[str, Any]) -> None:
    full = {"schemaVersion": 1, "contentEncoding": "gzip", **manifest}
    container.upload_blob("latest.json", json.dumps(full).encode(), overwrite=True)


def _now_text(offset_minutes: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(minutes=offset_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- 7: one odd stored customer never takes the others down ---------------------------------------------
ODD_ID = "9f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f9"
ODD_CUSTOMERS = {
    "profile-not-an-object": json.dumps({"id": ODD_ID, "companyProfile": "oddity-corp"}),
    "domain-a-number": json.dumps({"id": ODD_ID, "companyProfile": {"domain": 42, "companyName": "Oddity"}}),
    "name-an-object": json.dumps({"id": ODD_ID, "companyProfile": {"companyName": {"x": "oddity-corp"}}}),
    "tenant-a-list": json.dumps({"id": ODD_ID, "companyProfile": {"tenantId": ["oddity-corp"]}}),
    "relationship-a-number": json.dumps({"id": ODD_ID, "relationshipToPartner": 1}),
    "id-a-number": json.dumps({"id": 9, "companyProfile": {"domain": "oddity-corp.example"}}),
    "not-an-object": json.dumps(["oddity-corp"]),
    "nan-literal": '{"id":"' + ODD_ID + '","companyProfile":{"companyName":"oddity-corp"},"score":NaN}',
    "infinity-literal": '{"id":"'
    + ODD_ID
    + '","companyProfile":{"companyName":"oddity-corp"},"x":-Infinity}',
    "nested-1000-deep": '{"id":"'
    + ODD_ID
    + '","companyProfile":{"companyName":"oddity-corp"},"deep":'
    + "[" * 1000
    + "]" * 1000
    + "}",
    "two-values-on-one-line": '{"id":"' + ODD_ID + '"},{"id":"oddity-corp"}',
}


@pytest.mark.parametrize("odd", ODD_CUSTOMERS.values(), ids=ODD_CUSTOMERS.keys())
def test_one_odd_customer_never_takes_down_the_answers_for_the_others(make_stack, caplog, odd):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    store = SnapshotStore(container)
    store.ensure_container()
    when = datetime.now(UTC)
    writer = store.new_snapshot(snapshot_name(when), when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    texts = [json.dumps(c, ensure_ascii=False) for c in GOOD]
    writer.add([*texts[:2], odd, *texts[2:]])  # stored as received, the odd one in the middle
    committed = writer.commit({"customerCount": 5}, {"generatedat": writer.generated_at})
    if hasattr(store, "mark_published"):
        store.mark_published(store.publish(committed))
    else:
        store.publish(committed)

    for _ in range(3):
        for customer in GOOD:
            response = customer_call(customer["id"])
            assert response.status_code == 200, response.get_body()[:300]
            assert json.loads(response.get_body()) == customer
        found = body(call("customers", {"q": "zyxwvu"}))
        assert sorted(ids(found)) == sorted(c["id"] for c in GOOD[:3])
        assert ids(body(call("customers", {"domain": GOOD[3]["companyProfile"]["domain"]}))) == [
            GOOD[3]["id"]
        ]
        assert body(call("customers", {"q": "oddity"}))["count"] == 0  # never indexed
        everyone = [c for page in follow(body(call("customers", {"top": "2"}))) for c in page["customers"]]
        assert everyone == GOOD  # paging skips it; every answer stays strict JSON
        odd_answer = customer_call(ODD_ID)
        assert odd_answer.status_code != 200 and odd_answer.status_code not in (500, 503)

    status, health = _health()
    assert status == 200 and health["status"] == "degraded" and health["customersSkipped"] == 1
    skipped = _events(caplog, "api.customers_skipped")
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING  # once per snapshot, not per request
    assert "oddity" not in caplog.text and ODD_ID not in caplog.text  # a count, never the content


def test_brackets_in_strings_nesting_up_to_the_bound_and_no_profile_are_served(make_stack):
    from shared.customer_rule import MAX_DEPTH

    brackets = {**GOOD[0], "notes": "[{" * 100 + '\\"[' * 50}  # many brackets, all inside strings
    nested: Any = "bottom"
    for _ in range(MAX_DEPTH - 1):  # the customer object itself is the first level
        nested = [nested]
    deep = {**GOOD[1], "deep": nested}
    bare = {"id": GOOD[2]["id"], "companyProfile": None, "relationshipToPartner": None}
    stack, snapshots = make_stack(customers=0)
    write_snapshot(_container(stack, snapshots), [brackets, deep, bare], datetime.now(UTC))
    for customer in (brackets, deep, bare):
        response = customer_call(customer["id"])
        assert response.status_code == 200 and json.loads(response.get_body()) == customer
    assert _health()[1]["status"] == "ok"


# -- 11: a warm instance keeps answering during a storage outage ----------------------------------------
@pytest.fixture
def outage(make_stack, azurite):
    """A stack whose API reaches Azurite through a relay; two published snapshots' customers: GOOD."""

    def make(**env: str) -> tuple[Relay, Any, Any]:
        relay = Relay(azurite.port).start()
        relays.append(relay)
        overrides = {"SNAPSHOT_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{relay.port}/devstoreaccount1"}
        stack, snapshots = make_stack(customers=0, env_overrides={**overrides, **env})
        write_snapshot(_container(stack, snapshots), GOOD, datetime.now(UTC))
        return relay, stack, snapshots

    relays: list[Relay] = []
    yield make
    for relay in relays:
        relay.close()


def _concurrently(calls: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def test_a_warm_instance_keeps_answering_while_storage_refuses_connections(outage, caplog):
    caplog.set_level(logging.INFO, logger="shared.api")
    relay, _, _ = outage(SNAPSHOT_STORAGE_RETRIES="0")
    assert customer_call(GOOD[0]["id"]).status_code == 200  # warm: the snapshot is in memory
    relay.refuse()

    lookups = [lambda c=c: customer_call(c["id"]) for c in GOOD * 2]
    answers = _concurrently(lookups)
    assert [a.status_code for a in answers] == [200] * 8
    assert [json.loads(a.get_body()) for a in answers] == GOOD * 2
    assert call("customers", {"q": "zyxwvu"}).status_code == 200
    status, health = _health()
    assert status == 200 and health["status"] == "degraded" and health["storage"] == "unreachable"
    assert health["customerCount"] == len(GOOD) and health["staleServeSeconds"] == 3600
    assert len(_events(caplog, "api.storage_unreachable")) == 1  # once per outage, not per request

    relay.restore()
    assert customer_call(GOOD[1]["id"]).status_code == 200
    status, health = _health()
    assert status == 200 and health["status"] == "ok" and "storage" not in health
    assert len(_events(caplog, "api.storage_reachable")) == 1


def test_requests_never_queue_behind_a_slow_check_of_latest_json(outage):
    relay, _, _ = outage()
    assert customer_call(GOOD[0]["id"]).status_code == 200
    relay.hold()  # storage accepts connections and says nothing
    checker = threading.Thread(target=lambda: customer_call(GOOD[0]["id"]), daemon=True)
    checker.start()
    for _ in range(400):  # until the checker's request hangs in the relay
        if relay.held:
            break
        time.sleep(0.05)
    assert relay.held == 1

    answers = _concurrently([lambda c=c: customer_call(c["id"]) for c in GOOD * 2], timeout=20)
    assert [a.status_code if a else None for a in answers] == [200] * 8
    assert _health()[0] == 200
    assert checker.is_alive() and relay.held == 1  # all answered while the one check still hangs
    relay.refuse()  # the held connection is reset; the retry is refused; the checker answers from memory
    checker.join(60)
    assert not checker.is_alive()


def test_a_check_of_latest_json_during_an_outage_is_bounded(outage):
    relay, _, _ = outage()  # SNAPSHOT_STORAGE_RETRIES at its default (4)
    cache = None
    assert customer_call(GOOD[0]["id"]).status_code == 200
    cache = api_context().latest
    relay.refuse()
    before, checks = relay.connections, cache.checks
    assert customer_call(GOOD[0]["id"]).status_code == 200
    assert cache.checks == checks + 1
    assert relay.connections - before <= 2  # one retry at most, never the SDK's minutes of backoff


def test_serving_from_memory_is_bounded_by_the_setting(outage, monkeypatch):
    relay, _, _ = outage(API_STALE_SERVE_SECONDS="60", SNAPSHOT_STORAGE_RETRIES="0")
    clock = MovableClock()
    use(build(Settings.from_env(api=True), clock=clock))
    assert customer_call(GOOD[0]["id"]).status_code == 200
    relay.refuse()
    assert customer_call(GOOD[1]["id"]).status_code == 200
    status, health = _health()
    assert status == 200 and health["status"] == "degraded" and health["staleServeSeconds"] == 60

    clock.advance(61)  # the outage outlasts the setting
    assert_error(customer_call(GOOD[1]["id"]), 503, "storage_unavailable")
    status, health = _health()
    assert status == 503 and health["status"] == "unavailable"
    relay.restore()
    assert customer_call(GOOD[1]["id"]).status_code == 200


def test_serving_from_memory_can_be_switched_off(outage):
    relay, _, _ = outage(API_STALE_SERVE_SECONDS="0", SNAPSHOT_STORAGE_RETRIES="0")
    assert customer_call(GOOD[0]["id"]).status_code == 200
    relay.refuse()
    assert_error(customer_call(GOOD[0]["id"]), 503, "storage_unavailable")


# -- 12: an unreadable snapshot is remembered --------------------------------------------------------
def _unreadable_latest(container: Any, kind: str) -> None:
    name = snapshot_name(datetime.now(UTC) + timedelta(minutes=5))
    document, stored = _gzip_document([json.dumps(c).encode() for c in GOOD])
    manifest = {
        "snapshot": name,
        "generatedAt": _now_text(5),
        "customerCount": len(GOOD),
        "sha256": hashlib.sha256(document).hexdigest(),
        "storedBytes": len(stored),
        "jsonBytes": len(document),
        "etag": '"0x8DD0000000000000"',
    }
    if kind == "sha-mismatch":
        manifest["etag"] = _upload_snapshot_blob(container, name, stored)
        manifest["sha256"] = "0" * 64
    elif kind == "not-gzip":
        manifest["etag"] = _upload_snapshot_blob(container, name, document[: len(document) // 2])
    elif kind == "truncated-gzip":
        manifest["etag"] = _upload_snapshot_blob(container, name, stored[: len(stored) // 2])
    elif kind == "count-mismatch":
        manifest["etag"] = _upload_snapshot_blob(container, name, stored)
        manifest["customerCount"] = 7
    elif kind == "larger-than-published":
        manifest["etag"] = _upload_snapshot_blob(container, name, stored)
        manifest["storedBytes"] = len(stored) - 1
    elif kind == "inflates-past-published":
        manifest["etag"] = _upload_snapshot_blob(container, name, stored)
        manifest["jsonBytes"] = len(document) - 1
    elif kind == "a-line-over-8-mib":  # sizes as published: the line bound alone stops it
        document, stored = _gzip_document([b'{"id":"' + b"a" * (9 << 20) + b'"}'])
        manifest.update(
            etag=_upload_snapshot_blob(container, name, stored),
            customerCount=1,
            sha256=hashlib.sha256(document).hexdigest(),
            storedBytes=len(stored),
            jsonBytes=len(document),
        )
    # "missing": the blob was never written
    _point_latest_at(container, manifest)


UNREADABLE = [
    "sha-mismatch",
    "not-gzip",
    "truncated-gzip",
    "count-mismatch",
    "missing",
    "larger-than-published",
    "inflates-past-published",
    "a-line-over-8-mib",
]


@pytest.mark.parametrize("kind", UNREADABLE)
def test_an_unreadable_snapshot_is_downloaded_and_logged_once_until_latest_json_changes(
    make_stack, caplog, kind
):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    container = _container(stack, snapshots)
    assert customer_call(GOOD[0]["id"]).status_code == 200
    _unreadable_latest(container, kind)
    caplog.clear()

    for _ in range(20):
        assert_error(customer_call(GOOD[0]["id"]), 503, "snapshot_unavailable")
    assert_error(call("customers", {"q": "zyxwvu"}), 503, "snapshot_unavailable")
    assert api_context().latest.downloads == 2  # the good snapshot, then one try of this one
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]

    write_snapshot(container, GOOD, datetime.now(UTC) + timedelta(minutes=10))  # latest.json changes
    assert customer_call(GOOD[0]["id"]).status_code == 200


def test_a_corrupt_latest_json_is_read_and_logged_once_until_it_changes(make_stack, caplog):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    container = _container(stack, snapshots)
    assert customer_call(GOOD[0]["id"]).status_code == 200
    container.upload_blob("latest.json", b"{not json", overwrite=True)
    caplog.clear()
    for _ in range(20):
        assert_error(customer_call(GOOD[0]["id"]), 503, "snapshot_unavailable")
    assert _health()[0] == 503
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    write_snapshot(container, GOOD, datetime.now(UTC) + timedelta(minutes=10))  # latest.json changes
    assert customer_call(GOOD[0]["id"]).status_code == 200


# -- 13: only published snapshots are listed and served -----------------------------------------------
def test_only_published_snapshots_are_listed_and_served(make_stack):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()  # the job publishes and marks its snapshot
    container = _container(stack, snapshots)
    published = snapshots.latest()["snapshot"]
    # Runs that committed and then failed to publish: later the same day, and on a later day.
    same_day = write_snapshot(container, SPECIAL, datetime.now(UTC) + timedelta(seconds=5), publish=False)
    later_day = write_snapshot(container, SPECIAL, datetime.now(UTC) + timedelta(days=2), publish=False)

    listed = [s["name"] for s in body(call("snapshots"))["snapshots"]]
    assert listed == [published]
    assert same_day.name not in listed and later_day.name not in listed
    today = date_call(published.split("/")[1] + "-" + published.split("/")[2] + "-" + published.split("/")[3])
    assert today.status_code == 200 and today.headers["X-Snapshot-Name"] == published
    assert json.loads(today.get_body())["customerCount"] == len(GOOD)
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert_error(date_call(later), 404, "snapshot_not_found", "date")


def test_a_snapshot_published_but_not_yet_marked_is_listed_as_latest_json_names_it(make_stack):
    # A run that moved latest.json and then failed before writing the marker: latest.json is the proof.
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    marked = write_snapshot(container, GOOD, datetime(2024, 3, 7, 2, 0, tzinfo=UTC))
    unmarked = write_snapshot(container, SPECIAL, datetime(2024, 3, 8, 2, 0, tzinfo=UTC), publish=False)
    SnapshotStore(container).publish(unmarked)

    assert [s["name"] for s in body(call("snapshots"))["snapshots"]] == [unmarked.name, marked.name]
    served = date_call("2024-03-08")
    assert served.status_code == 200 and json.loads(served.get_body())["customerCount"] == len(SPECIAL)
    assert date_call("2024-03-07").status_code == 200
    newest = write_snapshot(container, GOOD, datetime(2024, 3, 9, 2, 0, tzinfo=UTC))  # the next publish
    listed = [s["name"] for s in body(call("snapshots"))["snapshots"]]
    assert listed == [newest.name, unmarked.name, marked.name]  # marked on its way out of latest.json


def test_a_run_that_cannot_mark_its_snapshot_fails_naming_the_step_and_the_next_run_marks_it(
    make_stack, monkeypatch
):
    import ssl

    from devstack.storage_proxy import StorageProxy
    from shared.job import run_snapshot

    stack, snapshots = make_stack(customers=GOOD)
    azurite_url = os.environ["SNAPSHOT_STORAGE_ACCOUNT_URL"]
    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    proxy = StorageProxy(stack.tls.ssl_server_context(), stack.azurite.account_url, client)
    proxy.start()
    try:
        monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", proxy.account_url)
        monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
        proxy.fail("PUT", r"\.published", status=403, code="AuthorizationPermissionMismatch", times=1)
        with pytest.raises(
            Exception, match=r"marking snapshots/\S+ published: Blob Storage answered HTTP 403"
        ):
            run_timer()
    finally:
        proxy.stop()
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", azurite_url)
    first = snapshots.latest()["snapshot"]  # latest.json had moved: it is published, not yet marked
    assert [s["name"] for s in body(call("snapshots"))["snapshots"]] == [first]

    run_snapshot(now=datetime.now(UTC) + timedelta(minutes=1))  # marks the one it replaces
    second = snapshots.latest()["snapshot"]
    assert [s["name"] for s in body(call("snapshots"))["snapshots"]] == [second, first]


@pytest.mark.parametrize("kind", ["sha-mismatch", "truncated-gzip", "not-gzip", "too-large", "larger-stored"])
def test_a_published_snapshot_that_does_not_verify_is_never_served_with_200(make_stack, caplog, kind):
    from shared.snapshots.store import Manifest

    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    SnapshotStore(container).ensure_container()
    when = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    name = snapshot_name(when)
    document, stored = _gzip_document([json.dumps(c).encode() for c in GOOD], "2024-03-05T02:00:00Z")
    sha, json_bytes, stored_bytes = hashlib.sha256(document).hexdigest(), len(document), len(stored)
    if kind == "sha-mismatch":
        sha = "0" * 64
    elif kind == "truncated-gzip":
        stored = stored[: len(stored) - 20]
    elif kind == "not-gzip":
        stored = document
    elif kind == "too-large":  # inflates past the size the publisher recorded
        json_bytes = 100
    elif kind == "larger-stored":  # more bytes stored than the publisher recorded
        stored += b"\0" * 10
    etag = _upload_snapshot_blob(container, name, stored)
    manifest = Manifest(name, etag, "2024-03-05T02:00:00Z", len(GOOD), sha, stored_bytes, json_bytes)
    SnapshotStore(container).mark_published(manifest)

    for encoding in ("gzip", "identity") * 5:
        response = date_call("2024-03-05", headers={"Accept-Encoding": encoding})
        assert_error(response, 503, "snapshot_unavailable")
    assert_error(date_call("2024-03-05", headers={"If-None-Match": "*"}), 503, "snapshot_unavailable")
    assert len(_events(caplog, "api.snapshot_unverified")) == 1  # checked once, not once per request


def test_a_snapshot_replaced_after_publishing_is_not_served(make_stack):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    committed = write_snapshot(container, GOOD, datetime(2024, 3, 6, 2, 0, tzinfo=UTC))
    _, stored = _gzip_document([json.dumps(SPECIAL[4]).encode()], "2024-03-06T02:00:00Z")
    _upload_snapshot_blob(container, committed.name, stored)  # overwritten behind our back
    assert date_call("2024-03-06").status_code != 200
    assert committed.name not in [s["name"] for s in body(call("snapshots"))["snapshots"]]


# -- 14: /api/health tells the truth ------------------------------------------------------------------
@pytest.mark.parametrize("kind", UNREADABLE)
def test_health_is_not_ok_while_the_latest_snapshot_cannot_be_served(make_stack, kind):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    assert _health()[0] == 200
    _unreadable_latest(_container(stack, snapshots), kind)
    for _ in range(2):
        status, health = _health()
        assert status == 503 and health["status"] == "unavailable", health
        assert "snapshots/" not in json.dumps(health)


# -- 15: If-None-Match: * ------------------------------------------------------------------------------
def test_if_none_match_star_gives_304_only_for_something_that_exists(make_stack):
    stack, snapshots = make_stack(customers=GOOD)
    star = {"If-None-Match": "*"}
    assert_error(customer_call(GOOD[0]["id"], headers=star), 404, "no_snapshot")
    run_timer()
    assert customer_call(GOOD[0]["id"], headers=star).status_code == 304
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(customer_call(unknown, headers=star), 404, "customer_not_found", "customerId")
    assert_error(date_call("2001-01-01", headers=star), 404, "snapshot_not_found", "date")
    _unreadable_latest(_container(stack, snapshots), "sha-mismatch")
    assert_error(customer_call(GOOD[0]["id"], headers=star), 503, "snapshot_unavailable")
    assert_error(call("customers", headers=star), 503, "snapshot_unavailable")


# -- 16: latest.json cannot lead outside the layout or blow up memory ----------------------------------
@pytest.mark.parametrize(
    "template",
    [
        "../{other}/{name}",
        "snapshots/../../{other}/{name}",
        "/{other}/{name}",
        "{name}/../../../../../{other}/{name}",
        "%2E%2E/{other}/{name}",
        "latest.json",
    ],
)
def test_latest_json_cannot_lead_outside_the_snapshot_layout(make_stack, caplog, template):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    # A valid snapshot of other customers in another container of the same account.
    other = snapshots.container + "-other"
    service = stack.blob_service_client()
    foreign = write_snapshot(
        service.get_container_client(other), [SPECIAL[4]], datetime.now(UTC), publish=False
    )
    manifest = {
        "snapshot": template.format(other=other, name=foreign.name),
        "etag": foreign.etag,
        "generatedAt": foreign.generated_at,
        "customerCount": foreign.customer_count,
        "sha256": foreign.sha256,
        "storedBytes": foreign.stored_bytes,
        "jsonBytes": foreign.json_bytes,
    }
    _point_latest_at(_container(stack, snapshots), manifest)

    assert_error(customer_call(SPECIAL[4]["id"]), 503, "snapshot_unavailable")
    assert_error(call("customers"), 503, "snapshot_unavailable")
    assert _health()[0] == 503
    assert other not in caplog.text


@pytest.mark.parametrize(
    "sizes",
    [
        {"storedBytes": "430"},
        {"jsonBytes": True},
        {"jsonBytes": 0},
        {"storedBytes": -1},
        {"customerCount": 1.5},
        {"jsonBytes": None},
    ],
    ids=["a-string", "a-bool", "zero", "negative", "a-fraction", "null"],
)
def test_a_manifest_with_sizes_that_are_not_whole_numbers_is_not_followed(make_stack, sizes):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    container = _container(stack, snapshots)
    _point_latest_at(container, {**snapshots.latest(), **sizes})
    assert_error(customer_call(GOOD[0]["id"]), 503, "snapshot_unavailable")
    assert _health()[0] == 503


_BOMB_CHILD = r"""
import json, sys
import azure.functions as func
from tests.support.functions import registered

def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

def get(name, route=None, path="", headers=None):
    request = func.HttpRequest("GET", "http://localhost/api/" + path, headers=headers or {}, params={},
                               route_params=route or {}, body=b"")
    return registered()[name].get_user_function()(request)

customer_id = sys.argv[1]
import shared.api.handlers, shared.api.latest, azure.storage.blob  # imported before the first figure
before = peak_mb()
statuses = [get("customer", {"customerId": customer_id}, "customers/" + customer_id).status_code,
            get("customers", headers={"Accept-Encoding": "gzip"}).status_code, get("health").status_code]
print(json.dumps({"statuses": statuses, "growthMB": peak_mb() - before}))
"""


@pytest.mark.parametrize("claimed", ["small", "truthful"])
def test_a_gzip_bomb_named_by_latest_json_does_not_blow_up_memory(make_stack, claimed):
    stack, snapshots = make_stack(customers=GOOD)
    run_timer()
    container = _container(stack, snapshots)
    # 400 MB of one endless "customer" line, 0.4 MB as gzip.
    head = b'{"schemaVersion":1,"generatedAt":"2020-01-01T00:00:00Z","customers":[\n{"id":"'
    compressor = __import__("zlib").compressobj(9, 8, 31)
    parts = [compressor.compress(head)]
    block = b"0" * (1 << 20)
    parts += [compressor.compress(block) for _ in range(400)]
    parts.append(compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 500_000
    name = snapshot_name(datetime.now(UTC) + timedelta(minutes=1))
    etag = _upload_snapshot_blob(container, name, bomb)
    _point_latest_at(
        container,
        {
            "snapshot": name,
            "etag": etag,
            "generatedAt": _now_text(1),
            "customerCount": 1,
            "sha256": "0" * 64,
            "storedBytes": len(bomb),
            "jsonBytes": 4096 if claimed == "small" else len(head) + 400 * len(block),
        },
    )
    child = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, GOOD[0]["id"]],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        cwd=REPO,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(figures))
    assert figures["statuses"] == [503, 503, 503]
    assert figures["growthMB"] < 100, figures


# -- 17: the Azure SDKs' per-request INFO lines stay out of the logs -----------------------------------
def test_azure_sdk_info_lines_stay_out_of_the_logs(make_stack, caplog, monkeypatch):
    azure_logger = logging.getLogger("azure")
    monkeypatch.setattr(azure_logger, "level", logging.NOTSET)  # as in a fresh worker process
    caplog.set_level(logging.INFO)
    make_stack(customers=GOOD, env_overrides={"API_SAS_LIFETIME_SECONDS": "299"})  # a fresh API context

    run_timer()
    assert customer_call(GOOD[0]["id"]).status_code == 200
    assert call("snapshots").status_code == 200
    assert date_call(datetime.now(UTC).date().isoformat()).status_code == 200
    assert _health()[0] == 200

    assert _events(caplog, "snapshot.summary")  # the app's own INFO lines are kept
    chatty = [
        f"{r.name}: {r.getMessage()[:80]}"
        for r in caplog.records
        if r.name.startswith("azure") and r.levelno < logging.WARNING
    ]
    assert not chatty, chatty[:5]
