"""Change records and the completeness guard, end to end: the timer function, stand-ins, Azurite."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from devstack.population import make_customers
from shared import events
from shared.errors import SnapshotWithheldError, StorageError
from tests.support.api import call
from tests.support.changes import night_two
from tests.support.functions import http_get, run_timer
from tests.support.job import assert_complete, last_summary, next_second


def by_id(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: e["id"])


def record_of(snapshots, latest: dict) -> dict:
    name = latest["changes"]["name"]
    assert name == latest["snapshot"].replace("/customers-", "/changes-")
    return snapshots.record(name)


def test_the_first_snapshot_is_a_baseline(make_stack):
    _stack, snapshots = make_stack(customers=120)

    run_timer()

    latest = snapshots.latest()
    record = record_of(snapshots, latest)
    assert latest["changes"]["counts"] == {"added": 0, "removed": 0, "changed": 0}
    assert record == {
        "schemaVersion": 2,
        "snapshot": latest["snapshot"],
        "previousSnapshot": None,
        "generatedAt": latest["generatedAt"],
        "previousGeneratedAt": None,
        "counts": {"added": 0, "removed": 0, "changed": 0},
        "added": [],
        "removed": [],
        "changed": [],
    }
    _data, properties = snapshots.raw(latest["changes"]["name"])
    assert properties.content_settings.content_encoding == "gzip"
    assert properties.content_settings.content_type == "application/json"


@pytest.mark.parametrize("window", [None, 7], ids=["in-memory", "spilled-to-disk"])
def test_adds_removals_renames_domains_relationships_and_duplicates_exactly(
    make_stack, caplog, window, monkeypatch
):
    if window is not None:
        monkeypatch.setattr("shared.changes.record.WINDOW", window)
    stack, snapshots = make_stack(customers=400, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "50"})
    run_timer()
    first = snapshots.latest()
    after, expected = night_two(stack.partner_center.customers)
    stack.partner_center.customers = after
    stack.partner_center.duplicates = True  # every page repeats the last customer of the one before
    caplog.set_level("INFO")
    next_second()

    run_timer()

    latest = snapshots.latest()
    assert_complete(stack, snapshots, expected=after)
    record = record_of(snapshots, latest)
    assert record["previousSnapshot"] == first["snapshot"]
    assert record["previousGeneratedAt"] == first["generatedAt"]
    assert record["generatedAt"] == latest["generatedAt"]
    assert record["added"] == expected["added"]  # in this night's API order
    assert record["removed"] == expected["removed"]  # in the previous snapshot's order
    if window is None:
        assert record["changed"] == expected["changed"]  # in API order
    else:  # pairs met in memory first, then those joined on disk
        assert by_id(record["changed"]) == by_id(expected["changed"])
    assert record["counts"] == latest["changes"]["counts"] == {"added": 2, "removed": 2, "changed": 4}
    summary = last_summary(caplog)
    assert (summary["added"], summary["removed"], summary["changed"]) == (2, 2, 4)
    assert summary["changes"] == latest["changes"]["name"]


@pytest.mark.parametrize("window", [None, 5], ids=["in-memory", "spilled-to-disk"])
def test_a_new_order_changes_nothing(make_stack, window, monkeypatch):
    if window is not None:
        monkeypatch.setattr("shared.changes.record.WINDOW", window)
    stack, snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "40"})
    run_timer()
    before = stack.partner_center.customers
    after, expected = night_two(before)
    stack.partner_center.customers = list(reversed(after))
    next_second()

    run_timer()

    record = record_of(snapshots, snapshots.latest())
    assert record["counts"] == {"added": 2, "removed": 2, "changed": 4}
    assert record["added"] == list(reversed(expected["added"]))  # in this night's API order
    assert record["removed"] == expected["removed"]  # in the previous snapshot's order
    assert by_id(record["changed"]) == by_id(expected["changed"])


def test_a_formatting_difference_is_no_change(make_stack):
    stack, snapshots = make_stack(customers=50)
    run_timer()
    stack.partner_center.customers = [dict(reversed(list(c.items()))) for c in stack.partner_center.customers]
    next_second()

    run_timer()

    assert snapshots.latest()["changes"]["counts"] == {"added": 0, "removed": 0, "changed": 0}


def test_an_id_in_another_case_is_the_same_customer(make_stack):
    stack, snapshots = make_stack(customers=20)
    run_timer()
    customers = copy.deepcopy(stack.partner_center.customers)
    customers[5]["id"] = customers[5]["id"].upper()
    stack.partner_center.customers = customers
    next_second()

    run_timer()

    record = record_of(snapshots, snapshots.latest())
    assert record["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert list(record["changed"][0]["fields"]) == ["/id"]


def test_a_change_record_is_never_overwritten(make_stack):
    stack, snapshots = make_stack(customers=30)
    run_timer()
    first = snapshots.latest()
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    squatter = "snapshots/2030/01/02/changes-20300102T030405Z.json"
    container = stack.blob_service_client().get_container_client(snapshots.container)
    container.upload_blob(squatter, b"{}")
    from shared.job import run_snapshot

    with pytest.raises(StorageError, match=r"writing the change record .*BlobAlreadyExists"):
        run_snapshot(now=now)

    assert snapshots.raw(squatter)[0] == b"{}"
    assert snapshots.latest() == first


# -- the completeness guard ---------------------------------------------------------------------------
def test_a_large_drop_is_withheld_then_published_with_the_setting_raised(make_stack, caplog, monkeypatch):
    stack, snapshots = make_stack(customers=200)
    run_timer()
    first = snapshots.latest()
    stack.partner_center.customers = stack.partner_center.customers[:170]  # 15% fewer
    caplog.set_level("INFO")
    next_second()

    with pytest.raises(
        SnapshotWithheldError, match="170 customers where the latest published snapshot has 200"
    ):
        run_timer()

    assert snapshots.latest() == first
    withheld = [n for n in snapshots.snapshot_names() if n != first["snapshot"]]
    assert len(withheld) == 1
    assert snapshots.document(withheld[0])["customerCount"] == 170
    evidence = snapshots.record(withheld[0].replace("/customers-", "/changes-"))
    assert evidence["counts"] == {"added": 0, "removed": 30, "changed": 0}
    lines = [r for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_WITHHELD + " ")]
    assert [r.levelname for r in lines] == ["ERROR"]
    fields = json.loads(lines[0].getMessage().split(" ", 1)[1])
    assert (fields["customerCount"], fields["latestCustomerCount"]) == (170, 200)
    assert (fields["snapshot"], fields["latestSnapshot"]) == (withheld[0], first["snapshot"])
    assert any(r.getMessage().startswith(events.SNAPSHOT_FAILED + " ") for r in caplog.records)
    health = json.loads(http_get("health", "http://localhost/api/health").get_body())
    assert health["withheld"]["customerCount"] == 170
    assert health["withheld"]["latestCustomerCount"] == 200
    assert health["customerCount"] == 200

    monkeypatch.setenv("SNAPSHOT_MAX_DROP_PERCENT", "20")
    next_second()
    run_timer()

    latest = snapshots.latest()
    assert latest["customerCount"] == 170
    assert latest["changes"]["counts"] == {"added": 0, "removed": 30, "changed": 0}
    assert record_of(snapshots, latest)["previousSnapshot"] == first["snapshot"]
    assert "withheld" not in json.loads(http_get("health", "http://localhost/api/health").get_body())


@pytest.mark.parametrize(
    ("setting", "kept", "published"),
    [("10", 90, True), ("10", 89, False), ("0", 99, False), ("0", 100, True), ("100", 0, True)],
    ids=["10%-at-the-limit", "just-over-10%", "0-any-drop", "0-no-drop", "100-off"],
)
def test_the_guard_limit(make_stack, setting, kept, published):
    stack, snapshots = make_stack(customers=100, env_overrides={"SNAPSHOT_MAX_DROP_PERCENT": setting})
    run_timer()
    first = snapshots.latest()
    stack.partner_center.customers = stack.partner_center.customers[:kept]
    next_second()

    if published:
        run_timer()
        assert snapshots.latest()["customerCount"] == kept
    else:
        with pytest.raises(SnapshotWithheldError):
            run_timer()
        assert snapshots.latest() == first


# -- the rules of the record, case by case ------------------------------------------------------------
@pytest.mark.parametrize(
    ("customer_id", "key"),
    [
        ("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0", "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"),
        ("0F1E2D3C-4B5A-4978-8796-A5B4C3D2E1F0", "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"),
        ("{0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0}", "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"),
        ("customer-7", "~customer-7"),
    ],
    ids=["canonical", "upper-case", "braces", "not-a-guid"],
)
def test_change_key(customer_id, key):
    from shared.changes.record import change_key

    assert change_key(customer_id) == key


@pytest.mark.parametrize(
    ("before", "after", "fields"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"/a": {"before": 1, "after": 2}}),
        ({"a": 1}, {}, {"/a": {"before": 1, "after": None}}),
        ({}, {"b": [1]}, {"/b": {"before": None, "after": [1]}}),
        (
            {"companyProfile": {"domain": "x", "links": {"self": 1}}},
            {"companyProfile": {"domain": "y", "links": {"self": 2}}},
            {
                "/companyProfile/domain": {"before": "x", "after": "y"},
                "/companyProfile/links": {"before": {"self": 1}, "after": {"self": 2}},
            },
        ),
        ({}, {"companyProfile": {"domain": "y"}}, {"/companyProfile/domain": {"before": None, "after": "y"}}),
        (
            {"companyProfile": "odd"},
            {"companyProfile": {}},
            {"/companyProfile": {"before": "odd", "after": {}}},
        ),
        (
            {"companyProfile": {"companyName": "A"}, "companyProfile.companyName": "x"},
            {"companyProfile": {"companyName": "B"}, "companyProfile.companyName": "y"},
            {
                "/companyProfile/companyName": {"before": "A", "after": "B"},
                "/companyProfile.companyName": {"before": "x", "after": "y"},
            },
        ),
        (
            {"a/b~c": 1, "": 1},
            {"a/b~c": 2, "": 2},
            {"/a~1b~0c": {"before": 1, "after": 2}, "/": {"before": 1, "after": 2}},
        ),
    ],
    ids=[
        "same",
        "differs",
        "gone",
        "new",
        "profile-fields",
        "profile-new",
        "profile-not-an-object",
        "a-dot-in-a-name-never-collides",
        "escaped-names",
    ],
)
def test_changed_fields(before, after, fields):
    from shared.changes.record import changed_fields

    assert changed_fields(before, after) == fields


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":"0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0","x":1}',
        b'{"id":"0F1E2D3C-4B5A-4978-8796-A5B4C3D2E1F0","x":1}',
        b'{"id": "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0", "x": 1}',
        b'{"x":1,"id":"0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"}',
    ],
    ids=["as-sent", "upper-case", "spaces", "id-not-first"],
)
def test_a_stored_line_has_the_key_of_its_id(line):
    from shared.changes.record import line_key

    assert line_key(line) == "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"


@pytest.mark.parametrize("window", [None, 5], ids=["in-memory", "spilled-to-disk"])
def test_a_lone_surrogate_is_compared_and_recorded_as_the_json_escape_it_came_as(
    make_stack, window, monkeypatch
):
    """Partner Center may send "\\ud800" (strict JSON, storable). UTF-8 has no form for it: the change record
    keeps the JSON escape, so the night still compares and /api/changes serves the entries."""
    if window is not None:
        monkeypatch.setattr("shared.changes.record.WINDOW", window)
    stack, snapshots = make_stack(customers=60)
    run_timer()
    after = copy.deepcopy(stack.partner_center.customers)
    after[5]["companyProfile"]["companyName"] = "Lone \ud800 Renamed"
    added = make_customers(1, seed=4242)[0]
    added["companyProfile"]["companyName"] = "Lone \udfff Added"
    after.append(added)
    gone = after.pop(9)
    gone_id = gone["id"]
    stack.partner_center.customers = after
    next_second()

    run_timer()

    latest = snapshots.latest()
    assert latest["changes"]["counts"] == {"added": 1, "removed": 1, "changed": 1}
    raw = snapshots.document_bytes(latest["changes"]["name"])
    assert b'"Lone \\ud800 Renamed"' in raw and b'"Lone \\udfff Added"' in raw
    record = snapshots.record(latest["changes"]["name"])
    assert record["added"][0]["companyName"] == "Lone \udfff Added"
    assert record["removed"][0]["id"] == gone_id
    assert record["changed"][0]["fields"]["/companyProfile/companyName"]["after"] == "Lone \ud800 Renamed"
    answer = call("changes", {"since": latest["generatedAt"][:10]})
    assert answer.status_code == 200, answer.get_body()[:300]
    listed = {(c["type"], c["id"]): c for c in json.loads(answer.get_body())["changes"]}
    assert listed["added", added["id"]]["companyName"] == "Lone \udfff Added"
    assert ("removed", gone_id) in listed and ("changed", after[5]["id"]) in listed
