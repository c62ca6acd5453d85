"""The nightly job end to end: function_app's timer function, real SDKs, stand-ins over HTTPS, Azurite."""

from __future__ import annotations

import re
import socket
import time

import pytest
from azure.core.exceptions import ResourceNotFoundError

from devstack.population import make_customers
from shared import events
from shared.errors import PartnerCenterError
from shared.jsonenc import compact as dumps
from tests.support.functions import registered, run_timer
from tests.support.job import assert_complete, last_summary, next_second, publish_good_snapshot


@pytest.mark.parametrize(
    ("customers", "page_size"),
    [(0, 500), (1, 1), (1000, 500), (1234, 100), (257, 7)],
    ids=["empty", "one", "exact-multiple", "many-pages", "odd-size"],
)
def test_every_customer_exactly_once(make_stack, customers, page_size):
    stack, snapshots = make_stack(
        customers=customers, env_overrides={"PARTNER_CENTER_PAGE_SIZE": str(page_size)}
    )

    run_timer()

    document = assert_complete(stack, snapshots)
    pages = max(1, -(-customers // page_size))
    assert document["source"]["pagesFetched"] == pages
    assert document["source"]["pageSize"] == page_size
    assert document["source"]["duplicatesDropped"] == 0
    assert document["source"]["apiUrl"] == stack.env["PARTNER_CENTER_API_URL"]
    assert len(snapshots.snapshot_names()) == 1


def test_non_ascii_customers_are_stored_as_received(make_stack):
    stack, snapshots = make_stack(customers=600)
    names = [c["companyProfile"]["companyName"] for c in stack.partner_center.customers]
    assert any(not n.isascii() for n in names), "the population should exercise non-ASCII names"

    run_timer()

    assert_complete(stack, snapshots)


@pytest.mark.parametrize("link_form", ["v1", "root", "relative", "absolute", "rotate", "token_only"])
def test_every_link_form_is_followed(make_stack, link_form):
    stack, snapshots = make_stack(customers=450, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "50"})
    stack.partner_center.link_form = link_form

    run_timer()

    assert_complete(stack, snapshots)
    # every request, not only those the stand-in recognised as customer requests
    assert not [r.target for r in stack.partner_center.requests if "//" in r.target or r.index is None]


def test_byte_order_mark_and_400_2000_ending(make_stack):
    stack, snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.bom = True
    stack.partner_center.end_with_400_2000 = True

    run_timer()

    assert_complete(stack, snapshots)
    assert [r.status for r in stack.partner_center.customer_requests][-1] == 400


def test_duplicates_across_pages_are_dropped_and_counted(make_stack):
    stack, snapshots = make_stack(customers=500, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.duplicates = True

    run_timer()

    document = assert_complete(stack, snapshots)
    # every page after the first repeats the previous page's last customer
    assert document["source"]["duplicatesDropped"] == document["source"]["pagesFetched"] - 1 > 0


def test_request_ids_are_fresh_per_page_and_kept_on_retries(make_stack):
    stack, snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.inject("status", at=2, times=2, status=503)

    run_timer()

    document = assert_complete(stack, snapshots)
    requests = stack.partner_center.customer_requests
    request_ids = [r.request_id for r in requests]
    assert len(requests) == 5  # 3 pages, page 2 tried three times
    assert request_ids[1] == request_ids[2] == request_ids[3]
    assert len({request_ids[0], request_ids[1], request_ids[4]}) == 3
    assert len({r.correlation_id for r in requests}) == 1
    assert document["source"]["correlationId"] == requests[0].correlation_id
    assert document["source"]["retries"] == 2


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("throttle", {"retry_after": 1}),
        ("throttle", {"retry_after": None}),
        ("status", {"status": 500}),
        ("status", {"status": 502}),
        ("status", {"status": 504}),
        ("drop", {}),
        ("slow", {"seconds": 3}),
    ],
    ids=["429-retry-after", "429-no-retry-after", "500", "502", "504", "dropped-connection", "timeout"],
)
def test_transient_faults_are_survived(make_stack, kind, params):
    stack, snapshots = make_stack(
        customers=400,
        env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100", "PARTNER_CENTER_TIMEOUT_SECONDS": "1"},
    )
    stack.partner_center.inject(kind, at=2, times=2, **params)
    started = time.monotonic()

    run_timer()

    assert_complete(stack, snapshots)
    if params.get("retry_after"):
        assert time.monotonic() - started >= 2 * params["retry_after"], "Retry-After was not honoured"


