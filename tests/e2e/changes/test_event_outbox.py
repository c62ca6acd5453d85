"""The change-event outbox under hostile conditions: oversized events, damaged or foreign outbox records, two
runs draining at once, a large backlog and a damaged latest.json. End to end through the timer function, with
Azurite's queue (and the storage proxy in front of Blob Storage or the queue where a test must act between
requests)."""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import ssl
import threading
import time
import uuid

import pytest
from azure.storage.blob import ContentSettings

from devstack.population import make_customers
from devstack.storage_proxy import StorageProxy
from shared import events
from shared.storage.layout import marker_name
from tests.support.events import drain, drain_raw, events_stack, logged, outbox
from tests.support.functions import run_timer
from tests.support.job import last_summary, next_real_second, next_second

QUEUE_MESSAGE_LIMIT = 64 * 1024  # a Storage queue message, as sent (base64 text)
NAMESPACE = uuid.UUID("5d0c3f5e-7f5b-4b0e-9a55-0c1f2e3d4c5b")  # the CloudEvents ids' namespace


def decoded(raw: list[str]) -> list[dict]:
    return [json.loads(base64.b64decode(text, validate=True)) for text in raw]


def pending_records(snapshots) -> list[str]:
    return [n for n in outbox(snapshots) if not n.startswith("outbox/failed/")]


def set_aside(snapshots) -> list[str]:
    return [n for n in outbox(snapshots) if n.startswith("outbox/failed/")]


def container_of(stack, snapshots):
    return stack.blob_service_client().get_container_client(snapshots.container)


def proxy_in_front(stack, monkeypatch, *, queue: bool = False) -> StorageProxy:
    """The storage proxy in front of Azurite's blob (or queue) endpoint, the job pointed at it."""
    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    upstream = stack.azurite.queue_account_url if queue else stack.azurite.account_url
    proxy = StorageProxy(stack.tls.ssl_server_context(), upstream, client)
    proxy.start()
    setting = "SNAPSHOT_QUEUE_ACCOUNT_URL" if queue else "SNAPSHOT_STORAGE_ACCOUNT_URL"
    monkeypatch.setenv(setting, proxy.account_url)
    monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
    return proxy


def leftover_night(make_stack, caplog, *, customers: int = 80, create_queue: bool = True):
    """A baseline whose events could not be sent (queue missing), then (`create_queue`) the queue is there:
    one leftover outbox record, of a published (marked) snapshot."""
    stack, snapshots = events_stack(make_stack, create_queue=False)
    if customers != 80:
        stack.partner_center.customers = make_customers(customers, seed=5)
    caplog.set_level("INFO")
    run_timer()
    baseline = snapshots.latest()
    assert len(pending_records(snapshots)) == 1
    if create_queue:
        stack.queue_client(stack.events_queue).create_queue()
    next_second()
    return stack, snapshots, baseline


