"""Change records, the completeness guard and /api/health under a hostile store.

End to end: the timer function and the registered HTTP functions, the stand-ins, Azurite; what a hostile
store holds is written straight into the container (and a storage proxy counts what the API reads).

Four nights (tests/support/changes.py's Nights), g0..g3:
    A  baseline
    B  `leaver` removed, `renamed` renamed
    C  `leaver` back, `newcomer` added, `gone` removed
    D  nothing changed
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import ssl
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from azure.storage.blob import ContentSettings

from shared.errors import SnapshotWithheldError
from tests.support.api import body, call
from tests.support.changes import Nights, history_call, since, snapshot_at
from tests.support.functions import run_timer
from tests.support.job import last_summary, next_second
from tests.support.openapi import assert_documented

RECORD_UNREADABLE = "the change record of this step cannot be read"
BASE_UNREADABLE = "the snapshot before this step, the oldest retained, cannot be read"
GZIP = ContentSettings(content_type="application/json", content_encoding="gzip")


def _container(nights_or_stack: Any, snapshots: Any = None) -> Any:
    if snapshots is None:
        stack, snapshots = nights_or_stack.stack, nights_or_stack.snapshots
    else:
        stack = nights_or_stack
    return stack.blob_service_client().get_container_client(snapshots.container)


def record_at(nights: Nights, n: int) -> str:
    return snapshot_at(nights, nights.generated[n]).replace("/customers-", "/changes-")


def replace_blob(container: Any, name: str, data: bytes, settings: ContentSettings | None = GZIP) -> None:
    """Writes `data` over a blob, keeping its metadata (a record's metadata is the chain's link)."""
    blob = container.get_blob_client(name)
    metadata = blob.get_blob_properties().metadata
    blob.upload_blob(data, overwrite=True, metadata=metadata, content_settings=settings)


def step(nights: Nights, n: int, reason: str) -> dict[str, Any]:
    g = nights.generated
    return {
        "snapshot": snapshot_at(nights, g[n]),
        "generatedAt": g[n],
        "previousSnapshot": snapshot_at(nights, g[n - 1]),
        "previousGeneratedAt": g[n - 1],
        "reason": reason,
    }


@pytest.fixture
def nights(make_stack) -> Nights:
    return Nights(make_stack)


# -- 7: an unreadable change record is a step with unknown changes, never a 500 -------------------------
def _damaged_record(document: bytes, kind: str) -> tuple[bytes, ContentSettings | None]:
    head, rest = document.split(b"\n", 1)
    damaged = {
        "not-gzip": (document, GZIP),  # labelled gzip, stored plain
        "gzip-not-labelled": (gzip.compress(document), None),
        "truncated-gzip": (gzip.compress(document)[: len(gzip.compress(document)) // 2], GZIP),
        "entry-not-json": (gzip.compress(head + b"\n{not json,\n" + rest), GZIP),
        "entry-not-an-object": (gzip.compress(head + b"\n[1,2],\n" + rest), GZIP),
        "entry-nested-100000-deep": (
            gzip.compress(head + b'\n{"id":"x","d":' + b"[" * 100_000 + b"]" * 100_000 + b"},\n" + rest),
            GZIP,
        ),
        "header-not-json": (gzip.compress(b'{"schemaVersion":2,oops,"added":[\n' + rest), GZIP),
        "a-future-schema-version": (
            gzip.compress(head.replace(b'"schemaVersion":2', b'"schemaVersion":3', 1) + b"\n" + rest),
            GZIP,
        ),
    }
    return damaged[kind]


RECORD_DAMAGE = [
    "not-gzip",
    "gzip-not-labelled",
    "truncated-gzip",
    "entry-not-json",
    "entry-not-an-object",
    "entry-nested-100000-deep",
    "header-not-json",
    "a-future-schema-version",
]


@pytest.mark.parametrize("kind", RECORD_DAMAGE)
def test_an_unreadable_change_record_is_a_step_with_unknown_changes(nights, kind):
    g = nights.generated
    name = record_at(nights, 1)
    data, settings = _damaged_record(nights.snapshots.document_bytes(name), kind)
    replace_blob(_container(nights), name, data, settings)

    changes = call("changes", {"since": since(10)})
    assert changes.status_code == 200, changes.get_body()[:300]
    payload = body(changes)
    assert [(c["type"], c["id"], c["generatedAt"]) for c in payload["changes"]] == [
        ("added", nights.leaver["id"], g[2]),
        ("added", nights.newcomer["id"], g[2]),
        ("removed", nights.gone["id"], g[2]),
    ]
    assert payload["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]
    assert_documented(payload, "ChangeList")
    paged = body(call("changes", {"since": since(10), "top": "1", "type": "removed"}))
    assert paged["incomplete"] == payload["incomplete"]  # on every page, whatever the type

    leaver = history_call(nights.leaver["id"])
    assert leaver.status_code == 200
    history = body(leaver)
    # B is unknown: the leaver's absence there is read from B's own snapshot
    assert (history["firstSeen"], history["lastSeen"], history["present"]) == (g[0], g[3], True)
    assert [(e["type"], e["generatedAt"]) for e in history["events"]] == [("added", g[2])]
    assert history["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]
    renamed = body(history_call(nights.renamed["id"]))
    assert (renamed["events"], renamed["incomplete"]) == ([], [step(nights, 1, RECORD_UNREADABLE)])


def _counting_proxy(stack: Any, monkeypatch: pytest.MonkeyPatch, pattern: str) -> tuple[Any, list[str]]:
    from devstack.storage_proxy import StorageProxy

    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    proxy = StorageProxy(stack.tls.ssl_server_context(), stack.azurite.account_url, client)
    proxy.start()
    seen: list[str] = []
    proxy.on("GET", pattern, seen.append)
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", proxy.account_url)  # a new API context
    return proxy, seen


def test_an_unreadable_change_record_is_read_and_logged_once_until_it_changes(nights, monkeypatch, caplog):
    name = record_at(nights, 1)
    container = _container(nights)
    good = nights.snapshots.raw(name)[0]
    replace_blob(container, name, b"\x1f\x8b\x08\x00 not deflate")
    proxy, reads = _counting_proxy(nights.stack, monkeypatch, name.rsplit("/", 1)[1].replace(".", r"\."))
    caplog.set_level(logging.INFO)
    try:
        for query in ({"since": since(10)}, {"since": since(10), "top": "1"}, {"since": since(3)}) * 3:
            assert body(call("changes", query))["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]
        for customer in (nights.leaver, nights.renamed, nights.newcomer):
            assert body(history_call(customer["id"]))["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]
        assert len(reads) == 1, reads  # remembered by its ETag
        logged = [r for r in caplog.records if r.getMessage().startswith("api.change_record_unreadable ")]
        assert len(logged) == 1 and logged[0].levelname == "ERROR"
        assert name in logged[0].getMessage()

        replace_blob(container, name, good)  # a new ETag: read again
        payload = body(call("changes", {"since": since(10)}))
        assert payload["incomplete"] == []
        assert [c["generatedAt"] for c in payload["changes"]][:2] == [nights.generated[1]] * 2
        assert len(reads) == 2
    finally:
        proxy.stop()


# -- 8: records are read with bounds ---------------------------------------------------------------------
def _bomb_record(head: bytes, megabytes: int, line: bytes = b"") -> bytes:
    """The record's header line, then `megabytes` MB of one line without end (or of `line` repeated): about
    1/1000 of that as gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(head + (b"\n" if line else b'\n{"id":"'))]
    block = line * ((1 << 20) // len(line)) if line else b"0" * (1 << 20)
    parts += [compressor.compress(block) for _ in range(megabytes)]
    return b"".join(parts) + compressor.flush()


ENTRY_10_KB = b'{"id":"x","companyName":"' + b"0" * 10_000 + b'"},\n'


@pytest.mark.parametrize(
    ("megabytes", "line"),
    [(96, b""), (80, ENTRY_10_KB)],
    ids=["96-mb-without-a-newline", "80-mb-of-entries-from-100-kb"],
)
def test_a_record_that_inflates_without_bound_is_refused_within_bounded_memory(nights, megabytes, line):
    name = record_at(nights, 1)
    head = nights.snapshots.document_bytes(name).split(b"\n", 1)[0]
    bomb = _bomb_record(head, megabytes, line)
    assert len(bomb) < 200_000
    replace_blob(_container(nights), name, bomb)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        response = call("changes", {"since": since(10)})
        seconds = time.monotonic() - started
        growth_mb = (tracemalloc.get_traced_memory()[1] - before) / 1e6
    finally:
        tracemalloc.stop()
    print(
        json.dumps({"growthMB": round(growth_mb, 1), "seconds": round(seconds, 2), "storedBytes": len(bomb)})
    )
    assert response.status_code == 200
    assert body(response)["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]
    assert growth_mb < 60, growth_mb
    assert body(history_call(nights.leaver["id"]))["incomplete"] == [step(nights, 1, RECORD_UNREADABLE)]


# -- 9: a damaged oldest retained snapshot never ends history in a 500 ----------------------------------
@pytest.mark.parametrize("kind", ["truncated-gzip", "not-the-layout", "a-line-over-8-mib"])
def test_a_damaged_oldest_retained_snapshot_never_ends_history_in_a_500(nights, kind):
    g = nights.generated
    oldest = snapshot_at(nights, g[0])
    stored = nights.snapshots.raw(oldest)[0]
    damaged = {
        "truncated-gzip": stored[: len(stored) // 2],
        "not-the-layout": gzip.compress(b'{"customers": []}'),
        "a-line-over-8-mib": gzip.compress(b'{"customers":[\n{"id":"' + b"a" * (9 << 20) + b'"}\n]}'),
    }[kind]
    replace_blob(_container(nights), oldest, damaged)

    response = history_call(nights.leaver["id"])
    assert response.status_code == 200, response.get_body()[:300]
    history = body(response)
    # history starts at B, the oldest snapshot that can be read; the step A→B is named
    assert history["retainedSince"] == g[1]
    assert (history["firstSeen"], history["lastSeen"], history["present"]) == (g[2], g[3], True)
    assert [(e["type"], e["generatedAt"]) for e in history["events"]] == [("added", g[2])]
    assert history["incomplete"] == [step(nights, 1, BASE_UNREADABLE)]
    assert_documented(history, "CustomerHistory")
    quiet = body(history_call(nights.stack.partner_center.customers[0]["id"]))
    assert (quiet["firstSeen"], quiet["present"], quiet["incomplete"]) == (
        g[1],
        True,
        [step(nights, 1, BASE_UNREADABLE)],
    )


# -- 10: the guard fails closed -------------------------------------------------------------------------
def _damage_latest(container: Any, kind: str) -> None:
    if kind == "absent":
        container.delete_blob("latest.json")
        return
    data = {
        "not-json": b"{not json",
        "not-a-manifest": b'{"snapshot": "latest.json"}',
        "gzip-bomb": _bomb_record(b"{", 64),
    }[kind]
    settings = GZIP if kind == "gzip-bomb" else None
    container.upload_blob("latest.json", data, overwrite=True, content_settings=settings)


@pytest.mark.parametrize("kind", ["not-json", "not-a-manifest", "gzip-bomb", "absent"])
def test_without_a_readable_latest_json_the_guard_compares_with_the_newest_marker(make_stack, kind):
    stack, snapshots = make_stack(customers=100)
    run_timer()
    first = snapshots.latest()
    container = _container(stack, snapshots)
    _damage_latest(container, kind)
    latest_before = snapshots.raw("latest.json")[0] if kind != "absent" else None
    stack.partner_center.customers = []  # Partner Center answers 0 customers
    next_second()

    with pytest.raises(
        SnapshotWithheldError, match="0 customers where the latest published snapshot has 100"
    ):
        run_timer()

    assert (snapshots.raw("latest.json")[0] if kind != "absent" else None) == latest_before
    withheld = [n for n in snapshots.snapshot_names() if n != first["snapshot"]]
    assert len(withheld) == 1
    evidence = snapshots.record(withheld[0].replace("/customers-", "/changes-"))
    assert evidence["previousSnapshot"] == first["snapshot"]
    assert evidence["counts"] == {"added": 0, "removed": 100, "changed": 0}
    assert "comparison" not in evidence


def test_a_run_after_latest_json_was_damaged_records_a_real_comparison(make_stack, caplog):
    stack, snapshots = make_stack(customers=40)
    run_timer()
    next_second()
    run_timer()
    second = snapshots.latest()
    _damage_latest(_container(stack, snapshots), "not-json")
    customers = copy.deepcopy(stack.partner_center.customers)
    customers[3]["companyProfile"]["companyName"] = "After The Damage Ltd"
    stack.partner_center.customers = customers
    caplog.set_level(logging.INFO)
    next_second()

    run_timer()

    latest = snapshots.latest()  # healed by the publish
    record = snapshots.record(latest["changes"]["name"])
    assert record["previousSnapshot"] == second["snapshot"]
    assert record["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert "comparison" not in record
    assert last_summary(caplog)["previousSnapshot"] == second["snapshot"]
    payload = body(call("changes", {"since": since(0)}))
    assert [(c["type"], c["id"]) for c in payload["changes"]] == [("changed", customers[3]["id"])]
    assert payload["incomplete"] == []


def test_without_latest_json_or_a_readable_marker_the_run_fails_closed(make_stack):
    stack, snapshots = make_stack(customers=100)
    run_timer()
    container = _container(stack, snapshots)
    _damage_latest(container, "not-json")
    markers = [n for n in snapshots.names() if n.endswith(".published")]
    assert len(markers) == 1
    for marker in markers:
        container.upload_blob(marker, b"[" * 100_000, overwrite=True)
    names_before = snapshots.names()
    stack.partner_center.customers = []
    next_second()

    with pytest.raises(SnapshotWithheldError, match=r"latest\.json .*\.published marker"):
        run_timer()

    assert snapshots.raw("latest.json")[0] == b"{not json"
    assert snapshots.names() == names_before  # nothing written: it stopped before paging


def test_with_the_guard_off_a_run_without_anything_to_compare_says_so(make_stack):
    stack, snapshots = make_stack(customers=30, env_overrides={"SNAPSHOT_MAX_DROP_PERCENT": "100"})
    run_timer()
    container = _container(stack, snapshots)
    _damage_latest(container, "not-json")
    for marker in [n for n in snapshots.names() if n.endswith(".published")]:
        container.upload_blob(marker, b"{}", overwrite=True)
    next_second()

    run_timer()

    record = snapshots.record(snapshots.latest()["changes"]["name"])
    assert record["counts"] is None and record["previousSnapshot"] is None
    assert record["comparison"] == {
        "available": False,
        "reason": "latest.json and the .published markers cannot be read: nothing to compare with",
    }


# -- 11: /api/health reads withheld.json with bounds and echoes only typed values -----------------------
def _withheld(generated_at: str = "2999-01-01T00:00:00Z", **fields: Any) -> dict[str, Any]:
    return {
        "snapshot": "snapshots/2999/01/01/customers-29990101T000000Z.json",
        "generatedAt": generated_at,
        "customerCount": 10,
        "latestSnapshot": "snapshots/2998/01/01/customers-29980101T000000Z.json",
        "latestCustomerCount": 100,
        "dropPercent": 90.0,
        "maxDropPercent": 10.0,
    } | fields


def _bomb_generated_at() -> bytes:
    """withheld.json as a 0.2 MB gzip whose generatedAt is a 200 MB string."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(b'{"generatedAt":"2999-01-01T00:00:00Z')]
    parts += [compressor.compress(b" " * (1 << 20)) for _ in range(200)]
    parts.append(compressor.compress(b'","customerCount":1}'))
    return b"".join(parts) + compressor.flush()


WITHHELD_DAMAGE: dict[str, tuple[bytes, bool]] = {
    "nested-100000-deep": (b'{"generatedAt":' + b"[" * 100_000 + b"]" * 100_000 + b"}", False),
    "gzip-bomb-200-mb-generated-at": (_bomb_generated_at(), True),
    "generated-at-not-a-time": (json.dumps(_withheld("2999-01-01T00:00:00Z<script>")).encode(), False),
    "generated-at-a-number": (json.dumps(_withheld(29990101)).encode(), False),  # type: ignore[arg-type]
    "count-a-string": (json.dumps(_withheld(customerCount="10")).encode(), False),
    "count-negative": (json.dumps(_withheld(customerCount=-1)).encode(), False),
    "count-a-bool": (json.dumps(_withheld(latestCustomerCount=True)).encode(), False),
    "percent-nan": (json.dumps(_withheld(dropPercent=float("nan"))).encode(), False),
    "percent-an-object": (json.dumps(_withheld(maxDropPercent={"x": "<b>"})).encode(), False),
    "snapshot-outside-the-layout": (json.dumps(_withheld(snapshot="../x/latest.json")).encode(), False),
    "not-an-object": (b'["2999-01-01T00:00:00Z"]', False),
    "not-json": (b"{not json", False),
}


@pytest.mark.parametrize("kind", WITHHELD_DAMAGE)
def test_health_reads_withheld_json_with_bounds_and_echoes_only_typed_values(make_stack, kind):
    stack, snapshots = make_stack(customers=5)
    run_timer()
    data, gzipped = WITHHELD_DAMAGE[kind]
    _container(stack, snapshots).upload_blob(
        "withheld.json", data, overwrite=True, content_settings=GZIP if gzipped else None
    )

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        response = call("health")
        growth_mb = (tracemalloc.get_traced_memory()[1] - before) / 1e6
    finally:
        tracemalloc.stop()

    print(json.dumps({"kind": kind, "growthMB": round(growth_mb, 2), "bodyBytes": len(response.get_body())}))
    assert response.status_code == 200, response.get_body()[:300]
    assert len(response.get_body()) < 1000
    payload = json.loads(response.get_body())
    assert payload["status"] == "ok"
    assert payload["withheld"] == "unreadable"
    assert_documented(payload, "Health")
    assert growth_mb < 20, growth_mb


def test_health_echoes_a_withheld_snapshot_it_has_validated(make_stack):
    stack, snapshots = make_stack(customers=5)
    run_timer()
    container = _container(stack, snapshots)
    container.upload_blob("withheld.json", json.dumps(_withheld()).encode(), overwrite=True)
    payload = body(call("health"))
    assert payload["withheld"] == {
        "snapshot": "snapshots/2999/01/01/customers-29990101T000000Z.json",
        "generatedAt": "2999-01-01T00:00:00Z",
        "customerCount": 10,
        "latestCustomerCount": 100,
        "dropPercent": 90.0,
        "maxDropPercent": 10.0,
    }
    assert_documented(payload, "Health")
    older = _withheld("2000-01-01T00:00:00Z")  # older than the latest: nothing to report
    container.upload_blob("withheld.json", json.dumps(older).encode(), overwrite=True)
    next_second()
    run_timer()  # a new latest.json: health looks at withheld.json again
    assert "withheld" not in body(call("health"))


# -- 12: field paths in change records are unambiguous ---------------------------------------------------
def test_field_paths_are_json_pointers_and_never_collide(make_stack):
    stack, snapshots = make_stack(customers=20)
    run_timer()
    customers = copy.deepcopy(stack.partner_center.customers)
    target = customers[4]
    old_name = target["companyProfile"]["companyName"]
    target["companyProfile"]["companyName"] = "Real Rename Ltd"
    target["companyProfile.companyName"] = "Impostor"  # a top-level field with a dot in its name
    target["a/b~c"] = 1
    stack.partner_center.customers = customers
    next_second()

    run_timer()

    record = snapshots.record(snapshots.latest()["changes"]["name"])
    assert record["schemaVersion"] == 2
    assert record["changed"] == [
        {
            "id": target["id"],
            "fields": {
                "/companyProfile/companyName": {"before": old_name, "after": "Real Rename Ltd"},
                "/companyProfile.companyName": {"before": None, "after": "Impostor"},
                "/a~1b~0c": {"before": None, "after": 1},
            },
        }
    ]
    served = body(call("changes", {"since": since(0)}))["changes"]
    assert [c["fields"] for c in served] == [record["changed"][0]["fields"]]


def test_records_with_dotted_paths_are_still_read_and_served_as_pointers(nights):
    """A record written before JSON Pointer paths (schemaVersion 1, dotted paths) reads as before."""
    g = nights.generated
    name = record_at(nights, 1)
    document = nights.snapshots.document_bytes(name)
    before = nights.renamed["companyProfile"]["companyName"]
    version_1 = (
        document.replace(b'"schemaVersion":2', b'"schemaVersion":1', 1)
        .replace(b'"/companyProfile/companyName"', b'"companyProfile.companyName"')
        .replace(b'"fields":{', b'"fields":{"relationshipToPartner":{"before":"a","after":"b"},', 1)
    )
    assert b'"companyProfile.companyName"' in version_1
    replace_blob(_container(nights), name, gzip.compress(version_1))

    fields = {
        "/relationshipToPartner": {"before": "a", "after": "b"},
        "/companyProfile/companyName": {"before": before, "after": "Renamed Ltd"},
    }
    payload = body(call("changes", {"since": since(10), "type": "changed"}))
    assert [(c["id"], c["generatedAt"], c["fields"]) for c in payload["changes"]] == [
        (nights.renamed["id"], g[1], fields)
    ]
    assert payload["incomplete"] == []
    history = body(history_call(nights.renamed["id"]))
    assert [e["fields"] for e in history["events"]] == [fields]