def test_expired_token_mid_run_gets_one_new_token(make_stack):
    stack, snapshots = make_stack(customers=400, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.inject("expired_token", at=3)

    run_timer()

    document = assert_complete(stack, snapshots)
    assert document["source"]["tokenRenewals"] == 1
    tokens = {r.token_uti for r in stack.partner_center.customer_requests}
    assert len(tokens) == 2


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("status", {"status": 503, "times": 20}, "HTTP 503"),
        ("status", {"status": 404, "code": "600", "description": "Resource not found"}, "HTTP 404, code 600"),
        ("status", {"status": 403, "code": "3000", "description": "Partner not authorized"}, "code 3000"),
        ("throttle", {"retry_after": 0, "times": 20}, "HTTP 429"),
        ("drop", {"times": 20}, "no answer from Partner Center"),
        ("expired_token", {"times": 5}, "HTTP 401"),
        ("malformed", {}, "not"),
    ],
    ids=["5xx-forever", "404-page-2", "403", "429-forever", "drops-forever", "401-twice", "malformed-page"],
)
def test_failed_run_leaves_latest_and_snapshots_untouched(make_stack, kind, params, message):
    stack, snapshots, latest_before = publish_good_snapshot(make_stack)
    names_before = snapshots.names()
    times = params.pop("times", 1)
    stack.partner_center.reset()
    stack.partner_center.inject(kind, at=2, times=times, **params)

    with pytest.raises(Exception, match=message):
        run_timer()

    assert snapshots.raw("latest.json")[0] == latest_before
    assert snapshots.names() == names_before


def test_rerun_in_the_same_second_never_overwrites(make_stack):
    from datetime import UTC, datetime

    from shared.job import run_snapshot

    stack, snapshots = make_stack(customers=120)
    now = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)
    first = run_snapshot(now=now)
    stored = snapshots.raw(first["snapshot"])[0]
    latest = snapshots.raw("latest.json")[0]
    stack.partner_center.customers = make_customers(50, seed=99)

    from shared.errors import SnapshotExistsError

    with pytest.raises(SnapshotExistsError, match="never overwritten"):
        run_snapshot(now=now)

    assert snapshots.raw(first["snapshot"])[0] == stored
    assert snapshots.raw("latest.json")[0] == latest


def test_an_older_replay_does_not_move_latest_back(make_stack):
    from datetime import UTC, datetime

    from shared.job import run_snapshot

    _stack, snapshots = make_stack(customers=120)
    newer = run_snapshot(now=datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC))
    older = run_snapshot(now=datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC))

    assert older["published"] is False
    assert snapshots.latest()["snapshot"] == newer["snapshot"]
    assert len(snapshots.snapshot_names()) == 2


def test_summary_counts_customers_added_and_removed(make_stack, caplog):
    stack, snapshots = make_stack(customers=300)
    run_timer()
    before = stack.partner_center.customers
    stack.partner_center.customers = before[3:] + make_customers(5, seed=4242)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    summary = last_summary(caplog)
    assert summary["added"] == 5
    assert summary["removed"] == 3
    assert_complete(stack, snapshots)


def test_a_first_run_summary_counts_what_latest_json_counts(make_stack, caplog):
    """A baseline compares with nothing: 0 added, removed and changed in the summary as in latest.json
    (null stays for a comparison that could not be made, as in latest.json)."""
    _stack, snapshots = make_stack(customers=30)
    caplog.set_level("INFO")

    run_timer()

    summary, latest = last_summary(caplog), snapshots.latest()
    assert summary["previousSnapshot"] is None
    assert latest["changes"]["counts"] == {"added": 0, "removed": 0, "changed": 0}
    assert {k: summary[k] for k in ("added", "removed", "changed")} == latest["changes"]["counts"]