# -- 1. one oversized event never jams the rest ------------------------------------------------------------
@pytest.mark.parametrize("char", ["x", "é"], ids=["ascii", "two-byte"])
def test_an_event_too_large_for_the_queue_is_sent_by_reference_and_later_events_flow(
    make_stack, caplog, char
):
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    customers = copy.deepcopy(stack.partner_center.customers)
    big, gone = customers[3], customers[7]
    old_name = big["companyProfile"]["companyName"]
    big["companyProfile"]["companyName"] = char * 60_000  # the change: both names in one entry
    newcomer = make_customers(1, seed=99)[0]
    newcomer["companyProfile"]["companyName"] = char * 60_000  # an added entry too large as well
    stack.partner_center.customers = [c for c in customers if c is not gone] + [newcomer]
    caplog.set_level("INFO")
    next_second()

    run_timer()

    second = snapshots.latest()
    raw = drain_raw(stack)
    assert all(len(text) <= QUEUE_MESSAGE_LIMIT for text in raw)
    sent = decoded(raw)
    by_subject = {e["subject"]: e for e in sent}
    assert sorted(e["type"].rsplit(".", 1)[1] for e in sent) == ["added", "changed", "published", "removed"]
    assert sent[-1]["type"] == "partnercenter.snapshot.published"
    changed, added = by_subject[big["id"]], by_subject[newcomer["id"]]
    for event, section in ((changed, "changed"), (added, "added")):
        assert event["datatruncated"] is True
        record_url, _, fragment = event["dataref"].partition("#")
        assert record_url.endswith("/" + second["changes"]["name"])
        assert fragment == f"{section}/{event['subject']}"
        assert event["data"]["id"] == event["subject"]
        assert event["id"] == str(
            uuid.uuid5(NAMESPACE, f"{second['snapshot']}\n{event['type']}\n{event['subject']}")
        )
    assert changed["data"]["fields"] == {"/companyProfile/companyName": {"before": old_name}}  # what fits
    assert set(added["data"]) == {"id", "domain", "relationshipToPartner"}  # the 60,000 characters dropped
    assert "datatruncated" not in by_subject[gone["id"]]
    assert by_subject[gone["id"]]["data"]["companyName"] == gone["companyProfile"]["companyName"]
    assert pending_records(snapshots) == [] and set_aside(snapshots) == []
    summary = last_summary(caplog)
    assert (summary["eventsSent"], summary["eventsPending"], summary["eventsSetAside"]) == (4, 0, 0)
    customers = copy.deepcopy(stack.partner_center.customers)
    renamed = customers[10]
    renamed["companyProfile"]["companyName"] = "Later GmbH"
    stack.partner_center.customers = customers
    next_second()

    run_timer()  # the night after: its events flow, nothing of the previous night is sent again

    third = snapshots.latest()
    later = drain(stack)
    assert [(e["type"], e["subject"]) for e in later] == [
        ("partnercenter.customer.changed", renamed["id"]),
        ("partnercenter.snapshot.published", third["snapshot"]),
    ]
    assert pending_records(snapshots) == []


def test_an_event_that_cannot_fit_even_by_reference_is_set_aside_and_the_rest_go_on(make_stack, caplog):
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    huge = make_customers(1, seed=98)[0]
    huge["id"] = "i" * 50_000  # storable, but its subject alone is too large for a message
    small = make_customers(1, seed=97)[0]
    stack.partner_center.customers = [*stack.partner_center.customers, huge, small]
    caplog.set_level("INFO")
    next_second()

    run_timer()

    second = snapshots.latest()
    sent = drain(stack)
    assert [(e["type"], e["subject"]) for e in sent] == [
        ("partnercenter.customer.added", small["id"]),
        ("partnercenter.snapshot.published", second["snapshot"]),
    ]
    (aside,) = set_aside(snapshots)
    kept = json.loads(snapshots.raw(aside)[0])
    assert kept["subject"] == huge["id"] and kept["type"] == "partnercenter.customer.added"
    ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE)
    assert level == "ERROR"
    assert fields["setAside"] == aside
    assert fields["outbox"].startswith("outbox/changes-")
    assert fields["eventId"] == kept["id"]
    assert huge["id"] not in json.dumps(fields)  # named by its event id, never by customer data
    assert pending_records(snapshots) == []
    summary = last_summary(caplog)
    assert (summary["eventsSent"], summary["eventsPending"], summary["eventsSetAside"]) == (2, 0, 1)


