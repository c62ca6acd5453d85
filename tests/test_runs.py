"""The run itself (issue 16, items 6, 16 and 17): one run at a time per container, a transient failure retried
the same night and one that needs an operator not, and a deadline that follows the host's timeout. End to end
through the registered timer function, the real SDKs, Azurite and the stand-ins."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from devstack.storage_proxy import StorageProxy
from shared import events
from tests.functions import invoke_timer, registered
from tests.test_snapshot_job import assert_complete, next_second


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _storage_proxy(stack, monkeypatch) -> StorageProxy:
    import ssl

    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    proxy = StorageProxy(stack.tls.ssl_server_context(), stack.azurite.account_url, client)
    proxy.start()
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", proxy.account_url)
    monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
    return proxy


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
    proxy = _storage_proxy(stack, monkeypatch)
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
    proxy = _storage_proxy(stack, monkeypatch)
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
