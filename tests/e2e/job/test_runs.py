"""The run itself: one run at a time per container, a transient failure retried the same night and one that
needs an operator not, and a deadline that follows the host's timeout. End to end through the registered
timer function, the real SDKs, Azurite and the stand-ins."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from devstack.population import make_customers
from shared import events
from tests.support.api import call
from tests.support.changes import history_call
from tests.support.functions import TimerOutcome, invoke_timer, registered
from tests.support.job import assert_complete, next_second, storage_proxy


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _published(make_stack, **kwargs):
    """A container with one good published snapshot; returns (stack, snapshots, latest.json bytes, names)."""
    stack, snapshots = make_stack(customers=100, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "50"}, **kwargs)
    assert invoke_timer().error is None
    next_second()
    stack.partner_center.reset()
    return stack, snapshots, snapshots.raw("latest.json")[0], snapshots.names()


# -- 16. a transient failure is retried the same night; one that needs an operator is not --------------------
def test_the_timer_declares_a_retry_policy_the_worker_accepts():
    function = registered()["snapshot_customers"]
    retry = function.get_settings_dict("retry_policy")
    assert retry is not None, "the timer function declares no retry policy"
    assert retry["strategy"] == "fixed_delay"
    assert int(retry["max_retry_count"]) == 3  # three more attempts, each a fresh run
    # The Python worker reads the interval with time.strptime(value, "%H:%M:%S").
    delay = time.strptime(retry["delay_interval"], "%H:%M:%S")
    seconds = delay.tm_hour * 3600 + delay.tm_min * 60 + delay.tm_sec
    assert seconds == 15 * 60
    assert int(retry["max_retry_count"]) * seconds <= 3600  # within the hour after the failure
    binding = function.get_bindings_dict()["bindings"][0]
    assert binding["type"] == "timerTrigger"


def _partner_center_503(stack, monkeypatch):
    stack.partner_center.inject("status", at=1, times=100, status=503)


def _partner_center_drops(stack, monkeypatch):
    stack.partner_center.inject("drop", at=1, times=100)


def _entra_unreachable(stack, monkeypatch):
    monkeypatch.setenv("PARTNER_CENTER_AUTHORITY_HOST", f"https://127.0.0.1:{_closed_port()}")


def _key_vault_unreachable(stack, monkeypatch):
    monkeypatch.setenv("KEY_VAULT_URL", f"https://127.0.0.1:{_closed_port()}/")


def _storage_busy(stack, monkeypatch):
    proxy = storage_proxy(stack, monkeypatch)
    proxy.fail("GET", r"/latest\.json", status=503, code="ServerBusy", times=100)
    return proxy


def _deadline(stack, monkeypatch):
    stack.partner_center.inject("slow", at=1, seconds=1.5)  # the next page is asked for past the deadline
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "1")


TRANSIENT = {
    "partner-center-503-beyond-retries": (_partner_center_503, "HTTP 503"),
    "partner-center-drops-beyond-retries": (_partner_center_drops, "no answer from Partner Center"),
    "entra-id-unreachable": (_entra_unreachable, "Entra ID token request failed"),
    "key-vault-unreachable": (_key_vault_unreachable, "no answer from Key Vault"),
    "storage-busy": (_storage_busy, "reading latest.json: Blob Storage answered HTTP 503"),
    "deadline": (_deadline, "SNAPSHOT_RUN_DEADLINE_SECONDS"),
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_a_transient_failure_raises_so_the_host_retries_it_as_a_fresh_run(make_stack, monkeypatch, kind):
    stack, snapshots, latest_before, names_before = _published(make_stack)
    monkeypatch.setenv("PARTNER_CENTER_MAX_RETRIES", "1")
    monkeypatch.setenv("PARTNER_CENTER_BACKOFF_SECONDS", "0")
    with monkeypatch.context() as fault:
        break_it, message = TRANSIENT[kind]
        proxy = break_it(stack, fault)

        outcome = invoke_timer()

        if proxy is not None:
            proxy.stop()
    assert outcome.raised is not None, "a transient failure must fail the invocation: the host retries it"
    assert message in str(outcome.raised)
    assert outcome.failed is not None
    assert outcome.failed["transient"] is True
    assert outcome.failed["willRetry"] is True
    assert snapshots.raw("latest.json")[0] == latest_before
    # The host's next attempt is a new run: a new correlation id, and it publishes.
    stack.partner_center.reset()
    next_second()
    retry = invoke_timer()
    assert retry.error is None
    assert_complete(stack, snapshots)
    assert snapshots.latest()["snapshot"] not in names_before
    correlation_ids = {r.correlation_id for r in stack.partner_center.customer_requests}
    assert len(correlation_ids) == 1
    assert outcome.failed["correlationId"] not in correlation_ids


def _bad_setting(stack, monkeypatch):
    monkeypatch.setenv("PARTNER_CENTER_PAGE_SIZE", "0")


def _secret_missing(stack, monkeypatch):
    stack.key_vault.delete("partner-center-client-id")


def _secret_forbidden(stack, monkeypatch):
    stack.key_vault.forbidden_get.add("partner-center-client-secret")


def _wrong_client_secret(stack, monkeypatch):
    stack.key_vault.set("partner-center-client-secret", "not-the-secret")


def _mfa(stack, monkeypatch):
    stack.partner_center.inject("status", at=1, times=5, status=401, code="900421", description="MFA")


def _expired_refresh_token(stack, monkeypatch):
    stack.entra.revoke_refresh_token(stack.key_vault.get("partner-center-refresh-token"), reason="expired")


def _withheld(stack, monkeypatch):
    stack.partner_center.customers = stack.partner_center.customers[:50]


def _not_storable(stack, monkeypatch):
    customers = list(stack.partner_center.customers)
    customers[70] = {**customers[70], "id": 5}
    stack.partner_center.customers = customers


def _partner_center_403(stack, monkeypatch):
    stack.partner_center.inject("status", at=2, status=403, code="3000", description="Partner not authorized")


def _storage_forbidden(stack, monkeypatch):
    proxy = storage_proxy(stack, monkeypatch)
    proxy.fail("PUT", r"/latest\.json", status=403, code="AuthorizationPermissionMismatch", times=100)
    return proxy


OPERATOR = {
    "bad-setting": (_bad_setting, "SettingsError", "PARTNER_CENTER_PAGE_SIZE"),
    "secret-missing": (_secret_missing, "SecretsError", "not found"),
    "secret-forbidden": (_secret_forbidden, "SecretsError", "HTTP 403"),
    "client-secret-refused": (_wrong_client_secret, "PartnerCenterError", "invalid_client"),
    "mfa-enforced": (_mfa, "PartnerCenterError", "MFA"),
    "refresh-token-expired": (_expired_refresh_token, "PartnerCenterError", "AADSTS700082"),
    "withheld": (_withheld, "SnapshotWithheldError", "SNAPSHOT_MAX_DROP_PERCENT"),
    "not-storable": (_not_storable, "PartnerCenterError", "not storable"),
    "partner-center-403": (_partner_center_403, "PartnerCenterError", "HTTP 403"),
    "storage-forbidden": (_storage_forbidden, "StorageError", "AuthorizationPermissionMismatch"),
}


@pytest.mark.parametrize("kind", list(OPERATOR))
def test_a_failure_that_needs_an_operator_is_logged_and_not_retried(make_stack, monkeypatch, caplog, kind):
    stack, snapshots, latest_before, _names = _published(make_stack, app_user=True)
    caplog.set_level(logging.INFO)
    break_it, error, message = OPERATOR[kind]
    proxy = break_it(stack, monkeypatch)

    try:
        outcome = invoke_timer()
    finally:
        if proxy is not None:
            proxy.stop()

    assert outcome.raised is None, f"the host would retry {type(outcome.raised).__name__}: {outcome.raised}"
    assert outcome.failed is not None, "the failure was not logged"
    assert outcome.failed["error"] == error
    assert message in outcome.failed["message"]
    assert outcome.failed["transient"] is False
    assert outcome.failed["willRetry"] is False
    # The line the failure alert watches: ERROR, one per failed run.
    failed = [r for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_FAILED + " ")]
    assert [r.levelname for r in failed] == ["ERROR"]
    assert snapshots.raw("latest.json")[0] == latest_before


def test_failures_are_classified_in_one_place():
    """shared.errors.is_transient over the error tree: what the operator must fix is never transient."""
    from shared.errors import (
        DeadlineExceeded,
        PartnerCenterError,
        PublishConflictError,
        SecretsError,
        SettingsError,
        SnapshotExistsError,
        SnapshotFormatError,
        SnapshotWithheldError,
        StorageError,
        is_transient,
    )

    assert is_transient(DeadlineExceeded("x"))
    assert is_transient(PublishConflictError("x"))
    for status in (408, 429, 500, 502, 503, 504):
        assert is_transient(PartnerCenterError("x", status=status)), status
    for status in (301, 400, 401, 403, 404, 409):
        assert not is_transient(PartnerCenterError("x", status=status)), status
    assert is_transient(PartnerCenterError("x", code="temporarily_unavailable"))
    assert not is_transient(PartnerCenterError("x", code="invalid_grant"))
    assert not is_transient(PartnerCenterError("x"))  # an answer that cannot be trusted
    operator = (SettingsError, SecretsError, SnapshotWithheldError, SnapshotExistsError, SnapshotFormatError)
    for error in operator:
        assert not is_transient(error("x")), error
    assert not is_transient(StorageError("x"))  # no Blob Storage error under it: the blob is not as written
    assert is_transient(ConnectionError("x"))  # not ours: an outage
    assert not is_transient(TypeError("x"))  # not ours: a bug fails the same way an hour later
    # Key Vault's and Blob Storage's errors are judged by the SDK error they were raised from.
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    def raised_from(error: Exception, cause: Exception) -> Exception:
        error.__context__ = cause
        return error

    assert is_transient(raised_from(SecretsError("x"), ServiceRequestError("no answer")))
    assert not is_transient(raised_from(SecretsError("x"), ClientAuthenticationError("no token")))
    busy, forbidden = HttpResponseError("busy"), HttpResponseError("forbidden")
    busy.status_code, forbidden.status_code = 503, 403
    assert is_transient(raised_from(StorageError("x"), busy))
    assert not is_transient(raised_from(StorageError("x"), forbidden))


# -- 6. one run at a time per container -------------------------------------------------------------------
class Gate:
    """Holds each run's first Partner Center request (runs told apart by MS-CorrelationId) until released."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self._released: dict[str, threading.Event] = {}
        self._changed = threading.Condition()

    def __call__(self, record) -> None:
        key = record.correlation_id or ""
        with self._changed:
            if key in self._released:
                return  # a later page of a run already let through
            release = self._released[key] = threading.Event()
            self.arrived.append(key)
            self._changed.notify_all()
        release.wait(60)

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.arrived) >= count, timeout)

    def release(self, index: int) -> None:
        with self._changed:
            self._released[self.arrived[index]].set()

    def release_all(self) -> None:
        with self._changed:
            for event in self._released.values():
                event.set()


