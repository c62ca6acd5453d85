"""ETags, 304s and Cache-Control of the data answers (the shared `world` of conftest.py)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.api.context import api_context
from tests.support.api import (
    World,
    call,
    customer_call,
)


# -- ETag and 304 --------------------------------------------------------------------------------------
def _requests(world: World) -> list[tuple[str, str, Any, dict]]:
    cid = world.customers[7]["id"]
    today = world.latest["generatedAt"][:10]
    return [
        ("customers", "customers", {}, {}),
        ("customers", "customers", {"q": "zyxwvu"}, {}),
        ("customers", "customers", {"domain": "contoso-exact.onmicrosoft.com"}, {}),
        ("customers", "customers", {"top": "5"}, {}),
        ("customer", f"customers/{cid}", {}, {"customerId": cid}),
        ("snapshots", "snapshots", {}, {}),
        ("snapshot_by_date", "snapshots/2024-02-29", {}, {"date": "2024-02-29"}),
        ("snapshot_by_date", f"snapshots/{today}", {}, {"date": today}),
    ]


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_every_data_answer_has_an_etag_and_if_none_match_gives_304(world, encoding):
    for name, path, query, route in _requests(world):
        headers = {"Accept-Encoding": encoding}
        first = call(name, query, path=path, route=route, headers=headers)
        assert first.status_code == 200, (path, first.get_body()[:200])
        etag = first.headers["ETag"]
        assert re.fullmatch(r'"[0-9a-f]{32}(-gzip)?"', etag)
        for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = call(name, query, path=path, route=route, headers={**headers, "If-None-Match": sent})
            assert again.status_code == 304, (path, sent)
            assert again.get_body() == b""
            assert again.headers["ETag"] == etag
            assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
        changed = call(name, query, path=path, route=route, headers={**headers, "If-None-Match": '"stale"'})
        assert changed.status_code == 200
        assert changed.get_body() == first.get_body()


def test_a_warm_instance_looks_at_latest_json_at_most_once_per_interval(world, env):
    cid = world.customers[5]["id"]
    env.setenv("API_LATEST_CHECK_SECONDS", "0.3")
    cache = api_context().latest
    for _ in range(20):
        assert customer_call(cid).status_code == 200
    assert cache.checks == 1  # the other 19 lookups were answered from memory alone
    time.sleep(0.35)
    assert customer_call(cid).status_code == 200
    assert cache.checks == 2


def test_different_questions_have_different_etags(world):
    etags = {
        call(name, query, path=path, route=route).headers["ETag"]
        for name, path, query, route in _requests(world)
    }
    assert len(etags) == len(_requests(world))


def test_a_304_needs_only_the_latest_json_check(world, env):
    # A fresh instance (new settings → new cache) answers a conditional request without loading anything.
    cid = world.customers[3]["id"]
    etag = customer_call(cid).headers["ETag"]
    env.setenv("API_SAS_LIFETIME_SECONDS", "301")
    cache = api_context().latest
    assert cache.loads == 0
    for _ in range(3):
        assert customer_call(cid, headers={"If-None-Match": etag}).status_code == 304
    assert cache.loads == 0
    assert cache.checks == 3
    assert customer_call(cid).status_code == 200
    assert cache.loads == 1
    for _ in range(5):
        assert customer_call(world.customers[4]["id"]).status_code == 200
    assert cache.loads == 1  # warm: parsed once, then only the conditional check per request


# -- Cache-Control -------------------------------------------------------------------------------------
def test_cache_lifetime_follows_the_schedule_and_the_cap(world, env):
    def max_age() -> int:
        return int(re.search(r"max-age=(\d+)", call("customers", {"top": "1"}).headers["Cache-Control"])[1])

    assert 0 < max_age() <= 300  # the default cap
    env.setenv("API_CACHE_MAX_AGE_SECONDS", "0")
    assert max_age() == 0
    env.setenv("API_CACHE_MAX_AGE_SECONDS", "86400")
    soon = datetime.now(UTC) + timedelta(seconds=90)
    env.setenv("SNAPSHOT_SCHEDULE", f"{soon.second} {soon.minute} {soon.hour} * * *")
    assert 0 < max_age() <= 90  # never past the next scheduled run
    env.setenv("SNAPSHOT_SCHEDULE", "not a schedule")
    assert max_age() == 86400  # unreadable: the cap alone
