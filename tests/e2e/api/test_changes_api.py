"""GET /api/changes and GET /api/customers/{customerId}/history over snapshots the job wrote, day by day."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.errors import SnapshotWithheldError
from shared.job import run_snapshot
from tests.support.api import assert_error, body, call
from tests.support.changes import Nights, day, entry, history_call, since, snapshot_at


@pytest.fixture
def nights(make_stack) -> Nights:
    return Nights(make_stack)


# -- history ------------------------------------------------------------------------------------------
def test_history_of_a_customer_that_left_and_came_back(nights):
    g = nights.generated
    response = history_call(nights.leaver["id"])

    assert response.status_code == 200
    payload = body(response)
    assert payload == {
        "id": nights.leaver["id"],
        "firstSeen": g[0],
        "lastSeen": g[3],
        "present": True,
        "retainedSince": g[0],
        "events": [
            {"type": "removed", "generatedAt": g[1], "snapshot": snapshot_at(nights, g[1])}
            | entry(nights.leaver),
            {"type": "added", "generatedAt": g[2], "snapshot": snapshot_at(nights, g[2])}
            | entry(nights.leaver),
        ],
        "incomplete": [],  # every step of its history was compared
    }


def test_history_of_a_rename_a_newcomer_and_one_gone(nights):
    g = nights.generated
    renamed = body(history_call(nights.renamed["id"]))
    assert (renamed["firstSeen"], renamed["lastSeen"], renamed["present"]) == (g[0], g[3], True)
    before = nights.renamed["companyProfile"]["companyName"]
    assert renamed["events"] == [
        {
            "type": "changed",
            "generatedAt": g[1],
            "snapshot": snapshot_at(nights, g[1]),
            "id": nights.renamed["id"],
            "fields": {"/companyProfile/companyName": {"before": before, "after": "Renamed Ltd"}},
        }
    ]
    newcomer = body(history_call(nights.newcomer["id"]))
    assert (newcomer["firstSeen"], newcomer["lastSeen"], newcomer["present"]) == (g[2], g[3], True)
    assert [e["type"] for e in newcomer["events"]] == ["added"]
    gone = body(history_call(nights.gone["id"]))
    assert (gone["firstSeen"], gone["lastSeen"], gone["present"]) == (g[0], g[1], False)
    assert [(e["type"], e["generatedAt"]) for e in gone["events"]] == [("removed", g[2])]
    quiet = body(history_call(nights.stack.partner_center.customers[0]["id"].upper()))
    assert (quiet["firstSeen"], quiet["lastSeen"], quiet["present"], quiet["events"]) == (
        g[0],
        g[3],
        True,
        [],
    )


def test_history_errors(nights):
    assert_error(
        history_call("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"), 404, "customer_not_found", "customerId"
    )
    assert_error(history_call("not-a-guid"), 400, "invalid_customer_id", "customerId")
    braced = history_call("{" + nights.leaver["id"].upper() + "}")  # the same tenant, as in the records
    assert braced.status_code == 200 and braced.get_body() == history_call(nights.leaver["id"]).get_body()
    assert_error(history_call(nights.leaver["id"], query={"x": "1"}), 400, "unknown_parameter", "x")
    assert_error(history_call(nights.leaver["id"], method="POST"), 405, "method_not_allowed")


def test_history_etag_and_gzip(nights):
    first = history_call(nights.leaver["id"])
    again = history_call(nights.leaver["id"], headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    zipped = history_call(nights.leaver["id"], headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.get_body()) == first.get_body()


def test_history_before_any_snapshot(make_stack):
    make_stack(customers=3)
    assert_error(history_call("0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"), 404, "no_snapshot")


# -- /api/changes -------------------------------------------------------------------------------------


def test_changes_of_every_published_snapshot_oldest_first(nights):
    g = nights.generated
    payload = body(call("changes", {"since": since(10)}))

    assert payload["query"] == {"since": since(10), "until": since(0)}
    assert payload["nextLink"] is None
    assert payload["incomplete"] == []  # every step in the range was compared
    assert [(c["type"], c["id"], c["generatedAt"]) for c in payload["changes"]] == [
        ("removed", nights.leaver["id"], g[1]),
        ("changed", nights.renamed["id"], g[1]),
        ("added", nights.leaver["id"], g[2]),
        ("added", nights.newcomer["id"], g[2]),
        ("removed", nights.gone["id"], g[2]),
    ]
    assert payload["changes"][3] == {
        "type": "added",
        "generatedAt": g[2],
        "snapshot": snapshot_at(nights, g[2]),
    } | entry(nights.newcomer)


def test_changes_by_range_and_type(nights):
    g = nights.generated
    only_day_two = body(call("changes", {"since": since(2), "until": since(2)}))["changes"]
    assert {c["generatedAt"] for c in only_day_two} == {g[2]}
    assert len(only_day_two) == 3
    added = body(call("changes", {"since": since(10), "type": "added"}))["changes"]
    assert [c["id"] for c in added] == [nights.leaver["id"], nights.newcomer["id"]]
    assert body(call("changes", {"since": since(0)}))["changes"] == []


def test_changes_paged_with_next_link(nights):
    whole = body(call("changes", {"since": since(10)}))["changes"]
    seen, query = [], {"since": since(10), "top": "2"}
    for _ in range(10):
        payload = body(call("changes", query))
        seen += payload["changes"]
        if payload["nextLink"] is None:
            break
        assert "code=" not in payload["nextLink"]
        query = dict(parse_qsl(urlsplit(payload["nextLink"]).query))
    assert seen == whole
    removed = body(call("changes", {"since": since(10), "type": "removed", "top": "1"}))
    following = dict(parse_qsl(urlsplit(removed["nextLink"]).query))
    assert body(call("changes", following))["changes"][0]["id"] == nights.gone["id"]


def test_changes_etag_and_gzip(nights):
    first = call("changes", {"since": since(10)})
    assert first.status_code == 200
    assert first.headers["Cache-Control"].startswith("private, max-age=")
    again = call("changes", {"since": since(10)}, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    zipped = call("changes", {"since": since(10)}, headers={"Accept-Encoding": "gzip"})
    assert gzip.decompress(zipped.get_body()) == first.get_body()


@pytest.mark.parametrize(
    ("query", "code", "parameter"),
    [
        ({}, "invalid_parameter", "since"),
        ({"since": "2026-13-01"}, "invalid_parameter", "since"),
        ({"since": "yesterday"}, "invalid_parameter", "since"),
        ({"since": "2026-01-10", "until": "2026-01-09"}, "invalid_parameter", "until"),
        ({"since": "2025-01-01", "until": "2026-01-02"}, "invalid_parameter", "until"),
        ({"since": "2026-01-01", "type": "renamed"}, "invalid_parameter", "type"),
        ({"since": "2026-01-01", "top": "1001"}, "invalid_parameter", "top"),
        ({"since": "2026-01-01", "continuation": "bm9wZQ"}, "invalid_continuation", "continuation"),
        ({"since": "2026-01-01", "customer": "x"}, "unknown_parameter", "customer"),
    ],
    ids=[
        "no-since",
        "bad-month",
        "not-a-date",
        "until-first",
        "over-366-days",
        "type",
        "top",
        "token",
        "unknown",
    ],
)
def test_changes_rejects(nights, query, code, parameter):
    assert_error(call("changes", query), 400, code, parameter)


def test_a_since_in_the_future_without_until_names_since(nights):
    """until defaults to today: the mistake is the since that comes after it, so since is named."""
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()  # tomorrow in every time zone
    payload = assert_error(call("changes", {"since": tomorrow}), 400, "invalid_parameter", "since")
    assert payload["message"].startswith("since must not be after today"), payload


def test_the_366_day_range_is_allowed(nights):
    assert call("changes", {"since": "2025-01-01", "until": "2026-01-01"}).status_code == 200


def test_changes_of_a_withheld_snapshot_are_not_published(nights):
    g = nights.generated
    nights.stack.partner_center.customers = nights.stack.partner_center.customers[:30]
    with pytest.raises(SnapshotWithheldError):
        run_snapshot(now=day(0))
    assert [c["generatedAt"] for c in body(call("changes", {"since": since(10)}))["changes"]][-1] == g[2]
    assert body(history_call(nights.newcomer["id"]))["present"] is True
