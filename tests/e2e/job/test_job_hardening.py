"""The snapshot job under hostile answers: every test runs the job end to end over the real SDKs against
Azurite and stand-ins that do the hostile thing, and checks the guarantee docs/guarantees.md states."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from devstack.partner_center import PartnerCenter
from devstack.population import make_customers
from tests.support.functions import run_timer
from tests.support.job import assert_complete, next_second, publish_good_snapshot, storage_proxy


def assert_untouched(snapshots, latest_before: bytes, names_before: list[str]) -> None:
    assert snapshots.raw("latest.json")[0] == latest_before
    assert snapshots.names() == names_before


def failed_message(caplog) -> str:
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("snapshot.failed ")]
    assert failed, "no snapshot.failed event was logged"
    return failed[-1]


def fail_after_good_snapshot(make_stack, caplog, **kwargs):
    """A good snapshot is published; the caller then breaks something and runs again."""
    stack, snapshots, latest_before = publish_good_snapshot(make_stack, **kwargs)
    stack.partner_center.reset()
    caplog.set_level(logging.INFO)
    return stack, snapshots, latest_before, snapshots.names()


# -- 1. two runs never mix -----------------------------------------------------------------------------
class _NoLock:
    """What a run that takes no run lock holds."""

    def confirm(self) -> None:
        pass

    def release(self) -> None:
        pass


def _no_lock_on_thread(monkeypatch, name: str) -> None:
    """Runs on the thread called `name` take no run lock."""
    import shared.job.run as job

    holding = job.hold_run_lock

    def hold(store, context, started_at):
        if threading.current_thread().name == name:
            return _NoLock()
        return holding(store, context, started_at)

    monkeypatch.setattr(job, "hold_run_lock", hold)


def test_two_runs_in_the_same_second_never_mix_blocks(make_stack, monkeypatch):
    import shared.snapshots.writer as writer
    from shared.errors import SnapshotExistsError
    from shared.job import run_snapshot

    monkeypatch.setattr(writer, "BLOCK_BYTES", 2048)  # many blocks per run
    # Two runs of one container no longer overlap (the run lock, test_runs.py in this folder); the second run
    # here takes no lock, as an app version from before the lock would during a deployment, so that the block
    # ids are what keeps the runs apart.
    _no_lock_on_thread(monkeypatch, "second")
    stack, snapshots = make_stack(customers=900)
    now = datetime(2026, 11, 24, 2, 0, 0, tzinfo=UTC)
    name = "snapshots/2026/11/24/customers-20261124T020000Z.json"
    arrived: list[str | None] = []
    release = [threading.Event(), threading.Event()]
    lock = threading.Lock()

    def gate(record):  # holds each run's request for its second page until the test lets it go
        if record.page != 1:
            return
        with lock:
            if record.correlation_id not in arrived:
                arrived.append(record.correlation_id)
            order = arrived.index(record.correlation_id)
        release[order].wait(30)

    stack.partner_center.gate = gate
    outcome: dict[str, object] = {}

    def run(key: str, page_size: str) -> None:
        import os

        try:
            outcome[key] = run_snapshot(
                now=now, environ={**os.environ, "PARTNER_CENTER_PAGE_SIZE": page_size}
            )
        except Exception as exc:
            outcome[key] = exc

    blob = stack.blob_service_client().get_blob_client(snapshots.container, name)

    def wait_for(condition, what: str) -> None:
        for _ in range(300):
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def staged() -> int:
        try:
            return len(blob.get_block_list("uncommitted")[1])
        except Exception:
            return 0

    first = threading.Thread(target=run, args=("first", "300"))
    first.start()
    wait_for(lambda: len(arrived) == 1 and staged() > 0, "the first run to stage its first page")
    stack.partner_center.customers = make_customers(900, seed=77)  # the second run reads other customers
    second = threading.Thread(target=run, args=("second", "500"), name="second")
    second.start()
    wait_for(lambda: len(arrived) == 2, "the second run to ask for its second page")
    time.sleep(1.0)  # its first page is staged meanwhile (same blob, same moment)
    release[0].set()
    first.join(60)
    release[1].set()
    second.join(60)

    assert isinstance(outcome["first"], dict), outcome["first"]
    assert outcome["first"]["published"] is True
    latest = snapshots.latest()
    assert latest["snapshot"] == name
    stored, properties = snapshots.raw(name)
    assert properties.etag == latest["etag"]
    document_bytes = gzip.decompress(stored)
    assert hashlib.sha256(document_bytes).hexdigest() == latest["sha256"] == properties.metadata["sha256"]
    document = json.loads(document_bytes)
    assert len(document["customers"]) == latest["customerCount"] == 900
    assert document["source"]["correlationId"] == outcome["first"]["correlationId"]
    loser = outcome["second"]
    assert isinstance(loser, SnapshotExistsError)
    assert name in str(loser) and "another run" in str(loser)


@pytest.mark.parametrize(
    ("method", "after", "message"),
    [
        ("PUT", r"comp=blocklist", "not made of the blocks this run staged"),  # caught by the block list
        ("GET", r"blocklisttype=committed", "changed or vanished since it was committed"),  # by its ETag
    ],
    ids=["after-commit", "after-block-list-check"],
)
def test_a_snapshot_changed_after_its_commit_is_not_published(
    make_stack, caplog, monkeypatch, method, after, message
):
    stack, snapshots, latest_before, _names = fail_after_good_snapshot(make_stack, caplog)
    proxy = storage_proxy(stack, monkeypatch)
    container = stack.blob_service_client().get_container_client(snapshots.container)

    def overwrite(target: str) -> None:  # someone else writes the blob the moment it is committed
        name = target.split(f"/{snapshots.container}/", 1)[1].split("?", 1)[0]
        container.upload_blob(name, gzip.compress(b'{"customers":[]}'), overwrite=True)

    proxy.on(method, after, overwrite)
    try:
        with pytest.raises(Exception, match="snapshots/") as failure:
            run_timer()
    finally:
        proxy.stop()

    assert message in str(failure.value)
    assert snapshots.raw("latest.json")[0] == latest_before


# -- 2. drops and stalls in the middle of a body are retried ------------------------------------------
@pytest.mark.parametrize(
    ("kind", "params"), [("drop_body", {}), ("stall_body", {"seconds": 3})], ids=["drop", "stall"]
)
def test_a_body_cut_short_is_retried_with_the_same_request_id(make_stack, kind, params):
    stack, snapshots = make_stack(
        customers=300,
        env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100", "PARTNER_CENTER_TIMEOUT_SECONDS": "1"},
    )
    stack.partner_center.inject(kind, at=2, times=2, **params)

    run_timer()

    document = assert_complete(stack, snapshots)
    requests = stack.partner_center.customer_requests
    assert len(requests) == 5
    assert requests[1].request_id == requests[2].request_id == requests[3].request_id
    assert document["source"]["retries"] == 2


def test_a_body_cut_short_every_time_fails_after_the_configured_retries(make_stack, caplog):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    stack.partner_center.inject("drop_body", at=2, times=50)

    with pytest.raises(Exception, match="after 6 retries"):
        run_timer()

    assert len(stack.partner_center.customer_requests) == 1 + 7  # page 1, then page 2 tried 1 + 6 times
    assert_untouched(snapshots, latest_before, names_before)


# -- 3. page bodies are bounded -------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_page_larger_than_the_limit_fails_the_run(make_stack, caplog, monkeypatch, chunked):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    monkeypatch.setenv("PARTNER_CENTER_MAX_PAGE_BYTES", str(1024 * 1024))
    stack.partner_center.inject("oversized", at=2, bytes=6 * 1024 * 1024, chunked=chunked)

    with pytest.raises(Exception, match="PARTNER_CENTER_MAX_PAGE_BYTES"):
        run_timer()

    assert "page 2" in failed_message(caplog)
    assert len(stack.partner_center.customer_requests) == 2  # a page too large is not asked for again
    assert_untouched(snapshots, latest_before, names_before)


def test_max_page_bytes_default_is_well_above_a_full_page():
    from shared.settings import Settings

    settings = Settings.from_env({"KEY_VAULT_URL": "https://v.vault.azure.net", "AzureWebJobsStorage": "x"})
    assert settings.max_page_bytes >= 16 * 1024 * 1024  # a real 500-customer page is about 1 MB


# -- 4. the deadline and the timeout hold while a body is read ------------------------------------------
def test_a_trickling_body_is_cut_by_the_timeout_and_the_deadline(make_stack, caplog, monkeypatch):
    stack, snapshots = make_stack(customers=30, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "10"})
    run_timer()
    latest_before, names_before = snapshots.raw("latest.json")[0], snapshots.names()
    next_second()
    stack.partner_center.reset()
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PARTNER_CENTER_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "4")
    # About 6 kB a page at one byte every 1.5 ms: each answer takes ~9 s, one byte never waits 1 s.
    stack.partner_center.inject("trickle", at=2, times=50, interval=0.0015)
    started = time.monotonic()

    with pytest.raises(Exception, match="SNAPSHOT_RUN_DEADLINE_SECONDS"):
        run_timer()

    assert time.monotonic() - started < 4 + 3  # the deadline, plus the time a failing run takes to report
    assert "page 2" in failed_message(caplog)
    requests = stack.partner_center.customer_requests
    assert len(requests) >= 3, "a read cut by the 1 s timeout is retried"
    assert len({r.request_id for r in requests[1:]}) == 1
    assert_untouched(snapshots, latest_before, names_before)


def test_trickling_headers_are_cut_by_the_timeout_and_retried(make_stack):
    stack, snapshots = make_stack(
        customers=300,
        env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100", "PARTNER_CENTER_TIMEOUT_SECONDS": "1"},
    )
    # About 90 bytes of status line and headers at one byte every 30 ms: 2.7 s, no byte waits 1 s.
    stack.partner_center.inject("trickle_headers", at=2, times=2, interval=0.03)

    run_timer()

    document = assert_complete(stack, snapshots)
    requests = stack.partner_center.customer_requests
    assert requests[1].request_id == requests[2].request_id == requests[3].request_id
    assert document["source"]["retries"] == 2


def test_a_retried_error_with_a_trickling_body_is_not_waited_out(make_stack):
    stack, snapshots = make_stack(
        customers=300,
        env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100", "PARTNER_CENTER_TIMEOUT_SECONDS": "1"},
    )
    # Two 503s whose 2 kB bodies take 20 s each to arrive: the retry does not wait for them.
    stack.partner_center.inject("slow_error", at=2, times=2, bytes=2000, interval=0.01)
    started = time.monotonic()

    run_timer()

    assert time.monotonic() - started < 10
    document = assert_complete(stack, snapshots)
    assert document["source"]["retries"] == 2


def test_no_retry_wait_runs_past_the_deadline(make_stack, caplog, monkeypatch):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "3")
    stack.partner_center.inject("throttle", at=2, retry_after=30)
    started = time.monotonic()

    with pytest.raises(Exception, match="SNAPSHOT_RUN_DEADLINE_SECONDS"):
        run_timer()

    assert time.monotonic() - started < 10  # not the 30 s Retry-After asked for (capped at 120)
    assert_untouched(snapshots, latest_before, names_before)


def test_the_last_error_answer_is_read_within_the_timeout(make_stack, caplog, monkeypatch):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    monkeypatch.setenv("PARTNER_CENTER_MAX_RETRIES", "1")
    monkeypatch.setenv("PARTNER_CENTER_TIMEOUT_SECONDS", "1")
    stack.partner_center.inject("slow_error", at=2, times=5, bytes=2000, interval=0.01)  # 20 s each
    started = time.monotonic()

    with pytest.raises(Exception, match="HTTP 503"):
        run_timer()

    assert time.monotonic() - started < 10
    assert_untouched(snapshots, latest_before, names_before)


# -- 5. odd Retry-After values ----------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", ["-5", "1.5", "soon", "date"])
def test_odd_retry_after_values_fall_back_to_the_backoff(make_stack, retry_after):
    stack, snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    if retry_after == "date":
        retry_after = email.utils.formatdate(time.time() + 1, usegmt=True)
    stack.partner_center.inject("throttle", at=2, times=2, retry_after=retry_after)

    run_timer()

    document = assert_complete(stack, snapshots)
    assert document["source"]["retries"] == 2


@pytest.mark.parametrize("retry_after", ["30", "soon", "-5", "nan"])
def test_key_vault_retry_after_is_capped_and_odd_values_are_survived(make_stack, retry_after):
    stack, snapshots = make_stack(customers=50, env_overrides={"PARTNER_CENTER_MAX_RETRY_AFTER_SECONDS": "1"})
    stack.key_vault.throttled_get["partner-center-client-secret"] = (1, retry_after)
    started = time.monotonic()

    run_timer()

    assert time.monotonic() - started < 15, "Key Vault's Retry-After was not capped"
    assert_complete(stack, snapshots)
    assert stack.key_vault.throttled_get["partner-center-client-secret"][0] == 0


# -- 6. redirects are not followed ------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(make_stack, caplog, status):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    with PartnerCenter(None, stack.entra, customers=make_customers(3, seed=5)) as other:  # plain http
        location = f"{other.url}/v1/customers?size=100"
        stack.partner_center.inject("redirect", at=2, status=status, location=location)

        with pytest.raises(Exception, match=f"HTTP {status}"):
            run_timer()

        assert other.requests == [], "a request left the configured Partner Center origin"
    assert "redirect" in failed_message(caplog)
    assert_untouched(snapshots, latest_before, names_before)


# -- 7. only what the API can serve is published ----------------------------------------------------------
def _odd(kind: str) -> dict:
    customer = make_customers(1, seed=31)[0]
    customer["id"] = "odd-customer-1"
    if kind == "nan":
        customer["score"] = float("nan")
    elif kind == "infinity":
        customer["companyProfile"]["size"] = float("-inf")
    elif kind == "profile-not-object":
        customer["companyProfile"] = "Contoso"
    elif kind == "domain-number":
        customer["companyProfile"]["domain"] = 42
    elif kind == "name-list":
        customer["companyProfile"]["companyName"] = ["Contoso"]
    elif kind == "tenant-object":
        customer["companyProfile"]["tenantId"] = {"id": "x"}
    elif kind == "relationship-number":
        customer["relationshipToPartner"] = 1
    elif kind == "deep":
        nested: dict = {}
        for _ in range(200):
            nested = {"a": nested}
        customer["deep"] = nested
    elif kind == "empty-id":
        customer["id"] = ""
    return customer


ODD = [
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("profile-not-object", "companyProfile"),
    ("domain-number", "companyProfile.domain"),
    ("name-list", "companyProfile.companyName"),
    ("tenant-object", "companyProfile.tenantId"),
    ("relationship-number", "relationshipToPartner"),
    ("deep", "nested"),
    ("empty-id", "id"),
]


def test_nan_outside_the_customers_fails_the_run(make_stack, caplog):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    stack.partner_center.inject("malformed", at=2, variant="nan_total")

    with pytest.raises(Exception, match="page 2 is not storable: NaN"):
        run_timer()

    assert_untouched(snapshots, latest_before, names_before)


@pytest.mark.parametrize(("kind", "rule"), ODD, ids=[k for k, _ in ODD])
def test_a_customer_the_api_cannot_serve_fails_the_run_by_name(make_stack, caplog, kind, rule):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    customers = stack.partner_center.customers
    stack.partner_center.customers = [*customers[:150], _odd(kind), *customers[150:]]

    with pytest.raises(Exception, match="not storable") as failure:
        run_timer()

    message = str(failure.value)
    assert rule in message and "page 2" in message
    if kind != "empty-id":
        assert "odd-customer-1" in message
    assert_untouched(snapshots, latest_before, names_before)


def test_customers_with_absent_null_and_extra_fields_are_stored(make_stack):
    customers = make_customers(5, seed=8)
    customers[0]["companyProfile"] = None
    del customers[1]["companyProfile"]
    customers[2]["companyProfile"]["domain"] = None
    customers[3]["relationshipToPartner"] = None
    customers[4]["custom"] = {"list": [1, 2.5, True, None], "text": "ok"}
    stack, snapshots = make_stack(customers=customers)

    run_timer()

    assert_complete(stack, snapshots)


def test_the_storable_rule_parses_strictly():
    from shared.customer_rule import NotStorable, check_customer, check_storable

    assert check_storable(b'{"id": "a", "companyProfile": {"domain": "a.com"}}')["id"] == "a"
    for text in (
        b'{"id": "a", "x": NaN}',
        b"[NaN]",
        b'{"id": 1}',
        b"[]",
        b'{"id": "a"',
        b"\xff",
        "{" * 40 + "}" * 40,
        '{"id": "a", "relationshipToPartner": []}',
    ):
        with pytest.raises(NotStorable):
            check_storable(text)
    brackets = '{"id": "a", "note": "' + '{[\\"' * 40 + '"}'  # brackets inside a string are not nesting
    assert check_storable(brackets)["id"] == "a"
    deep: dict = {"id": "a"}
    for _ in range(40):
        deep = {"id": "a", "inner": [deep]}
    with pytest.raises(NotStorable, match="nested deeper"):
        check_customer(deep)  # no text: the value is walked


def test_the_scrubber_forgets_the_oldest_values_first():
    from shared.redact import MASK, remember, scrub

    remember("first-secret-value-0001")
    assert scrub("x first-secret-value-0001 y") == f"x {MASK} y"
    remember(*(f"later-secret-value-{n:04d}" for n in range(600)))
    assert scrub("first-secret-value-0001") == "first-secret-value-0001"  # bounded memory
    assert scrub("later-secret-value-0599") == MASK


# -- 8. empty pages do not loop ---------------------------------------------------------------------------
def test_endless_empty_pages_fail_the_run_quickly(make_stack, caplog, monkeypatch):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(make_stack, caplog)
    stack.partner_center.empty_pages_forever = True
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "30")

    with pytest.raises(Exception, match="pages in a row"):
        run_timer()

    assert len(stack.partner_center.customer_requests) <= 12
    assert_untouched(snapshots, latest_before, names_before)


# -- 9. secrets echoed by a service never reach logs or exceptions ----------------------------------------
def _assert_nothing_leaked(stack, caplog, failure, held: list[str]) -> None:
    logged = "\n".join(r.getMessage() for r in caplog.records) + "\n" + str(failure.value)
    secrets = [s for s in {*stack.secret_values, *held} if s and len(s) >= 16]
    assert secrets
    for secret in secrets:
        # no secret, and no part of one long enough to matter (a prefix surviving truncation included)
        pieces = {secret[i : i + 12] for i in range(0, len(secret) - 12, 6)}
        assert not [p for p in pieces if p in logged], "a secret (or part of one) reached the logs"


@pytest.mark.parametrize("app_user", [False, True], ids=["app-only", "app+user"])
def test_a_token_endpoint_echoing_the_request_leaks_nothing(make_stack, caplog, app_user):
    stack, _snapshots = make_stack(customers=10, app_user=app_user)
    stack.entra.echo_request_in_errors = True
    held = [stack.key_vault.get("partner-center-client-secret")]
    if app_user:
        held.append(stack.key_vault.get("partner-center-refresh-token"))
        stack.entra.revoke_refresh_token(held[-1])
    else:
        wrong = stack.client_secret[:-4] + "Zz9~"
        stack.key_vault.set("partner-center-client-secret", wrong)
        held.append(wrong)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(Exception, match="Entra ID") as failure:
        run_timer()

    _assert_nothing_leaked(stack, caplog, failure, held)
    assert "Request:" in failed_message(caplog)  # the echo itself is kept, only the secrets are scrubbed


def test_partner_center_echoing_the_access_token_leaks_nothing(make_stack, caplog):
    stack, _snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.inject("status", at=2, status=400, code="400", description="Bad request", echo=True)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(Exception, match="HTTP 400") as failure:
        run_timer()

    _assert_nothing_leaked(stack, caplog, failure, [])
    assert "Authorization: Bearer" in str(failure.value)


# -- 10. failures name the step ---------------------------------------------------------------------------
STORAGE_STEPS = [
    ("GET", r"restype=container", 403, "AuthorizationFailure", 0, "opening container"),
    ("HEAD", r"customers-\d{8}T\d{6}Z\.json$", 500, "InternalError", 0, "checking snapshot"),
    ("PUT", r"/locks/run\.lock\?comp=lease", 503, "ServerBusy", 0, "taking the run lock"),
    ("GET", r"/latest\.json", 500, "InternalError", 0, "reading latest.json"),
    ("PUT", r"\.json\?.*blockid=", 403, "AuthorizationPermissionMismatch", 0, "storing page"),
    ("PUT", r"\.json\?comp=blocklist", 503, "ServerBusy", 0, "committing snapshot"),
    ("PUT", r"\.index\?.*blockid=", 403, "AuthorizationPermissionMismatch", 0, "storing index"),
    ("PUT", r"\.index\?comp=blocklist", 503, "ServerBusy", 0, "committing index"),
    ("PUT", r"/locks/run\.lock\?comp=lease", 500, "InternalError", 1, "renewing the run lock"),
    ("PUT", r"/latest\.json", 403, "AuthorizationPermissionMismatch", 0, "publishing latest.json"),
]


@pytest.mark.parametrize(
    ("method", "pattern", "status", "code", "skip", "step"), STORAGE_STEPS, ids=[s[-1] for s in STORAGE_STEPS]
)
def test_storage_failures_name_the_step(
    make_stack, caplog, monkeypatch, method, pattern, status, code, skip, step
):
    import shared.snapshots.index_builder as index_builder
    import shared.snapshots.writer as writer

    monkeypatch.setattr(writer, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(index_builder, "BLOCK_BYTES", 2048)  # index blocks are staged while paging, too
    stack, snapshots, latest_before, _names = fail_after_good_snapshot(make_stack, caplog)
    stack.partner_center.customers = make_customers(1500, seed=3)  # enough for zlib to emit while paging
    proxy = storage_proxy(stack, monkeypatch)
    try:
        proxy.fail(method, pattern, status=status, code=code, skip=skip, times=100)

        with pytest.raises(Exception, match=step) as failure:
            run_timer()
    finally:
        proxy.stop()

    message = str(failure.value)
    assert f"HTTP {status}" in message
    assert code in message or method == "HEAD"  # a HEAD answer has no body, so no error code
    assert "Blob Storage" in message
    assert "\n" not in message  # one line, not the SDK's multi-line dump
    assert step in failed_message(caplog)
    assert snapshots.raw("latest.json")[0] == latest_before


@pytest.mark.parametrize(
    ("code", "description"),
    [("900421", "Multi-factor authentication is required"), ("10001", "MFA required")],
    ids=["900421", "10001"],
)
def test_partner_center_mfa_enforcement_gets_an_operator_message(make_stack, caplog, code, description):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(
        make_stack, caplog, app_user=True
    )
    stack.partner_center.inject("status", at=1, times=5, status=401, code=code, description=description)

    with pytest.raises(Exception, match="MFA") as failure:
        run_timer()

    message = str(failure.value)
    assert "partner-center-refresh-token" in message and "replace" in message
    assert stack.key_vault.get("partner-center-refresh-token") not in message
    assert_untouched(snapshots, latest_before, names_before)


def test_an_expired_refresh_token_gets_an_operator_message(make_stack, caplog):
    stack, snapshots, latest_before, names_before = fail_after_good_snapshot(
        make_stack, caplog, app_user=True
    )
    token = stack.key_vault.get("partner-center-refresh-token")
    stack.entra.revoke_refresh_token(token, reason="expired")

    with pytest.raises(Exception, match="AADSTS700082") as failure:
        run_timer()

    message = str(failure.value)
    assert "expired" in message and "partner-center-refresh-token" in message and "replace" in message
    assert token not in message
    assert message.startswith("token:")
    assert_untouched(snapshots, latest_before, names_before)


@pytest.mark.parametrize(
    ("problem", "detail"),
    [("forbidden", "HTTP 403"), ("empty", "is empty"), ("unreachable", "no answer from Key Vault")],
)
def test_key_vault_failures_name_the_step(make_stack, caplog, monkeypatch, problem, detail):
    stack, _snapshots = make_stack(customers=10)
    if problem == "forbidden":
        stack.key_vault.forbidden_get.add("partner-center-client-secret")
    elif problem == "empty":
        stack.key_vault.set("partner-center-client-secret", "")
    else:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.setenv("KEY_VAULT_URL", f"https://127.0.0.1:{port}/")
    caplog.set_level(logging.INFO)

    with pytest.raises(Exception, match=r"^Key Vault: ") as failure:
        run_timer()

    assert detail in str(failure.value)
    assert "partner-center-" in str(failure.value)