def test_a_message_the_queue_refuses_as_too_large_goes_by_reference_and_other_refusals_stop(
    make_stack, caplog, monkeypatch
):
    """The queue's own word counts, not only the local size check; but a refusal that is not about the size
    (here an API version the queue does not speak) would refuse every message: nothing is set aside."""
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    gone = stack.partner_center.customers[0]
    stack.partner_center.customers = stack.partner_center.customers[1:]
    proxy = proxy_in_front(stack, monkeypatch, queue=True)
    proxy.fail("POST", r"/messages", status=413, code="RequestBodyTooLarge", times=1)
    caplog.set_level("INFO")
    next_second()
    try:
        run_timer()

        second = snapshots.latest()
        removed, published = drain(stack)
        assert (removed["subject"], removed["datatruncated"]) == (gone["id"], True)
        assert removed["data"]["id"] == gone["id"]
        assert "datatruncated" not in published and published["subject"] == second["snapshot"]
        assert set_aside(snapshots) == [] and pending_records(snapshots) == []
        proxy.fail("POST", r"/messages", status=400, code="InvalidHeaderValue", times=100)
        stack.partner_center.customers = stack.partner_center.customers[1:]
        caplog.clear()
        next_second()

        run_timer()
    finally:
        proxy.stop()

    ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_PENDING)
    assert level == "ERROR" and "HTTP 400 InvalidHeaderValue" in fields["step"]
    assert logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE) == []
    assert set_aside(snapshots) == [] and len(pending_records(snapshots)) == 1
    assert last_summary(caplog)["eventsPendingMessages"] == 2


# -- 2. the outbox never stands in the way of the snapshot -----------------------------------------------
def _record(snapshot: str = "snapshots/2026/01/01/customers-20260101T020000Z.json", **changes) -> bytes:
    doc = {
        "snapshot": snapshot,
        "generatedAt": "2026-01-01T02:00:00Z",
        "customerCount": 1,
        "changes": snapshot.replace("/customers-", "/changes-"),
        "counts": {"added": 0, "removed": 0, "changed": 0},
    }
    return json.dumps(doc | changes).encode()


BAD_RECORDS = {
    "not-json": b"\x00\x01{not json",
    "truncated": _record()[:40],
    "a-list": b"[1, 2, 3]",
    "changes-is-latest-json": _record(changes="latest.json"),
    "snapshot-is-latest-json": _record(snapshot="latest.json", changes="latest.json"),
    "outside-the-layout": _record(
        snapshot="../other/snapshots/2026/01/01/customers-20260101T020000Z.json",
        changes="../other/snapshots/2026/01/01/changes-20260101T020000Z.json",
    ),
    "counts-not-numbers": _record(counts={"added": "many", "removed": 0, "changed": 0}),
    "time-not-its-snapshots": _record(generatedAt="2026-01-02T02:00:00Z"),
    "larger-than-a-record": _record(padding="p" * 300_000),
    "gzip-bomb": gzip.compress(b"[" * 10_000_000),
    # the notification channels' progress (shared/notify/channels.py)
    "webhooks-not-a-map": _record(webhooks=["0123456789abcdef"]),
    "webhooks-keyed-by-url": _record(webhooks={"https://hooks.example.com/partner-center": 0}),
    "webhooks-cursor-negative": _record(webhooks={"0123456789abcdef": -1}),
    "webhooks-too-many": _record(webhooks={f"{n:016x}": 0 for n in range(11)}),
    "teams-not-a-flag": _record(teams="yes"),
}
_WITHHELD = {
    "kind": "withheld",
    "latestSnapshot": "snapshots/2025/12/31/customers-20251231T020000Z.json",
    "latestCustomerCount": 2,
    "dropPercent": 50.0,
    "maxDropPercent": 10.0,
}
BAD_WITHHELD_RECORDS = {
    "a-changes-record": _record(),
    "kind-missing": _record(**{k: v for k, v in _WITHHELD.items() if k != "kind"}),
    "drop-not-a-percent": _record(**(_WITHHELD | {"dropPercent": 250})),
    "another-snapshot": _record(
        "snapshots/2026/01/02/customers-20260102T020000Z.json",
        generatedAt="2026-01-02T02:00:00Z",
        **_WITHHELD,
    ),
}


