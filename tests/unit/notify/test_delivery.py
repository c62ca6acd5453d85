"""The notification sender (shared/notify/delivery.py) against hostile receivers: local HTTPS stand-ins
(devstack/receivers.py) with the test CA, the real urllib3 and the trust bundle the app uses."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from devstack.receivers import TeamsWorkflow, WebhookReceiver
from devstack.tls import LocalTLS
from shared import events
from shared.notify.delivery import Delivered, DeliveryPolicy, PermanentFailure, RetryLater, Sender
from shared.notify.digest import Customer, RunDigest
from shared.notify.teams import TeamsWorkflow as TeamsChannel
from shared.notify.teams import changes_message

FAST = DeliveryPolicy(
    connect_timeout=2,
    read_timeout=1,
    attempt_seconds=3,
    answer_seconds=0.5,
    max_attempts=3,
    backoff_seconds=0.05,
    max_backoff_seconds=0.2,
    max_retry_after=5,
)


@pytest.fixture(scope="module")
def tls():
    with LocalTLS(system_cas=False) as local:
        yield local


@pytest.fixture
def trusted(tls, monkeypatch):
    """The app's trust bundle names the test CA, as DevStack.env does for every other client."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.bundle))
    return tls


@pytest.fixture
def teams(trusted):
    with TeamsWorkflow(trusted.ssl_server_context()) as server:
        yield server


@pytest.fixture
def hook(trusted):
    with WebhookReceiver(trusted.ssl_server_context()) as server:
        yield server


def digest() -> RunDigest:
    return RunDigest(
        "snapshots/2026/11/24/customers-20261124T020000Z.json",
        "2026-11-24T02:00:00Z",
        120,
        added_count=1,
        added=(Customer("3f2a", "Wingtip Ltd", "wingtip42.onmicrosoft.com"),),
    )


def send_card(server: TeamsWorkflow, policy: DeliveryPolicy = FAST, **kwargs):
    return TeamsChannel(server.workflow_url, policy).send(changes_message(digest()), **kwargs)


def test_a_card_reaches_the_workflow_and_is_accepted(teams):
    outcome = send_card(teams)
    assert outcome == Delivered("Teams workflow", "127.0.0.1", 202, 1)
    assert teams.cards[0]["type"] == "AdaptiveCard"
    assert teams.received[0].headers["content-type"] == "application/json"


def test_5xx_then_ok_is_delivered_by_a_later_attempt(teams, caplog):
    teams.fail(503, times=1)
    teams.fail(500, times=1)
    caplog.set_level(logging.WARNING, "shared.notify")
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.attempts == 3
    assert [r.status for r in teams.received] == [503, 500, 202]
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith(events.NOTIFY_RETRY)]
    assert len(retries) == 2 and '"host": "127.0.0.1"' in retries[0] and "HTTP 503" in retries[0]


def test_5xx_every_time_is_retry_later_after_the_configured_attempts(teams):
    teams.fail(502, times=10)
    outcome = send_card(teams)
    assert isinstance(outcome, RetryLater)
    assert (outcome.status, outcome.attempts, len(teams.received)) == (502, 3, 3)


@pytest.mark.parametrize("status", [408, 429, 500, 503, 504])
def test_statuses_worth_retrying_are_retried(teams, status):
    teams.fail(status)
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.attempts == 2


def test_429_retry_after_is_honoured(teams):
    teams.fail(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered)
    gap = teams.received[1].at - teams.received[0].at
    assert 0.95 <= gap < 2.5, gap
    assert time.monotonic() - started < 4


def test_a_long_retry_after_is_capped(teams):
    teams.fail(429, headers={"Retry-After": "86400"})
    policy = DeliveryPolicy(**{**FAST.__dict__, "max_retry_after": 0.3})
    started = time.monotonic()
    outcome = send_card(teams, policy)
    assert isinstance(outcome, Delivered) and time.monotonic() - started < 2


def test_a_retry_after_past_the_deadline_is_retry_later_at_once(teams):
    teams.fail(429, headers={"Retry-After": "4"})
    started = time.monotonic()
    outcome = send_card(teams, deadline=time.monotonic() + 2)
    assert isinstance(outcome, RetryLater)
    assert (outcome.status, outcome.retry_after, outcome.attempts) == (429, 4.0, 1)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("value", ["-5", "1.5", "soon", ""])
def test_odd_retry_after_values_mean_the_backoff(teams, value):
    teams.fail(429, headers={"Retry-After": value})
    started = time.monotonic()
    assert isinstance(send_card(teams), Delivered)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 415, 422])