def test_added_and_removed_are_counted_whatever_the_order(make_stack, caplog):
    stack, _snapshots = make_stack(customers=900, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    run_timer()
    before = stack.partner_center.customers
    # The next night lists them the other way round: the previous snapshot's ids wait for the end.
    stack.partner_center.customers = list(reversed(before[10:])) + make_customers(7, seed=99)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    summary = last_summary(caplog)
    assert summary["added"] == 7
    assert summary["removed"] == 10


@pytest.mark.parametrize("link_form", ["v1", "rotate", "token_only"])
def test_the_next_page_is_requested_once_while_this_one_is_parsed(make_stack, link_form):
    stack, snapshots = make_stack(customers=1000, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    stack.partner_center.link_form = link_form

    run_timer()

    assert_complete(stack, snapshots)
    assert [r.page for r in stack.partner_center.customer_requests] == list(range(10))


def test_a_wrong_guess_of_the_next_page_costs_a_request_not_a_page(make_stack, monkeypatch):
    from shared.partner_center import customers as pc
    from shared.partner_center.fetch import PageRequest

    stack, snapshots = make_stack(customers=450, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    guess = pc.CustomerPager._guess_next

    def wrong(self, body, number):
        right = guess(self, body, number)
        return None if right is None else PageRequest(right.url, {"MS-ContinuationToken": "not-the-token"})

    monkeypatch.setattr(pc.CustomerPager, "_guess_next", wrong)

    run_timer()

    assert_complete(stack, snapshots)
    statuses = [r.status for r in stack.partner_center.customer_requests]
    assert statuses.count(200) == 5  # each wrong guess answered, then dropped
    assert statuses.count(400) == 4


def test_one_log_line_per_page_and_a_summary(make_stack, caplog):
    _stack, _snapshots = make_stack(customers=250, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    caplog.set_level("INFO")

    run_timer(past_due=True)

    messages = [r.getMessage() for r in caplog.records]
    pages = [m for m in messages if m.startswith(events.SNAPSHOT_PAGE + " ")]
    assert len(pages) == 3
    assert '"page": 3' in pages[-1]
    assert '"total": 250' in pages[-1]
    assert sum(m.startswith(events.SNAPSHOT_SUMMARY + " ") for m in messages) == 1
    assert any(m.startswith(events.SNAPSHOT_PAST_DUE + " ") for m in messages)


def test_secrets_and_tokens_never_reach_the_logs(make_stack, caplog):
    stack, _snapshots = make_stack(
        customers=300, app_user=True, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"}
    )
    stack.partner_center.inject("expired_token", at=2)
    stack.partner_center.inject("throttle", at=4, retry_after=0)
    caplog.set_level("DEBUG")

    run_timer()
    # and a failing run, whose error travels further
    stack.key_vault.forbidden_get.add("partner-center-client-secret")
    with pytest.raises(Exception, match="partner-center-client-secret"):
        run_timer()

    logged = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert events.SNAPSHOT_SUMMARY in logged
    leaked = [s for s in stack.secret_values if s and s in logged]
    assert not leaked, f"{len(leaked)} secret values were logged"


def test_app_user_refresh_token_is_written_back_to_key_vault(make_stack):
    stack, snapshots = make_stack(customers=100, app_user=True)
    original = stack.key_vault.get("partner-center-refresh-token")

    run_timer()

    assert_complete(stack, snapshots)
    stored = stack.key_vault.get("partner-center-refresh-token")
    assert stored != original
    assert stored == stack.entra.current_refresh_token


def test_credentials_from_environment_without_key_vault(make_stack):
    stack, snapshots = make_stack(customers=150, key_vault=False)

    run_timer()

    assert_complete(stack, snapshots)


def test_user_assigned_identity_client_id_is_used(make_stack):
    stack, snapshots = make_stack(customers=50, mi_client_id="11111111-2222-3333-4444-555555555555")

    run_timer()

    assert_complete(stack, snapshots)
    assert {r.client_id for r in stack.identity.requests} == {"11111111-2222-3333-4444-555555555555"}


def test_storage_through_the_host_connection_string(make_stack, monkeypatch):
    stack, snapshots = make_stack(customers=80)
    monkeypatch.delenv("SNAPSHOT_STORAGE_ACCOUNT_URL")
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)

    run_timer()

    assert_complete(stack, snapshots)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PARTNER_CENTER_PAGE_SIZE", "501", "PARTNER_CENTER_PAGE_SIZE must be a whole number from 1 to 500"),
        ("PARTNER_CENTER_PAGE_SIZE", "0", "PARTNER_CENTER_PAGE_SIZE"),
        ("PARTNER_CENTER_PAGE_SIZE", "lots", "PARTNER_CENTER_PAGE_SIZE"),
        ("KEY_VAULT_URL", "http://vault.example", "KEY_VAULT_URL must be an https:// URL"),
        ("PARTNER_CENTER_API_URL", "not a url", "PARTNER_CENTER_API_URL"),
        ("SNAPSHOT_CONTAINER", "Bad_Name", "SNAPSHOT_CONTAINER must be a valid container name"),
        ("PARTNER_CENTER_MAX_RETRIES", "-1", "PARTNER_CENTER_MAX_RETRIES"),
        ("SNAPSHOT_RUN_DEADLINE_SECONDS", "nan", "SNAPSHOT_RUN_DEADLINE_SECONDS"),
    ],
)
def test_bad_settings_fail_fast_with_a_clear_message(make_stack, monkeypatch, name, value, message):
    stack, snapshots = make_stack(customers=10)
    monkeypatch.setenv(name, value)

    from shared.errors import SettingsError

    with pytest.raises(SettingsError, match=re.escape(message)):
        run_timer()

    assert stack.partner_center.customer_requests == []
    assert snapshots.names() == []


def test_missing_storage_setting_is_named(make_stack, monkeypatch):
    make_stack(customers=10)
    monkeypatch.delenv("SNAPSHOT_STORAGE_ACCOUNT_URL")

    from shared.errors import SettingsError

    with pytest.raises(SettingsError, match="SNAPSHOT_STORAGE_ACCOUNT_URL"):
        run_timer()


@pytest.mark.parametrize("problem", ["missing", "forbidden"])
def test_key_vault_problems_name_the_secret_and_vault(make_stack, problem):
    stack, snapshots = make_stack(customers=10)
    if problem == "missing":
        stack.key_vault.delete("partner-center-client-id")
        expected = "not found"
    else:
        stack.key_vault.forbidden_get.add("partner-center-client-id")
        expected = "HTTP 403"

    with pytest.raises(Exception, match=expected) as failure:
        run_timer()

    assert "partner-center-client-id" in str(failure.value)
    assert stack.key_vault.url.rstrip("/") in str(failure.value)
    assert snapshots.latest() is None


def test_timer_binding_matches_the_product_settings():
    function = registered()["snapshot_customers"]
    binding = function.get_bindings_dict()["bindings"][0]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%SNAPSHOT_SCHEDULE%"
    assert binding["runOnStartup"] is False
    assert binding["useMonitor"] is True


def test_a_snapshot_of_many_blocks_is_committed_whole(make_stack, monkeypatch):
    import shared.snapshots.writer as writer

    monkeypatch.setattr(writer, "BLOCK_BYTES", 2048)  # many small blocks instead of a few 1 MiB ones
    stack, snapshots = make_stack(customers=1500, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})

    run_timer()

    assert_complete(stack, snapshots)
    blob = stack.blob_service_client().get_blob_client(snapshots.container, snapshots.latest()["snapshot"])
    assert len(blob.get_block_list("committed")[0]) > 3  # zlib emits its output in ~20 kB bursts