@pytest.mark.parametrize("content", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_an_unreadable_outbox_record_never_stops_the_snapshot(make_stack, caplog, content):
    _an_unreadable_record_is_set_aside(make_stack, caplog, "outbox/changes-20260101T020000Z.json", content)


@pytest.mark.parametrize("content", list(BAD_WITHHELD_RECORDS.values()), ids=list(BAD_WITHHELD_RECORDS))
def test_a_withheld_snapshots_record_that_is_not_what_the_guard_wrote_is_set_aside(
    make_stack, caplog, content
):
    _an_unreadable_record_is_set_aside(make_stack, caplog, "outbox/withheld-20260101T020000Z.json", content)


def _an_unreadable_record_is_set_aside(make_stack, caplog, name: str, content: bytes) -> None:
    stack, snapshots = events_stack(make_stack)
    run_timer()
    first = snapshots.latest()
    drain(stack)
    target = name.replace("outbox/", "outbox/failed/")
    encoding = "gzip" if content[:2] == b"\x1f\x8b" else None  # a bomb says it is gzip: inflated, bounded
    container_of(stack, snapshots).upload_blob(
        name, content, content_settings=ContentSettings(content_encoding=encoding)
    )
    stack.partner_center.customers = stack.partner_center.customers[1:]
    caplog.set_level("INFO")
    next_second()

    run_timer()

    second = snapshots.latest()
    assert second["snapshot"] != first["snapshot"]  # published
    assert [e["type"] for e in drain(stack)] == [
        "partnercenter.customer.removed",
        "partnercenter.snapshot.published",
    ]
    assert pending_records(snapshots) == []
    assert set_aside(snapshots) == [target]
    assert snapshots.raw(set_aside(snapshots)[0])[0] == content[: 256 * 1024]  # kept for the operator
    ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE)
    assert level == "ERROR"
    assert (fields["outbox"], fields["setAside"]) == (name, target)
    assert fields["reason"]
    summary = last_summary(caplog)
    assert (summary["published"], summary["eventsPending"], summary["eventsSetAside"]) == (True, 0, 1)
    caplog.clear()
    next_second()

    run_timer()  # set aside once: the next run neither fails on it nor names it again

    assert logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE) == []
    assert last_summary(caplog)["eventsSetAside"] == 1  # still there for the operator


def test_a_record_whose_change_record_is_unreadable_is_set_aside(make_stack, caplog):
    stack, snapshots, baseline = leftover_night(make_stack, caplog)
    container_of(stack, snapshots).upload_blob(
        baseline["changes"]["name"], b"not a change record", overwrite=True
    )
    caplog.clear()

    run_timer()

    second = snapshots.latest()
    assert [(e["type"], e["subject"]) for e in drain(stack)] == [
        ("partnercenter.snapshot.published", second["snapshot"])
    ]
    assert pending_records(snapshots) == []
    ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE)
    assert level == "ERROR" and fields["outbox"] == "outbox/" + baseline["changes"]["name"].rsplit("/", 1)[1]
    assert "change record" in fields["reason"]


# -- 3. two runs draining the outbox ---------------------------------------------------------------------
def test_a_record_sent_by_another_run_between_listing_and_reading_is_skipped(make_stack, caplog, monkeypatch):
    stack, snapshots, baseline = leftover_night(make_stack, caplog)
    (leftover,) = pending_records(snapshots)
    container = container_of(stack, snapshots)
    proxy = proxy_in_front(stack, monkeypatch)
    deleted = []

    def other_run_sends_it(_target: str) -> None:  # the other run sent it and deleted it, just now
        if not deleted:
            container.delete_blob(leftover)
            deleted.append(leftover)

    proxy.on("GET", r"prefix=outbox", other_run_sends_it)
    caplog.clear()
    try:
        run_timer()
    finally:
        proxy.stop()

    second = snapshots.latest()
    assert deleted
    assert second["snapshot"] != baseline["snapshot"]
    assert [(e["type"], e["subject"]) for e in drain(stack)] == [
        ("partnercenter.snapshot.published", second["snapshot"])
    ]
    assert logged(caplog, events.SNAPSHOT_EVENTS_PENDING) == []
    assert logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE) == []
    assert pending_records(snapshots) == []