def test_a_4xx_other_than_408_and_429_is_permanent_and_not_retried(teams, status):
    teams.fail(status, times=5)
    outcome = send_card(teams)
    assert isinstance(outcome, PermanentFailure)
    assert (outcome.status, outcome.attempts, len(teams.received)) == (status, 1, 1)
    assert f"HTTP {status}" in outcome.reason and "not retried" in outcome.reason


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(teams, trusted, status):
    with TeamsWorkflow(trusted.ssl_server_context()) as elsewhere:
        teams.redirect(elsewhere.workflow_url.replace("127.0.0.1", "localhost"), status=status)
        outcome = send_card(teams)
        assert isinstance(outcome, PermanentFailure) and outcome.status == status
        assert "redirect to localhost" in outcome.reason and "not followed" in outcome.reason
        assert elsewhere.received == []  # the card and the signature stayed home
        assert len(teams.received) == 1


def test_a_receiver_that_stalls_is_cut_by_the_read_timeout(teams):
    teams.stall(3600, times=5)
    started = time.monotonic()
    outcome = send_card(teams)
    elapsed = time.monotonic() - started
    assert isinstance(outcome, RetryLater) and outcome.status is None and outcome.attempts == 3
    assert "stalled" in outcome.reason or "no complete answer" in outcome.reason
    # Three attempts of one read timeout (1 s) each, plus the short backoffs.
    assert 3 <= elapsed < 6, elapsed


def test_trickling_headers_are_cut_by_the_attempt_time(teams):
    # One byte every 0.2 s: every socket read succeeds within the read timeout (1 s), so only the
    # attempt's total time (here 1.5 s) can cut it; the 74-byte head would take 15 s.
    teams.trickle(0.2, part="headers", times=5)
    policy = DeliveryPolicy(**{**FAST.__dict__, "attempt_seconds": 1.5, "max_attempts": 2})
    started = time.monotonic()
    outcome = send_card(teams, policy)
    elapsed = time.monotonic() - started
    assert isinstance(outcome, RetryLater) and outcome.reason == "no complete answer within 1.5 s"
    assert 3 <= elapsed < 4.5, elapsed


def test_a_trickling_body_after_a_2xx_costs_at_most_the_answer_time(teams):
    teams.trickle(0.2, part="body")
    started = time.monotonic()
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.status == 200
    assert time.monotonic() - started < FAST.answer_seconds + 0.5


def test_a_huge_answer_is_read_a_few_kilobytes_and_dropped(teams):
    teams.huge(1024**3)
    started = time.monotonic()
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.status == 200
    assert time.monotonic() - started < 1.5
    time.sleep(0.2)
    # What the receiver could push before the hang-up: socket buffers, not the gigabyte.
    assert teams.body_bytes_sent < 32 * 1024 * 1024


def test_a_dropped_connection_is_retried(teams):
    teams.drop(times=2)
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.attempts == 3


def test_an_answer_that_is_not_http_is_retried(teams):
    teams.raw(b"SSH-2.0-OpenSSH_9.6\r\n")
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered) and outcome.attempts == 2


def test_a_refused_connection_is_retry_later(trusted):
    with TeamsWorkflow(trusted.ssl_server_context()) as gone:
        url = gone.workflow_url
    outcome = TeamsChannel(url, FAST).send(changes_message(digest()))
    assert isinstance(outcome, RetryLater) and outcome.attempts == 3
    assert outcome.reason == "the connection was refused or failed"


def test_a_certificate_the_trust_bundle_does_not_hold_is_refused(tls, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with TeamsWorkflow(tls.ssl_server_context()) as server:
        outcome = TeamsChannel(server.workflow_url, FAST).send(changes_message(digest()))
        assert isinstance(outcome, RetryLater) and outcome.reason.startswith("TLS failed")
        assert server.cards == []


def test_the_deadline_bounds_the_whole_delivery(teams):
    teams.stall(3600, times=10)
    policy = DeliveryPolicy(
        **{**FAST.__dict__, "read_timeout": 30, "attempt_seconds": 30, "max_attempts": 10}
    )
    started = time.monotonic()
    outcome = send_card(teams, policy, deadline=time.monotonic() + 1.2)
    assert isinstance(outcome, RetryLater)
    assert time.monotonic() - started < 2


def test_no_attempt_starts_after_the_deadline(teams):
    outcome = send_card(teams, deadline=time.monotonic() - 1)
    assert isinstance(outcome, RetryLater) and outcome.attempts == 0 and teams.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "http://10.0.0.1/x",
        "ftp://hooks.example.com/x",
        "https://user:s3cr3tpw@hooks.example.com/x",
        "hooks.example.com/x",
    ],
)
def test_only_https_or_loopback_http_can_be_an_endpoint(url):
    with pytest.raises(ValueError) as refused:
        Sender(url, "webhook 1")
    assert "/x" not in str(refused.value) and "s3cr3tpw" not in str(refused.value)


