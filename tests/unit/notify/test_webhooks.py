"""Signed webhooks (shared/notify/webhooks.py): Standard Webhooks signatures that the reference library
(`standardwebhooks` on PyPI) verifies, CloudEvents batches with a stable webhook-id, the size bound; end to
end against the local receiver (devstack/receivers.py), which verifies with that library."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from devstack.receivers import WebhookReceiver
from devstack.tls import LocalTLS
from shared.changes.events import cloud_event
from shared.notify.delivery import Delivered, DeliveryPolicy, PermanentFailure, RetryLater
from shared.notify.webhooks import (
    CONTENT_TYPE,
    Signer,
    WebhookEndpoint,
    batch_id,
    batches,
    event_id,
)
from shared.signing_secret import new_secret, secret_problem

FAST = DeliveryPolicy(
    read_timeout=1, attempt_seconds=3, answer_seconds=0.5, max_attempts=3, backoff_seconds=0.05
)
SOURCE = "/partnercenter/customer-snapshots/customer-snapshots"
SNAPSHOT = "snapshots/2026/11/24/customers-20261124T020000Z.json"


def events(count: int, *, name: str = "Wingtip Ltd") -> list[str]:
    """CloudEvents exactly as the queue gets them (shared/changes/events.py)."""
    made = []
    for n in range(count):
        customer = str(uuid.UUID(int=n))
        data = {"id": customer, "companyName": f"{name} {n}", "domain": f"w{n}.onmicrosoft.com"}
        made.append(
            cloud_event(
                "partnercenter.customer.added", customer, "2026-11-24T02:00:00Z", SOURCE, data, SNAPSHOT
            )
        )
    return made


@pytest.fixture(scope="module")
def tls():
    with LocalTLS(system_cas=False) as local:
        yield local


@pytest.fixture
def receiver(tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.bundle))
    with WebhookReceiver(tls.ssl_server_context()) as server:
        yield server


def endpoint_for(receiver: WebhookReceiver, secret: str | None = None, policy: DeliveryPolicy = FAST):
    return WebhookEndpoint(
        receiver.endpoint_url, Signer(secret or receiver.secret), channel="webhook 1", policy=policy
    )


# -- signatures ----------------------------------------------------------------------------------------
def test_the_reference_library_verifies_our_signature():
    secret = new_secret()
    body = ("[" + ",".join(events(3, name="Zürich ⚡")) + "]").encode()
    headers = Signer(secret).headers("msg_abc", body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


def test_a_signature_does_not_verify_for_another_body_id_time_or_secret():
    secret = new_secret()
    body = b'[{"id":"e1"}]'
    headers = Signer(secret).headers("msg_abc", body)
    for tampered_body, tampered in (
        (b'[{"id":"e2"}]', headers),
        (body, {**headers, "webhook-id": "msg_other"}),
        (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered_body, tampered)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_the_signature_is_the_specifications_hmac():
    """Standard Webhooks: base64 HMAC-SHA256, keyed with the secret's decoded bytes, of
    "{id}.{timestamp}.{body}"."""
    import hashlib
    import hmac

    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000.[]", hashlib.sha256).digest()).decode()
    assert Signer(secret).signature("msg_1", 1700000000, b"[]") == "v1," + expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("s3cr3t-without-prefix-0123456789", "whsec_<base64>"),
        ("whsec_not*base64!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "24 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "24 to 64 bytes"),
    ],
)
def test_a_secret_not_in_the_whsec_form_is_refused_without_being_quoted(value, problem):
    assert problem in (secret_problem(value) or "")
    with pytest.raises(ValueError) as refused:
        Signer(value)
    assert value not in str(refused.value) and value[6:] not in str(refused.value)


def test_an_unpadded_secret_is_accepted_as_the_spec_allows():
    key = b"k" * 25
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert secret_problem(unpadded) is None
    body = b"[]"
    assert Webhook(unpadded).verify(body, Signer(unpadded).headers("msg_1", body), json_parse=False) is None


def test_the_signer_never_shows_its_key():
    secret = new_secret()
    assert secret[6:] not in repr(Signer(secret)) and secret[6:] not in str(Signer(secret))


# -- batches -------------------------------------------------------------------------------------------
def test_batches_are_json_arrays_of_the_events_in_order_with_their_ids():
    made = events(250)
    found = list(batches(made))
    assert [len(b.event_ids) for b in found] == [100, 100, 50]
    assert [e for b in found for e in json.loads(b.body)] == [json.loads(e) for e in made]
    assert [i for b in found for i in b.event_ids] == [json.loads(e)["id"] for e in made]


def test_a_batch_has_the_same_webhook_id_every_time_and_another_batch_another():
    made = events(30)
    first = list(batches(made, max_events=10))
    again = list(batches(list(made), max_events=10))
    assert [b.webhook_id for b in first] == [b.webhook_id for b in again]
    assert len({b.webhook_id for b in first}) == 3
    assert first[0].webhook_id == batch_id(first[0].event_ids)
    assert first[0].webhook_id.startswith("msg_") and len(first[0].webhook_id) == 31


def test_batches_stay_within_the_byte_bound_and_an_oversized_event_goes_alone():
    made = events(40, name="N" * 3000)
    huge = events(1, name="H" * 50_000)[0]
    found = list(batches([*made[:20], huge, *made[20:]], max_bytes=20_000))
    assert all(len(b.body) <= 20_000 for b in found if not b.oversized)
    [alone] = [b for b in found if b.oversized]
    assert alone.body == b"[" + huge.encode() + b"]"
    assert sum(len(b.event_ids) for b in found) == 41


@pytest.mark.parametrize("bad", ["not json", "[1]", '{"type":"x"}', '{"id":""}', '{"id":5}'])
def test_an_event_without_an_id_is_refused(bad):
    with pytest.raises(ValueError):
        event_id(bad)


# -- end to end ----------------------------------------------------------------------------------------
def test_signed_batches_reach_the_receiver_and_verify(receiver):
    made = events(120, name="Société Générale ⚡")
    endpoint = endpoint_for(receiver)
    outcomes = [endpoint.deliver(batch) for batch in batches(made)]
    assert all(isinstance(o, Delivered) and o.status == 204 for o in outcomes)
    assert receiver.events == [json.loads(e) for e in made]
    assert all(r.verified for r in receiver.received)
    assert {r.headers["content-type"] for r in receiver.received} == {CONTENT_TYPE}


def test_a_retried_batch_keeps_its_webhook_id_and_is_signed_anew(receiver):
    batch = next(batches(events(5)))
    receiver.fail(503)
    outcome = endpoint_for(receiver).deliver(batch)
    assert isinstance(outcome, Delivered) and outcome.attempts == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == batch.webhook_id
    assert first.body == second.body
    assert second.verified
    # Sent again by a later run (its outbox kept it): the same id, so a receiver can tell.
    endpoint_for(receiver).deliver(next(batches(events(5))))
    assert receiver.received[-1].headers["webhook-id"] == batch.webhook_id


def test_a_receiver_with_another_secret_refuses_and_it_is_permanent(receiver):
    outcome = endpoint_for(receiver, secret=new_secret()).deliver(next(batches(events(2))))
    assert isinstance(outcome, PermanentFailure) and outcome.status == 401 and outcome.attempts == 1
    assert receiver.received[0].verified is False and receiver.events == []


def test_a_gone_endpoint_410_is_permanent(receiver):
    receiver.fail(410, times=3)
    outcome = endpoint_for(receiver).deliver(next(batches(events(2))))
    assert isinstance(outcome, PermanentFailure) and outcome.status == 410
    assert len(receiver.received) == 1


def test_a_stalled_receiver_is_retry_later_within_bounded_time(receiver):
    receiver.stall(3600, times=5)
    started = time.monotonic()
    outcome = endpoint_for(receiver).deliver(next(batches(events(2))))
    assert isinstance(outcome, RetryLater) and time.monotonic() - started < 5


def test_the_hook_token_and_the_secret_never_reach_logs_or_outcomes(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.fail(500)
    receiver.fail(404)
    endpoint = endpoint_for(receiver)
    outcome = endpoint.deliver(next(batches(events(2))))
    texts = [repr(outcome), repr(endpoint), *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert receiver.token not in text and receiver.secret not in text and receiver.secret[6:] not in text
    assert isinstance(outcome, PermanentFailure) and outcome.host == "127.0.0.1"