class InThread:
    """invoke_timer() on a thread of its own."""

    def __init__(self) -> None:
        self.outcome: TimerOutcome | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.outcome = invoke_timer()

    def join(self, timeout: float = 60) -> TimerOutcome:
        self.thread.join(timeout)
        assert self.outcome is not None, "the run did not end"
        return self.outcome


LOCK_BLOB = "locks/run.lock"  # README: the lock blob in the snapshot container


def _lock_blob(stack, snapshots):
    return stack.blob_service_client().get_blob_client(snapshots.container, LOCK_BLOB)


def _leased(stack, snapshots, timeout: float = 5) -> bool:
    """Waits until the lock blob is leased; False when it never was within `timeout`."""
    from azure.core.exceptions import ResourceNotFoundError

    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            if _lock_blob(stack, snapshots).get_blob_properties().lease.state == "leased":
                return True
        except ResourceNotFoundError:
            pass
        time.sleep(0.05)
    return False


def _skipped(caplog) -> list[dict]:
    prefix = "snapshot.skipped "
    return [
        {"level": r.levelname, **json.loads(r.getMessage().removeprefix(prefix))}
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]


def test_overlapping_runs_never_compare_with_the_same_previous_snapshot(make_stack, caplog):
    """The issue's story: a manual run and the timer overlap; C, added by the first and gone by the second,
    must be announced as added and then removed, and C's history must say so."""
    population = make_customers(101, seed=16)
    base, newcomer = population[:100], population[100]
    stack, snapshots = make_stack(customers=0, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "50"})
    stack.partner_center.customers = base
    assert invoke_timer().error is None
    baseline = snapshots.latest()["snapshot"]
    caplog.set_level(logging.INFO)
    next_second()
    stack.partner_center.customers = [*base, newcomer]
    gate = stack.partner_center.gate = Gate()
    try:
        first = InThread()
        assert gate.wait_for(1), "the first run never asked Partner Center"
        _leased(stack, snapshots)  # the first run holds the lock (today's code takes none)
        next_second()
        second = InThread()
        ends = time.monotonic() + 10  # the second run ends (skipped) or waits for its first page
        while second.thread.is_alive() and len(gate.arrived) < 2 and time.monotonic() < ends:
            time.sleep(0.05)
        gate.release(0)
        assert first.join().error is None
        stack.partner_center.customers = base  # C is gone by the time the second run reads its pages
        gate.release_all()
        second_outcome = second.join()
    finally:
        gate.release_all()
        stack.partner_center.gate = None
    next_second()
    assert invoke_timer().error is None  # the next night: C is gone

    history = history_call(newcomer["id"])
    assert history.status_code == 200, f"C's history: {history.status_code} {history.get_body()[:200]!r}"
    answer = json.loads(history.get_body())
    assert [e["type"] for e in answer["events"]] == ["added", "removed"]
    assert answer["present"] is False
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    changes = json.loads(call("changes", {"since": today}).get_body())["changes"]
    assert [(c["type"], c["id"]) for c in changes] == [("added", newcomer["id"]), ("removed", newcomer["id"])]
    # The second run ended at once, published nothing, and said which run holds the lock.
    assert second_outcome.raised is None
    assert second_outcome.failed is None
    (skipped,) = _skipped(caplog)
    assert skipped["level"] == "WARNING"
    assert skipped["heldBy"] == gate.arrived[0]
    assert skipped["correlationId"] != gate.arrived[0]
    assert len(snapshots.snapshot_names()) == 3  # the baseline, the first run, the next night
    assert baseline in snapshots.snapshot_names()


