"""Notifications end to end through the registered timer function: the Teams card and the signed webhook
batches of a change night and of a withheld night reach the local receivers (devstack/receivers.py: the
Teams stand-in checks the Workflows message, the webhook receiver verifies every batch with the reference
library `standardwebhooks`); receivers that fail, stall, redirect, answer 410 or a gigabyte cost bounded
time, never the snapshot; what is not delivered goes out with the next run, the same batches with the same
ids; and neither the Teams URL nor a hook's token nor the signing secret reaches a log line or a blob."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
from standardwebhooks import Webhook

from devstack.population import make_customers
from devstack.receivers import TeamsWorkflow, WebhookReceiver
from shared import events
from shared.errors import SecretsError, SnapshotWithheldError
from shared.secrets import TEAMS_WORKFLOW_URL, WEBHOOK_SIGNING_SECRET
from shared.signing_secret import new_secret
from tests.support.changes import change_night
from tests.support.events import drain, logged, outbox
from tests.support.functions import run_timer
from tests.support.job import last_summary, next_second
from tests.support.teams import all_text, card_of, plain_texts

APP = "https://func-notify.azurewebsites.net"
NAMESPACE = uuid.UUID("5d0c3f5e-7f5b-4b0e-9a55-0c1f2e3d4c5b")  # the CloudEvents ids' namespace


@dataclass
class Night:
    """A stack with the notification receivers and the settings that point the job at them."""

    stack: object
    snapshots: object
    teams: TeamsWorkflow | None
    hooks: list[WebhookReceiver] = field(default_factory=list)
    secret: str = ""

    @property
    def hook(self) -> WebhookReceiver:
        return self.hooks[0]


@pytest.fixture
def notify(make_stack, monkeypatch):
    """notify(customers=80, queue=False, teams=True, webhooks=1, key_vault=True, env={}) -> Night."""
    with ExitStack() as opened:

        def make(*, customers=80, queue=False, teams=True, webhooks=1, key_vault=True, env=None) -> Night:
            overrides = {"SNAPSHOT_EVENTS_SEND_SECONDS": "20", "API_PUBLIC_URL": APP, **(env or {})}
            name = f"changes-{uuid.uuid4().hex[:12]}"  # Azurite is shared by the whole session
            if queue:
                overrides["SNAPSHOT_EVENTS_QUEUE"] = name
            stack, snapshots = make_stack(customers=customers, env_overrides=overrides, key_vault=key_vault)
            if queue:
                stack.queue_client(name).create_queue()
                stack.events_queue = name
            tls = stack.tls.ssl_server_context()
            secret = new_secret()
            night = Night(
                stack,
                snapshots,
                opened.enter_context(TeamsWorkflow(tls)) if teams else None,
                [opened.enter_context(WebhookReceiver(tls, secret)) for _ in range(webhooks)],
                secret,
            )
            values = {
                TEAMS_WORKFLOW_URL: night.teams.workflow_url if night.teams else None,
                WEBHOOK_SIGNING_SECRET: secret if webhooks else None,
            }
            for secret_name, value in values.items():
                if value is not None and key_vault:
                    stack.key_vault.set(secret_name, value)
                elif value is not None:
                    monkeypatch.setenv(secret_name.upper().replace("-", "_"), value)
            if webhooks:
                monkeypatch.setenv("WEBHOOK_URLS", " ".join(hook.endpoint_url for hook in night.hooks))
            return night

        yield make


def delivered(hook: WebhookReceiver) -> list[tuple[str, list[dict]]]:
    """(webhook-id, events) of each batch the receiver accepted, after verifying it again here."""
    found = []
    for received in hook.received:
        if received.status == 204:
            batch = Webhook(hook.secret).verify(received.body, received.headers)
            assert received.verified is True and received.headers["content-type"] == (
                "application/cloudevents-batch+json"
            )
            found.append((received.headers["webhook-id"], batch))
    return found


def delivered_events(hook: WebhookReceiver) -> list[dict]:
    return [event for _id, batch in delivered(hook) for event in batch]


def cards(teams: TeamsWorkflow) -> list[dict]:
    """The cards the Teams stand-in accepted, each checked against the Adaptive Card 1.5 schema."""
    return [card_of(received.body) for received in teams.received if received.status == 202]


def timed_run() -> float:
    start = time.monotonic()
    run_timer()
    return time.monotonic() - start


# -- a change night and a withheld night reach every channel --------------------------------------------
def test_a_change_night_reaches_teams_the_webhook_and_the_queue_with_the_same_events(notify, caplog):
    night = notify(queue=True)
    stack, snapshots = night.stack, night.snapshots
    caplog.set_level("INFO")
    run_timer()
    baseline = snapshots.latest()
    assert [e["type"] for e in delivered_events(night.hook)] == ["partnercenter.snapshot.published"]
    assert delivered_events(night.hook) == drain(stack)
    assert night.teams.received == []  # a baseline: nothing changed, no card
    expected = change_night(stack)
    next_second()

    run_timer()

    latest = snapshots.latest()
    queued = drain(stack)
    [(webhook_id, batch)] = delivered(night.hook)[1:]
    assert batch == queued  # the same CloudEvents, the same ids, in the same order
    assert [e["type"].rsplit(".", 1)[1] for e in batch] == ["added", "removed", "changed", "published"]
    assert batch[0]["id"] == str(
        uuid.uuid5(NAMESPACE, f"{latest['snapshot']}\n{batch[0]['type']}\n{expected['added'][0]}")
    )
    assert webhook_id.startswith("msg_")
    [card] = cards(night.teams)
    text, runs = all_text(card), plain_texts(card)
    assert "1 added, 1 removed, 1 changed" in text and "Customers" in text
    assert expected["added"][1] in runs and expected["removed"][1] in runs
    [(path, change)] = expected["changed"][1].items()
    assert f"{path}: {change['before']} → {change['after']}" in runs
    assert card["actions"][0]["url"] == f"{APP}/api/changes?since={latest['generatedAt'][:10]}"
    summary = last_summary(caplog)
    assert summary["published"] is True and latest["snapshot"] != baseline["snapshot"]
    assert (summary["webhookBatchesSent"], summary["webhooksPending"]) == (1, [])
    assert (summary["teamsCardsSent"], summary["teamsPending"]) == (1, [])
    assert (summary["eventsSent"], summary["eventsPending"]) == (4, 0)
    assert outbox(snapshots) == []


def test_a_withheld_night_reaches_teams_the_webhook_and_the_queue(notify, caplog):
    night = notify(queue=True, customers=200)
    stack, snapshots = night.stack, night.snapshots
    run_timer()
    baseline = snapshots.latest()
    drain(stack)
    stack.partner_center.customers = stack.partner_center.customers[:150]
    caplog.set_level("INFO")
    next_second()

    with pytest.raises(SnapshotWithheldError):
        run_timer()

    assert snapshots.latest() == baseline  # nothing published
    withheld = json.loads(snapshots.raw("withheld.json")[0])
    [card] = cards(night.teams)
    text = all_text(card)
    assert (
        "Snapshot withheld: 25% fewer customers" in text and "Removed (50)" in text and "and 40 more" in text
    )
    assert "SNAPSHOT_MAX_DROP_PERCENT above 25" in text
    assert card["actions"][0]["url"] == f"{APP}/api/health"
    [(_id, [event])] = delivered(night.hook)[1:]
    assert event["type"] == "partnercenter.snapshot.withheld" and event["subject"] == withheld["snapshot"]
    assert event["data"] == withheld | {
        "changes": withheld["snapshot"].replace("/customers-", "/changes-"),
        "counts": {"added": 0, "removed": 50, "changed": 0},
    }
    assert drain(stack) == [event]  # the queue gets the same event, the same id
    assert outbox(snapshots) == []
    failed = logged(caplog, events.SNAPSHOT_FAILED)
    assert failed[-1][1]["error"] == "SnapshotWithheldError"  # the run still fails: the alert fires


def test_a_withheld_warning_not_delivered_is_kept_and_the_next_run_sends_it(notify, caplog):
    night = notify(customers=200, webhooks=0, env={"SNAPSHOT_EVENTS_SEND_SECONDS": "3"})
    stack, snapshots = night.stack, night.snapshots
    everyone = stack.partner_center.customers
    run_timer()
    night.teams.fail(503, times=1000)
    stack.partner_center.customers = everyone[:150]
    caplog.set_level("INFO")
    next_second()

    with pytest.raises(SnapshotWithheldError):
        run_timer()

    [kept] = outbox(snapshots)
    assert kept.startswith("outbox/withheld-") and night.teams.received  # it was tried at once
    [(level, pending)] = logged(caplog, events.NOTIFY_PENDING)
    assert (level, pending["channel"], pending["host"]) == ("WARNING", "Teams workflow", "127.0.0.1")
    night.teams.heal()
    stack.partner_center.customers = everyone  # the list is whole again
    next_second()

    run_timer()

    [card] = cards(night.teams)
    assert "Snapshot withheld: 25% fewer customers" in all_text(card)
    summary = last_summary(caplog)
    assert (summary["teamsCardsSent"], summary["teamsPending"], summary["webhooksPending"]) == (1, [], None)
    assert outbox(snapshots) == []


# -- receivers that fail, stall, refuse, redirect or answer a gigabyte --------------------------------------
def test_a_failing_receiver_gets_the_same_batches_from_a_later_run_oldest_first(notify, caplog):
    night = notify(env={"SNAPSHOT_EVENTS_SEND_SECONDS": "3"})
    stack, snapshots = night.stack, night.snapshots
    run_timer()
    night.hook.fail(503, times=1000)
    night.teams.fail(500, times=1000)
    caplog.set_level("INFO")
    change_night(stack)
    next_second()

    assert timed_run() < 12  # about 3 s of the budget, the snapshot published first
    second = snapshots.latest()
    summary = last_summary(caplog)
    assert summary["published"] is True and summary["snapshot"] == second["snapshot"]
    pending = {"snapshot": second["snapshot"], "kind": "changes", "webhook": 1, "host": "127.0.0.1"}
    assert summary["webhooksPending"] == [pending | {"events": 4}]
    assert summary["teamsPending"] == [{"snapshot": second["snapshot"], "kind": "changes"}]
    stack.partner_center.customers = stack.partner_center.customers[1:]
    next_second()

    run_timer()  # still failing: both records wait, oldest first

    third = snapshots.latest()
    summary = last_summary(caplog)
    assert [(p["snapshot"], p["events"]) for p in summary["webhooksPending"]] == [
        (second["snapshot"], 4),
        (third["snapshot"], 2),
    ]
    assert [p["snapshot"] for p in summary["teamsPending"]] == [second["snapshot"], third["snapshot"]]
    tried = [r for r in night.hook.received if r.status == 503]
    night.hook.heal()
    night.teams.heal()
    next_second()

    run_timer()

    fourth = snapshots.latest()
    batches = delivered(night.hook)[1:]
    assert [[e["type"].rsplit(".", 1)[1] for e in batch] for _id, batch in batches] == [
        ["added", "removed", "changed", "published"],
        ["removed", "published"],
        ["published"],
    ]
    assert [batch[-1]["subject"] for _id, batch in batches] == [
        second["snapshot"],
        third["snapshot"],
        fourth["snapshot"],
    ]
    events_sent = [event["id"] for _id, batch in batches for event in batch]
    assert len(events_sent) == len(set(events_sent))  # delivered once each
    # Every attempt that failed held a batch that was later delivered whole: same webhook-id, same events.
    by_id = dict(batches)
    for attempt in tried:
        assert json.loads(attempt.body) == by_id[attempt.headers["webhook-id"]]
    # A channel keeps its order: while the oldest record's batch fails, the newer one waits untried.
    assert {a.headers["webhook-id"] for a in tried} == {batches[0][0]}
    assert [c["body"][0]["text"] for c in cards(night.teams)] == [
        "Partner Center customers: 1 added, 1 removed, 1 changed",
        "Partner Center customers: 0 added, 1 removed, 0 changed",
    ]
    summary = last_summary(caplog)
    assert (summary["webhooksPending"], summary["teamsPending"]) == ([], [])
    assert outbox(snapshots) == []


def test_a_stalled_receiver_costs_at_most_the_send_time_and_the_snapshot_is_published(notify, caplog):
    night = notify(env={"SNAPSHOT_EVENTS_SEND_SECONDS": "2"})
    stack, snapshots = night.stack, night.snapshots
    run_timer()
    night.hook.stall(3600, times=1000)
    night.teams.stall(3600, times=1000)
    caplog.set_level("INFO")
    change_night(stack)
    next_second()

    assert timed_run() < 10  # the stall is cut at the 2 s budget

    summary = last_summary(caplog)
    assert summary["published"] is True and snapshots.latest()["snapshot"] == summary["snapshot"]
    assert len(summary["webhooksPending"]) == 1 and len(summary["teamsPending"]) == 1
    night.hook.heal()
    night.teams.heal()
    next_second()

    run_timer()

    assert [e["type"] for e in delivered_events(night.hook)][-2:] == ["partnercenter.snapshot.published"] * 2
    assert len(cards(night.teams)) == 1 and outbox(snapshots) == []


@pytest.mark.parametrize("refusal", ["410", "redirect"])
def test_a_receiver_that_refuses_for_good_is_given_up_with_an_error_and_the_others_go_on(
    notify, caplog, refusal
):
    night = notify(teams=False, webhooks=2)
    gone, healthy = night.hooks
    run_timer()
    if refusal == "410":
        gone.fail(410, times=1000)
    else:
        gone.redirect(healthy.endpoint_url, status=307, times=1000)
    caplog.set_level("INFO")
    change_night(night.stack)
    next_second()
    before = len(gone.received), len(healthy.received)

    run_timer()

    [(level, given_up)] = logged(caplog, events.NOTIFY_GIVEN_UP)
    status = 410 if refusal == "410" else 307
    assert (level, given_up["channel"], given_up["host"], given_up["status"]) == (
        "ERROR",
        "webhook 1",
        "127.0.0.1",
        status,
    )
    assert given_up["events"] == 4 and given_up["snapshot"] == night.snapshots.latest()["snapshot"]
    assert len(gone.received) == before[0] + 1  # one attempt: not retried
    assert len(healthy.received) == before[1] + 1  # its own batch only: the redirect was not followed
    summary = last_summary(caplog)
    assert summary["webhooksPending"] == [] and outbox(night.snapshots) == []  # given up, not kept
    next_second()

    run_timer()  # not sent again: the next run's own batch is the only one tried

    assert len(gone.received) == before[0] + 2
    assert json.loads(gone.received[-1].body)[0]["subject"] == night.snapshots.latest()["snapshot"]
    assert len(logged(caplog, events.NOTIFY_GIVEN_UP)) == 2


def test_a_teams_workflow_that_is_gone_is_given_up_with_an_error_naming_its_host_only(notify, caplog):
    night = notify(webhooks=0)
    run_timer()
    night.teams.fail(404, times=1000)
    caplog.set_level("INFO")
    change_night(night.stack)
    next_second()

    run_timer()

    [(level, given_up)] = logged(caplog, events.NOTIFY_GIVEN_UP)
    assert (level, given_up["channel"], given_up["host"], given_up["status"]) == (
        "ERROR",
        "Teams workflow",
        "127.0.0.1",
        404,
    )
    assert night.teams.signature not in caplog.text and night.teams.workflow_id not in caplog.text
    assert last_summary(caplog)["teamsPending"] == [] and outbox(night.snapshots) == []


def test_a_huge_answer_is_not_read_and_costs_bounded_time(notify, caplog):
    night = notify()
    run_timer()
    night.hook.huge(1024**3)
    night.teams.huge(1024**3)
    caplog.set_level("INFO")
    change_night(night.stack)
    next_second()

    assert timed_run() < 15

    summary = last_summary(caplog)
    assert (summary["webhooksPending"], summary["teamsPending"]) == ([], [])  # a 200 is a delivery
    assert night.hook.body_bytes_sent < 64 * 1024**2 and night.teams.body_bytes_sent < 64 * 1024**2
    assert outbox(night.snapshots) == []


# -- each channel by its own setting; the secrets ------------------------------------------------------------
def test_webhooks_alone_without_the_queue_get_every_event_in_bounded_batches(notify, caplog):
    night = notify(teams=False)
    stack, snapshots = night.stack, night.snapshots
    run_timer()
    stack.partner_center.customers = stack.partner_center.customers + make_customers(150, seed=31)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    latest = snapshots.latest()
    batches = delivered(night.hook)[1:]
    assert [len(batch) for _id, batch in batches] == [100, 51]
    sent = [event for _id, batch in batches for event in batch]
    assert [e["type"] for e in sent] == ["partnercenter.customer.added"] * 150 + [
        "partnercenter.snapshot.published"
    ]
    for event in sent:
        name = f"{latest['snapshot']}\n{event['type']}\n{event['subject']}"
        assert event["id"] == str(uuid.uuid5(NAMESPACE, name))
    summary = last_summary(caplog)
    assert (summary["eventsSent"], summary["eventsPendingMessages"], summary["teamsCardsSent"]) == (
        None,
        None,
        None,
    )
    assert (summary["webhookBatchesSent"], summary["webhooksPending"], summary["eventsPending"]) == (2, [], 0)
    assert outbox(snapshots) == []


def test_an_endpoint_taken_out_of_the_settings_is_owed_nothing(notify, caplog, monkeypatch):
    night = notify(teams=False, webhooks=2, env={"SNAPSHOT_EVENTS_SEND_SECONDS": "2"})
    kept, dropped = night.hooks
    run_timer()
    dropped.fail(503, times=1000)
    caplog.set_level("INFO")
    change_night(night.stack)
    next_second()
    run_timer()
    assert [p["webhook"] for p in last_summary(caplog)["webhooksPending"]] == [2]
    monkeypatch.setenv("WEBHOOK_URLS", kept.endpoint_url)
    next_second()

    run_timer()

    assert last_summary(caplog)["webhooksPending"] == [] and outbox(night.snapshots) == []


def test_webhooks_without_a_signing_secret_fail_the_run_at_its_start_naming_it(make_stack):
    stack, snapshots = make_stack(env_overrides={"WEBHOOK_URLS": "https://hooks.example.com/partner-center"})

    with pytest.raises(SecretsError) as refused:
        run_timer()

    message = str(refused.value)
    assert "'webhook-signing-secret'" in message and stack.key_vault.url.rstrip("/") in message
    assert "required when WEBHOOK_URLS is set" in message
    assert stack.partner_center.customer_requests == [] and snapshots.latest() is None


@pytest.mark.parametrize("quiet", [False, True])
def test_a_night_without_changes_sends_a_card_only_when_asked(notify, quiet):
    night = notify(webhooks=0, env={"TEAMS_QUIET_NIGHTS": str(quiet).lower()})
    run_timer()
    next_second()

    run_timer()

    found = cards(night.teams)
    if quiet:
        assert [c["body"][0]["text"] for c in found] == ["Partner Center customers: no changes"] * 2
    else:
        assert found == []
    assert outbox(night.snapshots) == []


def test_the_teams_url_the_hook_tokens_and_the_signing_secret_never_reach_logs_or_blobs(notify, caplog):
    """App settings instead of Key Vault; receivers that fail, redirect and refuse, at DEBUG."""
    night = notify(key_vault=False, webhooks=2, env={"SNAPSHOT_EVENTS_SEND_SECONDS": "3"})
    first, second = night.hooks
    caplog.set_level(logging.DEBUG)
    run_timer()
    first.fail(503, times=1000)
    second.redirect(f"{second.url}/hooks/{second.token}/elsewhere", times=1000)
    night.teams.raw(b"HTTP/1.1 200 OK\r\nX: " + night.teams.workflow_url.encode() + b"\r\n\x00bad\r\n\r\n")
    change_night(night.stack)
    next_second()

    run_timer()

    secret_key = night.secret.removeprefix("whsec_")
    forbidden = [
        night.teams.signature,
        night.teams.workflow_id,
        first.token,
        second.token,
        secret_key,
        base64.b64decode(secret_key).hex(),
    ]
    texts = [caplog.text] + [
        str(r.exc_info) + str(r.exc_text) for r in caplog.records if r.exc_info or r.exc_text
    ]
    container = night.stack.blob_service_client().get_container_client(night.snapshots.container)
    texts += [container.download_blob(name).readall().decode() for name in outbox(night.snapshots)]
    for text in texts:
        for value in forbidden:
            assert value not in text
    assert logged(caplog, events.NOTIFY_PENDING) and logged(caplog, events.NOTIFY_GIVEN_UP)


def test_the_record_keeps_each_channels_progress_and_a_channel_done_is_not_sent_again(notify, caplog):
    """The outbox record says what each channel still owes: the queue's cursor, each endpoint's (by the key
    of its URL, never the URL) and the card's flag; the next run sends only what is owed."""
    night = notify(queue=True, env={"SNAPSHOT_EVENTS_SEND_SECONDS": "2"})
    stack, snapshots = night.stack, night.snapshots
    run_timer()
    drain(stack)
    night.hook.fail(503, times=1000)
    night.teams.fail(503, times=1000)
    change_night(stack)
    next_second()

    run_timer()

    [name] = outbox(snapshots)
    record = json.loads(snapshots.raw(name)[0])
    [(key, cursor)] = record["webhooks"].items()
    assert (record["sent"], cursor, record["teams"]) == (4, 0, False)
    assert len(key) == 16 and night.hook.token not in json.dumps(record)
    assert len(drain(stack)) == 4  # the queue is done with it; the record waits for the others
    night.hook.heal()
    night.teams.heal()
    next_second()

    run_timer()

    assert [e["type"] for e in drain(stack)] == ["partnercenter.snapshot.published"]  # nothing again
    assert [len(batch) for _id, batch in delivered(night.hook)] == [1, 4, 1]
    assert len(cards(night.teams)) == 1 and outbox(snapshots) == []


