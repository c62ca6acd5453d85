"""De-duplication keys past the in-memory limit: still exact (the Bloom filter only says 'maybe')."""

from __future__ import annotations

import random

import pytest

from shared.partner_center.seen import SeenKeys
from tests.support.functions import run_timer
from tests.support.job import assert_complete


def test_seen_keys_stay_exact_on_disk():
    rng = random.Random(7)
    added = [rng.getrandbits(128) for _ in range(20_000)] + ["customer-1", "customer-2"]
    others = [rng.getrandbits(128) for _ in range(20_000)] + ["customer-3"]
    seen = SeenKeys(small=100)
    try:
        for key in added:
            assert key not in seen
            seen.add(key)
        assert all(key in seen for key in added)
        assert not any(key in seen for key in others)
        # Keys that share both Bloom positions with an added key (a certain 'maybe'): SQLite says no.
        twin = added[0] ^ (1 << 40) ^ (1 << 100)
        assert twin not in seen
    finally:
        seen.close()


def test_duplicates_are_dropped_past_the_in_memory_limit(make_stack, monkeypatch):
    monkeypatch.setattr("shared.partner_center.seen.SMALL", 30)
    stack, snapshots = make_stack(customers=500, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "40"})
    stack.partner_center.duplicates = True  # every page repeats the last customer of the one before

    run_timer()

    document = assert_complete(stack, snapshots)
    assert document["source"]["duplicatesDropped"] == document["source"]["pagesFetched"] - 1 > 0


@pytest.mark.parametrize("small", [0, 5])
def test_a_set_that_moved_to_disk_keeps_its_earlier_keys(small):
    seen = SeenKeys(small=small)
    try:
        keys = list(range(1 << 100, (1 << 100) + 12))
        for key in keys:
            seen.add(key)
        assert all(key in seen for key in keys)
        assert (1 << 99) not in seen
    finally:
        seen.close()


def test_the_pager_lets_go_of_its_keys_with_the_last_page(make_stack, monkeypatch):
    """The Bloom filter (8 MB) and the SQLite file are gone before the snapshot is committed and the
    index's tables are built: the job's peak at a million customers is at that end."""
    import shared.partner_center.seen as seen_module
    from shared.partner_center.customers import CustomerPager

    monkeypatch.setattr(seen_module, "SMALL", 50)  # past it: the Bloom filter and the SQLite file
    held: list[SeenKeys] = []
    original = CustomerPager.pages

    def pages(self):
        held.append(self.seen)
        for page in original(self):
            assert self.seen._bloom is not None or page.number == 1
            yield page
        assert self.seen._bloom is None and self.seen._dir is None  # before the commit that follows

    monkeypatch.setattr(CustomerPager, "pages", pages)
    stack, snapshots = make_stack(customers=300, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"})
    run_timer()
    assert_complete(stack, snapshots)
    assert len(held) == 1 and not held[0]._set