def test_a_storage_error_in_the_outbox_names_its_step_and_the_snapshot_is_published(
    make_stack, caplog, monkeypatch
):
    stack, snapshots, baseline = leftover_night(make_stack, caplog)
    proxy = proxy_in_front(stack, monkeypatch)
    proxy.fail("GET", r"/outbox/changes-", status=500, code="InternalError", times=100)
    caplog.clear()
    try:
        run_timer()
    finally:
        proxy.stop()

    second = snapshots.latest()
    assert second["snapshot"] != baseline["snapshot"]
    ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_PENDING)
    assert level == "ERROR"
    assert fields["step"].startswith("reading outbox/changes-")
    assert "HTTP 500" in fields["step"] and "InternalError" in fields["step"]
    assert drain(stack) == []
    assert len(pending_records(snapshots)) == 2  # both wait for the next run
    assert last_summary(caplog)["eventsPending"] == 2
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", stack.azurite.account_url)
    next_second()

    run_timer()
    assert len(drain(stack)) == 3  # the baseline's, the second's and the third's snapshot.published
    assert pending_records(snapshots) == []


def test_a_cursor_write_whose_answer_was_lost_is_not_mistaken_for_another_run(
    make_stack, caplog, monkeypatch
):
    """The SDK retries a write whose answer never came; the retry meets the run's own write (412): the run
    knows its own version and goes on."""
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    proxy = proxy_in_front(stack, monkeypatch)
    monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "2")
    writes = []

    def lose_the_answer(
        target: str,
    ) -> None:  # the record staged, then its cursor written: that answer is lost
        writes.append(target)
        if len(writes) == 2:
            raise ConnectionAbortedError("the answer is lost on the way back")

    proxy.on("PUT", r"/outbox/changes-", lose_the_answer)
    stack.partner_center.customers = stack.partner_center.customers[1:]
    caplog.set_level("INFO")
    next_second()
    try:
        run_timer()
    finally:
        proxy.stop()

    assert len(writes) >= 3  # staged, written (answer lost), written again (412: it was this run's)
    assert [e["type"] for e in drain(stack)] == [
        "partnercenter.customer.removed",
        "partnercenter.snapshot.published",
    ]
    assert pending_records(snapshots) == []
    assert last_summary(caplog)["eventsPending"] == 0


# -- 4. a large backlog cannot eat the run ------------------------------------------------------------
class InFlight:
    """Adds a round trip to every message sent through the queue proxy and counts those in flight at once.

    After the first `alone` messages (sent one at a time), the next `together` wait for one another (10 s
    at most): a sender that has that many in flight at once gets them through together however loaded the
    machine is, so `most` reaches `together`; one that sends fewer at a time leaves `most` below it."""

    def __init__(self, delay: float, *, alone: int, together: int) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self.arrived = 0
        self.alone = alone
        self.lock = threading.Lock()
        self.together = threading.Barrier(together, timeout=10)

    def __call__(self, _target: str) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            waits = self.alone <= self.arrived < self.alone + self.together.parties
            self.arrived += 1
        if waits:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.together.wait()
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1


