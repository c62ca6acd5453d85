"""GET /api/snapshots and GET /api/snapshots/{date} (the shared `world` of conftest.py)."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.support.api import (
    assert_error,
    body,
    call,
    date_call,
    follow,
)


# -- GET /api/snapshots and /api/snapshots/{date} ------------------------------------------------------
def test_snapshots_are_listed_newest_first(world):
    payload = body(call("snapshots"))
    listed = payload["snapshots"]
    assert [s["name"] for s in listed] == [world.latest["snapshot"], *reversed(world.past)]
    assert payload["nextLink"] is None
    newest = listed[0]
    _, properties = world.snapshots.raw(world.latest["snapshot"])
    assert newest == {
        "name": world.latest["snapshot"],
        "date": world.latest["generatedAt"][:10],
        "generatedAt": world.latest["generatedAt"],
        "customerCount": len(world.customers),
        "sizeBytes": properties.size,
    }
    assert listed[-1]["date"] == "2024-02-28"
    assert listed[-1]["customerCount"] == 10


def test_snapshots_page_with_top_and_continuation(world):
    pages = follow(body(call("snapshots", {"top": "1"})), "snapshots")
    assert [p["snapshots"][0]["name"] for p in pages] == [world.latest["snapshot"], *reversed(world.past)]
    assert all(len(p["snapshots"]) == 1 for p in pages)


def test_the_last_snapshot_of_a_date_as_stored_and_immutable_once_the_day_is_over(world):
    stored, _ = world.snapshots.raw(world.past[2])
    zipped = date_call("2024-02-29", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200
    assert zipped.get_body() == stored  # 05:30 won over 02:00
    assert zipped.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    plain = date_call("2024-02-29")
    assert plain.get_body() == gzip.decompress(stored)
    assert "Content-Encoding" not in plain.headers
    assert json.loads(plain.get_body())["generatedAt"] == "2024-02-29T05:30:15Z"
    today = date_call(world.latest["generatedAt"][:10])
    assert today.status_code == 200
    assert "must-revalidate" in today.headers["Cache-Control"]


@pytest.mark.parametrize("day", ["2024-03-01", "1999-12-31", "9999-12-31"])
def test_a_date_without_snapshots_is_404(world, day):
    assert_error(date_call(day), 404, "snapshot_not_found", "date")


@pytest.mark.parametrize(
    "bad",
    [
        "2024-02-30",
        "2024-2-29",
        "20240229",
        "2024-02-29T00:00:00Z",
        "../../latest.json",
        "..%2F..%2Flatest.json",
        "2024-02-29/../../latest.json",
        "%2e%2e",
        "\uff12\uff10\uff12\uff14-\uff10\uff12-\uff12\uff19",  # full-width digits
        "2024-02-29\x00",
        "0000-01-01",
        "",
        "9" * 4000,
    ],
)
def test_a_malformed_date_is_400(world, bad):
    assert_error(date_call(bad), 400, "invalid_date", "date")