def test_a_lease_left_by_a_dead_run_is_named_then_expires_on_its_own(make_stack, caplog):
    from azure.storage.blob import BlobLeaseClient

    stack, snapshots, latest_before, names_before = _published(make_stack)
    caplog.set_level(logging.INFO)
    lock = _lock_blob(stack, snapshots)
    lock.upload_blob(b"", overwrite=True)
    # "Another run" took the lock and died: its lease is never renewed nor released.
    lease = BlobLeaseClient(lock)
    lease.acquire(lease_duration=15)
    lock.set_blob_metadata(
        {"correlationid": "dead-run-0001", "startedat": "2026-11-24T02:00:00Z"}, lease=lease
    )
    expires = time.monotonic() + 15

    skipped = invoke_timer()

    assert skipped.raised is None and skipped.failed is None  # not a failure: nothing to alert, no retry
    assert snapshots.raw("latest.json")[0] == latest_before
    assert snapshots.names() == names_before  # nothing written
    (line,) = _skipped(caplog)
    assert line["heldBy"] == "dead-run-0001"
    assert line["heldSince"] == "2026-11-24T02:00:00Z"
    assert line["lock"] == "locks/run.lock"
    time.sleep(max(0.0, expires - time.monotonic()) + 1)

    assert invoke_timer().error is None

    assert snapshots.latest()["snapshot"] not in names_before
    assert_complete(stack, snapshots)
    assert len(_skipped(caplog)) == 1