def test_a_backlog_drains_concurrently_within_its_budget_and_resumes_without_resending(
    make_stack, caplog, monkeypatch
):
    # 1,000 changes: more than a budget of one second can send, however fast the machine (each message holds
    # one of 16 workers for 30 ms here, and windows of 128 start until the budget is spent: at most ~650).
    stack, snapshots, _baseline = leftover_night(make_stack, caplog, customers=1000, create_queue=False)
    renamed = copy.deepcopy(stack.partner_center.customers)
    for customer in renamed:
        customer["companyProfile"]["companyName"] += " (renamed)"
    stack.partner_center.customers = renamed
    run_timer()  # the second night's 1,000 changes wait in the outbox too
    assert len(pending_records(snapshots)) == 2
    stack.queue_client(stack.events_queue).create_queue()
    # The baseline's event and the next one go one at a time: a drain's first message probes the queue.
    in_flight = InFlight(delay=0.03, alone=2, together=8)
    proxy = proxy_in_front(stack, monkeypatch, queue=True)
    proxy.on("POST", r"/messages", in_flight)
    monkeypatch.setenv("SNAPSHOT_EVENTS_SEND_SECONDS", "1")
    caplog.clear()
    next_second()
    try:
        run_timer()  # a budget of one second: part of the backlog, the rest stays pending

        first = last_summary(caplog)
        backlog = 1 + 1001 + 1  # the baseline's event, the second night's, this run's
        assert 0 < first["eventsSent"] < backlog
        assert first["eventsPendingMessages"] == backlog - first["eventsSent"]
        assert first["eventsPending"] >= 1
        ((level, fields),) = logged(caplog, events.SNAPSHOT_EVENTS_PENDING)
        assert level == "WARNING"  # a backlog, not a failure: the next run goes on
        assert (fields["pending"], fields["pendingMessages"]) == (
            first["eventsPending"],
            first["eventsPendingMessages"],
        )
        assert in_flight.most >= 8  # sent concurrently
        monkeypatch.delenv("SNAPSHOT_EVENTS_SEND_SECONDS")
        caplog.clear()
        next_second()
        started = time.monotonic()

        run_timer()  # resumes where the last run stopped

        elapsed = time.monotonic() - started
    finally:
        proxy.stop()
    second = last_summary(caplog)
    assert first["eventsSent"] + second["eventsSent"] == backlog + 1
    assert (second["eventsPending"], second["eventsPendingMessages"]) == (0, 0)
    sent = drain(stack)
    assert len(sent) == backlog + 1  # every event once: nothing sent twice
    assert len({e["id"] for e in sent}) == backlog + 1
    assert elapsed < second["eventsSent"] * in_flight.delay / 2  # far from one at a time
    assert pending_records(snapshots) == []


# -- 5. published is what the markers say ------------------------------------------------------------------
def test_with_latest_json_damaged_the_pending_events_of_a_published_snapshot_are_sent(make_stack, caplog):
    stack, snapshots, baseline = leftover_night(make_stack, caplog)
    container_of(stack, snapshots).upload_blob("latest.json", b"{damaged", overwrite=True)

    run_timer()

    second = snapshots.latest()
    sent = drain(stack)
    assert [(e["type"], e["subject"]) for e in sent] == [
        ("partnercenter.snapshot.published", baseline["snapshot"]),
        ("partnercenter.snapshot.published", second["snapshot"]),
    ]
    assert pending_records(snapshots) == []


def test_an_unmarked_record_staged_after_the_newest_marker_is_left_for_its_run(
    make_stack, caplog, monkeypatch
):
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    baseline_marker = marker_name(snapshots.latest()["snapshot"])
    container = container_of(stack, snapshots)
    proxy = proxy_in_front(stack, monkeypatch)
    name = "outbox/changes-20260101T020000Z.json"

    def concurrent_run_stages(target: str) -> None:  # a run still going stages its record just now
        # after the run's own marker, the newest (the baseline's is written again first)
        if not target.endswith("/" + baseline_marker) and not container.get_blob_client(name).exists():
            container.upload_blob(name, _record())

    proxy.on("PUT", r"\.published", concurrent_run_stages)
    next_second()
    try:
        run_timer()
    finally:
        proxy.stop()

    assert pending_records(snapshots) == [name]  # maybe about to be published: left alone
    assert [e["type"] for e in drain(stack)] == ["partnercenter.snapshot.published"]
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", stack.azurite.account_url)
    next_real_second()  # the next marker is stamped later than the record

    run_timer()  # a newer snapshot is marked since: that record's snapshot can no longer be published

    assert pending_records(snapshots) == []
    assert [e["type"] for e in drain(stack)] == ["partnercenter.snapshot.published"]
