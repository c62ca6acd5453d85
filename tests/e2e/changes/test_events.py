"""Change events on the storage queue (Azurite), read back the way a default queue trigger would."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime

import pytest

from shared import events
from shared.job import run_snapshot
from tests.support.changes import change_night
from tests.support.events import drain, events_stack, outbox
from tests.support.functions import run_timer
from tests.support.job import last_summary, next_real_second, next_second


def test_one_cloud_event_per_change_after_a_clean_run(make_stack, caplog):
    stack, snapshots = events_stack(make_stack)
    run_timer()
    baseline = drain(stack)
    assert [e["type"] for e in baseline] == ["partnercenter.snapshot.published"]
    expected = change_night(stack)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    latest = snapshots.latest()
    sent = drain(stack)
    assert [e["type"] for e in sent] == [
        "partnercenter.customer.added",
        "partnercenter.customer.removed",
        "partnercenter.customer.changed",
        "partnercenter.snapshot.published",
    ]
    added, removed, changed, published = sent
    for event in sent:
        assert event["specversion"] == "1.0"
        assert event["time"] == latest["generatedAt"]
        assert event["datacontenttype"] == "application/json"
        assert event["source"].endswith("/" + snapshots.container)
        uuid.UUID(event["id"])
    assert len({e["id"] for e in sent}) == 4
    assert (added["subject"], added["data"]["companyName"]) == expected["added"]
    assert (removed["subject"], removed["data"]["companyName"]) == expected["removed"]
    assert (changed["subject"], changed["data"]["fields"]) == expected["changed"]
    assert set(added["data"]) == {"id", "companyName", "domain", "relationshipToPartner"}
    assert published["subject"] == latest["snapshot"]
    assert published["data"]["counts"] == {"added": 1, "removed": 1, "changed": 1}
    assert published["data"]["changes"] == latest["changes"]["name"]
    assert published["data"]["customerCount"] == latest["customerCount"]
    assert outbox(snapshots) == []
    summary = last_summary(caplog)
    assert (summary["eventsSent"], summary["eventsPending"]) == (4, 0)


def test_a_failed_send_is_sent_first_by_the_next_run(make_stack, caplog):
    stack, snapshots = events_stack(make_stack, create_queue=False)  # the queue is missing: sends fail
    caplog.set_level("INFO")
    run_timer()
    expected = change_night(stack)
    next_second()

    run_timer()  # publishes; its events (and the baseline's) cannot be sent

    second = snapshots.latest()
    assert second["changes"]["counts"] == {"added": 1, "removed": 1, "changed": 1}
    assert len(outbox(snapshots)) == 2
    pending = [r for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_EVENTS_PENDING + " ")]
    assert pending and all(r.levelname == "ERROR" for r in pending)
    assert last_summary(caplog)["eventsPending"] == 2
    stack.queue_client(stack.events_queue).create_queue()
    stack.partner_center.customers = stack.partner_center.customers[1:]
    next_second()

    run_timer()

    third = snapshots.latest()
    sent = drain(stack)
    by_snapshot = [(e["type"], e["time"]) for e in sent]
    first_time = [t for kind, t in by_snapshot if kind == "partnercenter.snapshot.published"]
    assert len(first_time) == 3  # the baseline, the second and the third run, in that order
    assert first_time[1:] == [second["generatedAt"], third["generatedAt"]]
    second_run = [e for e in sent if e["time"] == second["generatedAt"]]
    assert [(e["type"].rsplit(".", 1)[1], e["subject"]) for e in second_run[:3]] == [
        ("added", expected["added"][0]),
        ("removed", expected["removed"][0]),
        ("changed", expected["changed"][0]),
    ]
    times = [e["time"] for e in sent]
    assert times == sorted(times)  # leftovers first
    assert [e["type"] for e in sent if e["time"] == third["generatedAt"]] == [
        "partnercenter.customer.removed",
        "partnercenter.snapshot.published",
    ]
    assert outbox(snapshots) == []


def test_an_unpublished_snapshot_sends_nothing(make_stack):
    stack, snapshots = events_stack(make_stack)
    newer = run_snapshot(now=datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC))
    drain(stack)
    stack.partner_center.customers = stack.partner_center.customers[2:]

    older = run_snapshot(now=datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC))

    assert older["published"] is False
    assert snapshots.latest()["snapshot"] == newer["snapshot"]
    assert drain(stack) == []
    assert outbox(snapshots) == []


def test_no_queue_no_events(make_stack, caplog):
    _stack, snapshots = make_stack(customers=10)
    caplog.set_level("INFO")
    run_timer()
    assert (last_summary(caplog)["eventsSent"], last_summary(caplog)["eventsPending"]) == (None, None)
    assert outbox(snapshots) == []


@pytest.mark.parametrize("value", ["Bad_Queue", "ab", "a--b"])
def test_an_invalid_queue_name_is_a_settings_error(make_stack, value):
    from shared.errors import SettingsError

    make_stack(customers=1, env_overrides={"SNAPSHOT_EVENTS_QUEUE": value})
    with pytest.raises(SettingsError, match="SNAPSHOT_EVENTS_QUEUE must be a valid queue name"):
        run_timer()


def test_an_outbox_record_of_a_snapshot_never_published_is_dropped_unsent(make_stack):
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    # A run that crashed between writing its outbox record and publishing.
    never = "snapshots/2026/01/01/customers-20260101T020000Z.json"
    record = never.replace("/customers-", "/changes-")
    container.upload_blob(
        "outbox/changes-20260101T020000Z.json",
        json.dumps(
            {
                "snapshot": never,
                "generatedAt": "2026-01-01T02:00:00Z",
                "customerCount": 1,
                "changes": record,
                "counts": {"added": 0, "removed": 0, "changed": 0},
            }
        ),
    )
    next_real_second()  # this run's marker is stamped later than the record

    run_timer()

    sent = drain(stack)
    assert [e["type"] for e in sent] == ["partnercenter.snapshot.published"]
    assert sent[0]["subject"] == snapshots.latest()["snapshot"]
    assert outbox(snapshots) == []


def test_a_run_without_a_comparison_sends_only_snapshot_published_saying_so(make_stack, caplog):
    """Queue missing at first: the baseline's and the gap run's events wait in the outbox (at least once),
    then go out before the next run's own, the gap run's as snapshot.published alone."""
    stack, snapshots = events_stack(make_stack, create_queue=False)
    run_timer()
    baseline = snapshots.latest()
    change_night(stack)  # changes nobody can see: the baseline snapshot is unreadable next
    container = stack.blob_service_client().get_container_client(snapshots.container)
    container.upload_blob(baseline["snapshot"], b'{"customers": []}', overwrite=True)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    gap = snapshots.latest()
    assert gap["changes"]["counts"] is None
    assert len(outbox(snapshots)) == 2
    assert last_summary(caplog)["eventsPending"] == 2
    stack.queue_client(stack.events_queue).create_queue()
    left = stack.partner_center.customers[0]
    stack.partner_center.customers = stack.partner_center.customers[1:]
    next_second()

    run_timer()

    third = snapshots.latest()
    sent = drain(stack)
    assert [(e["type"], e["time"]) for e in sent] == [
        ("partnercenter.snapshot.published", baseline["generatedAt"]),
        ("partnercenter.snapshot.published", gap["generatedAt"]),
        ("partnercenter.customer.removed", third["generatedAt"]),
        ("partnercenter.snapshot.published", third["generatedAt"]),
    ]
    published = sent[1]
    assert published["subject"] == gap["snapshot"]
    assert published["data"] == {
        "snapshot": gap["snapshot"],
        "generatedAt": gap["generatedAt"],
        "customerCount": gap["customerCount"],
        "changes": gap["changes"]["name"],
        "counts": None,
        "comparison": {
            "available": False,
            "reason": "the previous snapshot is damaged or not in the one-customer-per-line layout "
            "(SnapshotFormatError)",
        },
    }
    assert "comparison" not in sent[-1]["data"]
    assert sent[-1]["data"]["counts"] == {"added": 0, "removed": 1, "changed": 0}  # compared again
    assert sent[2]["subject"] == left["id"]
    assert outbox(snapshots) == []


def test_a_lone_surrogate_reaches_the_queue_as_its_json_escape(make_stack, caplog):
    """Partner Center may send "\\ud800" (strict JSON): its event goes out like any other, the text holding
    the JSON escape (UTF-8 has no form for it), and reads back as the same string."""
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    after = copy.deepcopy(stack.partner_center.customers)
    after[7]["companyProfile"]["companyName"] = "Lone \ud800 Renamed"
    stack.partner_center.customers = after
    caplog.set_level("INFO")
    next_second()

    run_timer()

    sent = drain(stack)
    assert [e["type"] for e in sent] == ["partnercenter.customer.changed", "partnercenter.snapshot.published"]
    change = sent[0]["data"]["fields"]["/companyProfile/companyName"]
    assert change["after"] == "Lone \ud800 Renamed"
    assert last_summary(caplog)["eventsPending"] == 0
    assert not outbox(snapshots)


def test_a_bug_while_sending_events_never_fails_a_published_run(make_stack, caplog, monkeypatch):
    """Whatever goes wrong after the snapshot is published stays with the events: the run succeeds, says
    which step failed, and the next run sends what was left."""
    stack, snapshots = events_stack(make_stack)
    run_timer()
    drain(stack)
    change_night(stack)
    caplog.set_level("INFO")
    next_second()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr("shared.changes.events.cloud_event", broken)
        run_timer()

    summary = last_summary(caplog)
    assert summary["published"] is True and snapshots.latest()["snapshot"] == summary["snapshot"]
    pending = [r for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_EVENTS_PENDING + " ")]
    assert pending and pending[-1].levelname == "ERROR"
    assert json.loads(pending[-1].getMessage().split(" ", 1)[1])["step"] == "sending change events"
    assert drain(stack) == [] and len(outbox(snapshots)) == 1
    next_second()

    run_timer()

    sent = drain(stack)
    assert sum(e["type"] == "partnercenter.customer.changed" for e in sent) == 1
    assert not outbox(snapshots)