def test_the_lock_is_renewed_while_the_run_lives_and_released_at_its_end(make_stack, monkeypatch, caplog):
    import shared.storage.lease as run_lock

    monkeypatch.setattr(run_lock, "LEASE_SECONDS", 15)  # Blob Storage's shortest lease
    monkeypatch.setattr(run_lock, "RENEW_SECONDS", 3)
    stack, snapshots, latest_before, names_before = _published(make_stack)
    caplog.set_level(logging.INFO)
    gate = stack.partner_center.gate = Gate()
    try:
        first = InThread()
        assert gate.wait_for(1)
        assert _leased(stack, snapshots)
        lease = _lock_blob(stack, snapshots).get_blob_properties().lease
        assert lease.duration == "fixed"  # finite: a dead run's lease expires on its own
        time.sleep(17)  # past the lease's 15 s: only renewals keep it

        skipped = invoke_timer()

        assert skipped.raised is None and skipped.failed is None
        assert _skipped(caplog)[0]["heldBy"] == gate.arrived[0]
        assert snapshots.raw("latest.json")[0] == latest_before
    finally:
        gate.release_all()
        stack.partner_center.gate = None
    assert first.join().error is None
    assert snapshots.latest()["snapshot"] not in names_before
    assert _lock_blob(stack, snapshots).get_blob_properties().lease.state == "available"  # released
    next_second()
    assert invoke_timer().error is None  # the next run takes it at once


def _lock_lost(caplog) -> list[str]:
    return [r.levelname for r in caplog.records if r.getMessage().startswith("snapshot.lock_lost ")]