def test_run_deadline_fails_the_run_cleanly(make_stack, monkeypatch, caplog):
    stack, snapshots, latest_before = publish_good_snapshot(make_stack)
    stack.partner_center.reset()
    stack.partner_center.inject("slow", at=2, seconds=1.5)
    monkeypatch.setenv("SNAPSHOT_RUN_DEADLINE_SECONDS", "1")

    with pytest.raises(Exception, match="deadline passed before page 3"):
        run_timer()

    assert snapshots.raw("latest.json")[0] == latest_before
    # The line the run-failed alert watches (ERROR and above): one per failed run.
    failed = [r for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_FAILED + " ")]
    assert [r.levelname for r in failed] == ["ERROR"]
    assert '"error": "DeadlineExceeded"' in failed[0].getMessage()


def test_a_refresh_token_that_cannot_be_saved_is_reported_not_fatal(make_stack, caplog):
    stack, snapshots = make_stack(customers=100, app_user=True)
    stack.key_vault.forbidden_set.add("partner-center-refresh-token")
    caplog.set_level("INFO")

    run_timer()

    assert_complete(stack, snapshots)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(m.startswith(events.REFRESH_TOKEN_NOT_SAVED) and "HTTP 403" in m for m in errors)
    summary = last_summary(caplog)
    assert summary["refreshTokensSaved"] == 0