def test_plain_http_to_loopback_is_allowed(monkeypatch):
    with WebhookReceiver(None) as plain:
        from shared.notify.webhooks import Signer, WebhookEndpoint, batches

        endpoint = WebhookEndpoint(plain.endpoint_url, Signer(plain.secret), channel="webhook 1", policy=FAST)
        batch = next(batches(['{"id":"e1","type":"t"}']))
        assert isinstance(endpoint.deliver(batch), Delivered)
        assert plain.events == [{"id": "e1", "type": "t"}]


def test_a_slow_receiver_does_not_hold_up_other_senders(trusted):
    """Each attempt has its own connection: senders on other threads (the outbox sends concurrently)
    are not serialised behind a stalled one."""
    with (
        TeamsWorkflow(trusted.ssl_server_context()) as slow,
        TeamsWorkflow(trusted.ssl_server_context()) as fast,
    ):
        slow.stall(3600, times=5)
        results: dict[str, object] = {}
        thread = threading.Thread(target=lambda: results.setdefault("slow", send_card(slow)))
        thread.start()
        time.sleep(0.1)
        started = time.monotonic()
        assert isinstance(send_card(fast), Delivered)
        assert time.monotonic() - started < 0.5
        thread.join()
        assert isinstance(results["slow"], RetryLater)


def test_the_url_and_its_signature_never_reach_logs_or_outcomes(teams, caplog):
    caplog.set_level(logging.DEBUG)
    secret_parts = [teams.workflow_url, teams.signature, teams.workflow_id, "/workflows/"]
    outcomes = []
    for misbehave in (
        lambda: teams.fail(503),
        lambda: teams.fail(410),
        lambda: teams.redirect(teams.workflow_url, status=302),
        lambda: teams.stall(3600, times=3),
        lambda: teams.trickle(0.2, times=3),
        lambda: teams.drop(times=3),
        # Malformed headers make urllib3 log the request's URL (with its sig) at WARNING.
        lambda: teams.raw(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n: no name\r\nbroken line\r\n\r\n"),
        lambda: teams.huge(10**8),
    ):
        misbehave()
        outcome = send_card(teams)
        outcomes.append(outcome)
        teams._script.clear()
    texts = [repr(o) for o in outcomes] + [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    assert any("127.0.0.1" in text for text in texts)  # the host is named
    leaks = [(part, text) for text in texts for part in secret_parts if part in text]
    assert not leaks
    assert repr(TeamsChannel(teams.workflow_url)) == "TeamsWorkflow(host=127.0.0.1)"


def test_a_receiver_that_never_starts_tls_is_cut_by_the_attempt_time(trusted):
    """A listener that accepts and says nothing holds the TLS handshake, where the read timeout of the
    connection is the connect timeout (here 30 s): the attempt's total time (1 s) cuts it."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        policy = DeliveryPolicy(
            **{**FAST.__dict__, "connect_timeout": 30, "attempt_seconds": 1, "max_attempts": 1}
        )
        started = time.monotonic()
        outcome = Sender(f"https://127.0.0.1:{port}/hook", "webhook 1", policy).post(b"[]", dict)
        elapsed = time.monotonic() - started
        for sock in accepted:
            sock.close()
    assert isinstance(outcome, RetryLater) and outcome.reason == "no complete answer within 1 s"
    assert elapsed < 2, elapsed


def test_a_retry_after_http_date_is_honoured(teams):
    from email.utils import formatdate

    teams.fail(503, headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)})
    outcome = send_card(teams)
    assert isinstance(outcome, Delivered)
    assert 0.9 <= teams.received[1].at - teams.received[0].at < 3


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/" + "x" * 2100, "is longer than 2048 characters"),
        ("https://hooks.example.com:99999/x", "is not a URL"),
        ("https://hooks.example.com:0/x", "has port 0"),
        ("https:///x", "must be an https:// URL"),
        ("https://hooks.example.com/x", None),
        ("http://[::1]:8080/x", None),
    ],
)
def test_endpoint_problem(url, problem):
    from shared.hosts import endpoint_problem

    assert endpoint_problem(url) == problem