def test_a_run_that_lost_its_lock_publishes_nothing(make_stack, monkeypatch, caplog):
    from azure.storage.blob import BlobLeaseClient

    import shared.storage.lease as run_lock

    monkeypatch.setattr(run_lock, "RENEW_SECONDS", 0.5)  # its renewer notices while the run waits
    stack, snapshots, latest_before, _names = _published(make_stack)
    caplog.set_level(logging.INFO)
    gate = stack.partner_center.gate = Gate()
    try:
        first = InThread()
        assert gate.wait_for(1)
        assert _leased(stack, snapshots), "the run took no lock"
        lock = _lock_blob(stack, snapshots)
        BlobLeaseClient(lock).break_lease(lease_break_period=0)  # e.g. the run stalled past its lease...
        BlobLeaseClient(lock).acquire(lease_duration=60)  # ...and another run took the lock
        ends = time.monotonic() + 10
        while not _lock_lost(caplog) and time.monotonic() < ends:
            time.sleep(0.1)
        assert _lock_lost(caplog), "the renewals did not notice that the lock was taken"
    finally:
        gate.release_all()
        stack.partner_center.gate = None
    outcome = first.join()

    assert snapshots.raw("latest.json")[0] == latest_before
    assert outcome.raised is None  # the other run is on it: no retry
    assert outcome.failed is not None
    assert outcome.failed["error"] == "RunLockLost"
    assert "locks/run.lock" in outcome.failed["message"]
    assert outcome.failed["willRetry"] is False


# -- 17. the deadline follows the host's timeout ----------------------------------------------------------
def test_the_run_ends_by_itself_before_the_host_timeout_it_runs_under(make_stack, monkeypatch):
    stack, snapshots, latest_before, _names = _published(make_stack)
    # The host's timeout as infra sets it (the app setting overrides host.json): 4 s, so the deadline is 2 s.
    monkeypatch.setenv("AzureFunctionsJobHost__functionTimeout", "00:00:04")
    stack.partner_center.inject("slow", at=1, seconds=2.5)
    started = time.monotonic()

    outcome = invoke_timer()

    assert outcome.failed is not None, "the run went on past the host's timeout"
    assert outcome.failed["error"] == "DeadlineExceeded"
    assert time.monotonic() - started < 4  # it ended with snapshot.failed, not killed by the host
    assert snapshots.raw("latest.json")[0] == latest_before


def _at_risk(caplog) -> list[tuple[int, str, dict]]:
    prefix = "snapshot.deadline_at_risk "
    return [
        (index, r.levelname, json.loads(r.getMessage().removeprefix(prefix)))
        for index, r in enumerate(caplog.records)
        if r.getMessage().startswith(prefix)
    ]


def test_a_run_that_cannot_finish_in_time_says_so_early(make_stack, monkeypatch, caplog):
    stack, _snapshots = make_stack(customers=1000, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "50"})
    caplog.set_level(logging.INFO)
    assert invoke_timer().error is None  # 20 pages, no latency: no warning
    assert _at_risk(caplog) == []
    next_second()
    stack.partner_center.latency = 0.25  # every request: 20 pages take about 5 s
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "3")

    outcome = invoke_timer()

    assert outcome.failed is not None and outcome.failed["error"] == "DeadlineExceeded"
    (index, level, warning), *more = _at_risk(caplog)
    assert not more
    assert level == "WARNING"
    assert warning["expectedPages"] == 20  # the previous snapshot's 1000 customers at 50 a page
    assert warning["deadlineSeconds"] == 3
    assert 0.2 <= warning["pageSeconds"] < 1
    assert warning["estimatedSeconds"] > 3
    assert "SNAPSHOT_RUN_DEADLINE_SECONDS" in warning["advice"]
    assert "AzureFunctionsJobHost__functionTimeout" in warning["advice"]
    pages = [i for i, r in enumerate(caplog.records) if r.getMessage().startswith("snapshot.page ")]
    pages_before = [i for i in pages if i < index]
    assert len(pages_before) - 20 <= 2, "the warning came late"  # the first run's 20, then at most 2 more
    # With the time it needs, the next run publishes and says nothing.
    stack.partner_center.latency = 0
    monkeypatch.delenv("SNAPSHOT_RUN_DEADLINE_SECONDS")
    next_second()
    assert invoke_timer().error is None
    assert len(_at_risk(caplog)) == 1