# -- refusing what cannot be trusted ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("html", "page 2 is not valid JSON"),
        ("truncated", "page 2 is not valid JSON"),
        ("not_object", "page 2 is not valid JSON"),
        ("items_not_list", "page 2 is not the documented shape: no `items` list"),
        ("links_not_object", "page 2 is not the documented shape: `links` is not an object"),
        ("next_without_uri", "page 2 is not the documented shape: `links.next` has no uri"),
        ("next_not_get", "page 2: `links.next` asks for DELETE, not GET"),
        ("next_bad_header", "page 2 is not the documented shape: bad `links.next` header"),
    ],
    ids=[
        "html-page",
        "cut-json",
        "json-array",
        "items-not-a-list",
        "links-not-an-object",
        "next-without-uri",
        "next-not-get",
        "next-bad-header",
    ],
)
def test_a_page_that_cannot_be_trusted_fails_the_run(make_stack, variant, message):
    stack, snapshots, latest_before = publish_good_snapshot(make_stack)
    names_before = snapshots.names()
    stack.partner_center.reset()
    stack.partner_center.inject("malformed", at=2, variant=variant)

    with pytest.raises(PartnerCenterError, match=re.escape(message)):
        run_timer()

    assert snapshots.raw("latest.json")[0] == latest_before
    assert snapshots.names() == names_before


def test_entra_id_refusing_the_secret_fails_the_run_with_its_code(make_stack):
    stack, snapshots = make_stack(customers=10)
    stack.key_vault.set("partner-center-client-secret", "not-the-secret")

    with pytest.raises(PartnerCenterError, match="Entra ID refused the app-only token request") as failure:
        run_timer()

    assert failure.value.code == "invalid_client"
    assert "not-the-secret" not in str(failure.value)
    assert stack.partner_center.customer_requests == []
    assert snapshots.latest() is None


def test_entra_id_out_of_reach_fails_the_run(make_stack, monkeypatch):
    stack, snapshots = make_stack(customers=10)
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("PARTNER_CENTER_AUTHORITY_HOST", f"https://127.0.0.1:{port}")

    with pytest.raises(PartnerCenterError, match="Entra ID token request failed: ConnectionError"):
        run_timer()

    assert stack.partner_center.customer_requests == []
    assert snapshots.latest() is None


def test_an_unreadable_previous_snapshot_costs_the_diff_not_the_run(make_stack, caplog):
    stack, snapshots = make_stack(customers=120)
    first = run_timer_summary()
    container = stack.blob_service_client().get_container_client(snapshots.container)
    # The previous snapshot is no longer in the one-customer-per-line layout (e.g. rewritten by hand).
    container.upload_blob(first["snapshot"], b'{"customers": []}', overwrite=True)
    caplog.set_level("INFO")
    next_second()

    run_timer()

    assert_complete(stack, snapshots)
    summary = last_summary(caplog)
    assert summary["previousSnapshot"] == first["snapshot"]
    assert summary["added"] is None
    assert summary["removed"] is None
    unavailable = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_DIFF_UNAVAILABLE)
    ]
    assert len(unavailable) == 1
    assert '"reason": "SnapshotFormatError"' in unavailable[0]


def run_timer_summary() -> dict:
    from shared.job import run_snapshot

    return run_snapshot()


def test_a_failing_writer_thread_fails_the_snapshot_and_commits_nothing(make_stack, monkeypatch):
    import shared.snapshots.writer as writer_module
    from shared.snapshots.writer import SnapshotWriter
    from shared.storage.blobs import Blobs

    monkeypatch.setattr(writer_module, "BLOCK_BYTES", 64)  # the worker stages as soon as zlib emits
    stack, _snapshots = make_stack(customers=0)
    service = stack.blob_service_client()
    # A container that does not exist: the worker thread's first stage_block fails.
    name = "snapshots/2026/11/23/customers-20261123T020000Z.json"
    blobs = Blobs(service.get_container_client("no-such-container"))
    writer = SnapshotWriter(blobs, name, "2026-11-23T02:00:00Z")
    page = [dumps(customer) for customer in make_customers(500, seed=5)]

    with pytest.raises(ResourceNotFoundError):  # the worker's error, raised on this thread by add()
        for _ in range(50):
            writer.add(page)

    assert isinstance(writer._error, ResourceNotFoundError)
    writer.abort()
    assert not writer._worker.is_alive()
    assert not service.get_container_client("no-such-container").exists()