def test_a_record_whose_change_record_is_gone_is_set_aside_by_the_webhooks_alone(notify, caplog):
    """Without the queue, the webhooks find out that a leftover record's change record cannot be read: it is
    set aside once (ERROR, for the operator), the run's own events go on, the snapshot is published."""
    night = notify(teams=False, env={"SNAPSHOT_EVENTS_SEND_SECONDS": "2"})
    stack, snapshots = night.stack, night.snapshots
    night.hook.fail(503, times=1000)
    run_timer()
    baseline = snapshots.latest()
    [leftover] = outbox(snapshots)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    container.delete_blob(baseline["changes"]["name"])
    night.hook.heal()
    caplog.set_level("INFO")
    next_second()

    run_timer()

    latest = snapshots.latest()
    assert latest["snapshot"] != baseline["snapshot"]
    [(level, aside)] = logged(caplog, events.SNAPSHOT_EVENTS_SET_ASIDE)
    assert (level, aside["outbox"]) == ("ERROR", leftover) and "is missing" in aside["reason"]
    assert outbox(snapshots) == [leftover.replace("outbox/", "outbox/failed/")]
    [(_id, batch)] = delivered(night.hook)
    assert [e["subject"] for e in batch] == [latest["snapshot"]]
    assert last_summary(caplog)["eventsSetAside"] == 1
