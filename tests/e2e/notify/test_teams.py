"""The Teams card (shared/notify/teams.py) and the run digest it is built from (shared/notify/digest.py).

Every card is checked against the official Adaptive Card 1.5 JSON schema shipped in tests/data (see
tests/data/README.md), and kept within Teams' 28 KB whatever the night brings. The end-to-end tests build the
card from the change record a real run of the timer function wrote and post it to the local Teams
Workflows stand-in."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.receivers import TeamsWorkflow
from shared.changes.guard import Withheld
from shared.changes.store import iter_entries
from shared.errors import SnapshotWithheldError
from shared.notify.delivery import Delivered
from shared.notify.digest import MAX_TEXT, Changed, Customer, FieldChange, RunDigest, clean, digest_of
from shared.notify.teams import TeamsWorkflow as TeamsChannel
from shared.notify.teams import (
    changes_message,
    message_for,
    quiet_message,
    withheld_message,
)
from tests.support.changes import night_two
from tests.support.functions import run_timer
from tests.support.job import next_second
from tests.support.teams import (
    SCHEMA_FILE,
    VALIDATOR,
    all_text,
    card_of,
    markdown_texts,
    plain_texts,
    walk,
)

SNAPSHOT = "snapshots/2026/11/24/customers-20261124T020000Z.json"
APP = "https://func-abc.azurewebsites.net"


def customer(n: int, name: str | None = None, domain: str | None = None) -> bytes:
    entry = {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "companyName": name or f"Customer {n}",
        "domain": domain or f"customer{n}.onmicrosoft.com",
        "relationshipToPartner": "reseller",
    }
    return json.dumps(entry).encode()


def changed(n: int, fields: dict[str, Any]) -> bytes:
    return json.dumps({"id": f"00000000-0000-0000-0000-{n:012d}", "fields": fields}).encode()


def entries(
    added: int, removed: int, changes: int, *, name: str | None = None
) -> Iterator[tuple[str, bytes]]:
    for n in range(added):
        yield "added", customer(n, name)
    for n in range(removed):
        yield "removed", customer(10**6 + n, name)
    for n in range(changes):
        value = name or f"Customer {n}"
        renamed = {"before": value, "after": value + " AG"}
        yield "changed", changed(n, {"/companyProfile/companyName": renamed})


def digest(added: int = 0, removed: int = 0, changes: int = 0, **kwargs: Any) -> RunDigest:
    name = kwargs.pop("name", None)
    return digest_of(
        entries(added, removed, changes, name=name),
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=12345,
        **kwargs,
    )


# -- the card ------------------------------------------------------------------------------------------
def test_a_night_with_changes_gives_a_card_with_counts_names_fields_and_the_change_list():
    night = digest_of(
        [
            ("added", customer(1, "Wingtip Ltd", "wingtip42.onmicrosoft.com")),
            ("removed", customer(2, "Litware Inc.", "litware7.onmicrosoft.com")),
            (
                "changed",
                changed(
                    3,
                    {
                        "/companyProfile/companyName": {
                            "before": "Contoso AG",
                            "after": "Contoso Holding AG",
                        },
                        "/companyProfile/domain": {"before": "contoso.com", "after": "contoso.ch"},
                        "/relationshipToPartner": {"before": "advisor", "after": "reseller"},
                    },
                ),
            ),
        ],
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=12345,
    )
    card = card_of(changes_message(night, api_public_url=APP + "/"))
    text = all_text(card)
    assert "Partner Center customers: 1 added, 1 removed, 1 changed" in text
    assert "2026-11-24 02:00 UTC" in text and "12,345" in text
    for expected in ("Wingtip Ltd", "wingtip42.onmicrosoft.com", "Litware Inc.", "Contoso Holding AG"):
        assert expected in plain_texts(card)
    runs = plain_texts(card)
    assert "/companyProfile/companyName: Contoso AG → Contoso Holding AG" in runs
    assert "/companyProfile/domain: contoso.com → contoso.ch" in runs
    assert "/relationshipToPartner changed" in runs and "advisor" not in runs  # named, values not shown
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open the change list",
            "url": f"{APP}/api/changes?since=2026-11-24",
        }
    ]
    assert "msteams" not in card


def test_up_to_ten_names_per_kind_and_and_n_more():
    card = card_of(changes_message(digest(25, 11, 10)))
    runs = [e["text"] for e in walk(card) if e["type"] == "TextRun"]
    assert "Customer 9" in runs and "Customer 10" not in runs
    assert "and 15 more" in runs and "and 1 more" in runs
    assert sum(run.startswith("and ") for run in runs) == 2  # the 10 changed ones are all listed
    assert "actions" not in card  # no API_PUBLIC_URL: no link


@pytest.mark.parametrize(
    ("added", "removed", "changes", "name"),
    [
        (10, 10, 10, "N" * 60_000),
        (5000, 5000, 5000, None),
        (5000, 5000, 5000, "ü" * 60_000),
        (3, 0, 0, "😀" * 60_000),
    ],
    ids=["60000-character-names", "thousands-of-changes", "both", "four-byte-characters"],
)
def test_the_message_stays_within_teams_limit_and_never_fails(added, removed, changes, name):
    night = digest(added, removed, changes, name=name)
    card = card_of(changes_message(night, api_public_url=APP))
    text = all_text(card)
    assert f"{added:,} added" in text  # the counts are always there
    assert card["actions"][0]["url"].startswith(APP)


def test_huge_field_values_and_many_fields_shrink_too():
    fields = {f"/companyProfile/field{i}": {"before": "x" * 60_000, "after": "y" * 60_000} for i in range(50)}
    fields["/companyProfile/domain"] = {"before": "d" * 60_000, "after": "e" * 60_000}
    night = digest_of(
        (("changed", changed(n, fields)) for n in range(40)),
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=40,
    )
    card = card_of(changes_message(night, api_public_url=APP))
    assert "40 changed" in all_text(card)


def test_a_tiny_budget_still_gives_a_valid_card():
    night = digest(100, 100, 100, name="N" * 60_000)
    for budget in (20_000, 5_000, 1_500, 600):
        message = changes_message(night, api_public_url=APP + "/" + "p" * 3000, max_bytes=budget)
        card_of(message)
        assert len(message) <= max(budget, 600)


def test_customer_text_is_never_rendered_as_markdown():
    hostile = [
        "[Click to verify your tenant](https://evil.example/login)",
        "**URGENT** _act now_",
        "Contoso\n\n# Heading\r\n- list",
        "\u202eevil\u202c name\u200b",
        "lone \ud800 surrogate",
    ]
    night = digest_of(
        [("added", customer(i, name, domain=name)) for i, name in enumerate(hostile)]
        + [
            (
                "changed",
                changed(9, {"/companyProfile/companyName": {"before": hostile[0], "after": hostile[1]}}),
            )
        ],
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=5,
    )
    message = changes_message(night)
    card = card_of(message)
    rendered = "\n".join(markdown_texts(card))
    for marker in ("evil.example", "URGENT", "Heading", "surrogate"):
        assert marker not in rendered
        assert marker in plain_texts(card)
    runs = plain_texts(card)
    assert "\n" not in runs and "\u202e" not in runs and "\u200b" not in runs and "\ud800" not in runs
    message.decode("utf-8")  # no lone surrogate reaches the wire


def test_a_run_that_could_not_compare_says_the_changes_are_unknown():
    night = digest(unavailable="the previous snapshot is damaged (SnapshotFormatError)")
    message = message_for(night, api_public_url=APP)
    assert message is not None
    text = all_text(card_of(message))
    assert "changes unknown" in text and "SnapshotFormatError" in text


def test_a_quiet_night_sends_nothing_unless_asked():
    quiet = digest()
    assert message_for(quiet) is None
    message = message_for(quiet, quiet_nights=True, api_public_url=APP)
    assert message == quiet_message(quiet, api_public_url=APP)
    text = all_text(card_of(message))
    assert "no changes" in text and "12,345" in text


def test_the_withheld_card_says_what_to_check_and_how_to_accept_the_drop():
    withheld = Withheld(
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=170,
        latest_snapshot="snapshots/2026/11/23/customers-20261123T020000Z.json",
        latest_customer_count=200,
        drop_percent=15.0,
        max_drop_percent=10,
    )
    removed = digest(0, 30, 0)
    card = card_of(withheld_message(withheld, removed=removed, api_public_url=APP))
    text = all_text(card)
    assert "Snapshot withheld: 15% fewer customers" in text
    for expected in ("170", "200", "15%", "10%", "Customer 1000000", "and 20 more"):
        assert expected in text
    assert "snapshots/2026/11/24/changes-20261124T020000Z.json" in text
    assert "SNAPSHOT_MAX_DROP_PERCENT above 15 (for example 16), then set it back to 10" in text
    assert card["actions"][0]["url"] == f"{APP}/api/health"
    assert any(e.get("color") == "Attention" for e in walk(card))
    card_of(withheld_message(withheld, removed=digest(0, 5000, 0, name="N" * 60_000)))


# -- the digest ----------------------------------------------------------------------------------------
def test_the_digest_keeps_counts_and_the_first_ten_per_kind_in_bounded_memory():
    def stream() -> Iterator[tuple[str, bytes]]:
        big = "N" * 2000
        for n in range(100_000):
            yield ("added", "removed", "changed")[n % 3], customer(n, big + str(n))

    tracemalloc.start()
    try:
        night = digest_of(stream(), snapshot=SNAPSHOT, generated_at="2026-11-24T02:00:00Z", customer_count=1)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (night.added_count, night.removed_count, night.changed_count) == (33334, 33333, 33333)
    assert len(night.added) == len(night.removed) == len(night.changed) == 10
    assert all(len(c.name or "") <= MAX_TEXT for c in night.added)
    assert peak < 2 * 1024 * 1024, peak


def test_the_digest_never_fails_on_an_entry_it_cannot_read():
    night = digest_of(
        [
            ("added", b"{not json"),
            ("added", b"[1, 2]"),
            ("added", b'{"id": 7, "companyName": {"x": 1}}'),
            ("changed", b'{"id": "c1", "fields": [1]}'),
            ("changed", b'{"id": "c2", "fields": {"/companyProfile/domain": "not an object"}}'),
            ("removed", b"[" * 100_000),
            ("elsewhere", b"{}"),
        ],
        snapshot=SNAPSHOT,
        generated_at="not a date",
        customer_count=0,
    )
    assert (night.added_count, night.removed_count, night.changed_count) == (3, 1, 2)
    assert night.added[0] == Customer("(unreadable entry)", None, None)
    assert night.changed[1].fields == (FieldChange("/companyProfile/domain", None, None, True),)
    card_of(changes_message(night, api_public_url=APP))


def test_a_changed_customer_is_named_by_its_new_name_else_its_id():
    night = digest_of(
        [
            ("changed", changed(1, {"/companyProfile/companyName": {"before": "Old", "after": "New"}})),
            ("changed", changed(2, {"/relationshipToPartner": {"before": "a", "after": "b"}})),
        ],
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=2,
    )
    assert [c.name for c in night.changed] == ["New", None]
    assert isinstance(night.changed[1], Changed) and night.changed[1].id.endswith("2")


def test_a_top_level_field_named_like_the_profiles_name_is_not_taken_for_the_name():
    """Field paths are JSON Pointers: a top-level field literally named `companyProfile.companyName` (or
    `companyProfile/companyName`, escaped `~1`) is neither the customer's new name nor shown before →
    after."""
    impostors = {
        "/companyProfile.companyName": {"before": None, "after": "Impostor Ltd"},
        "/companyProfile~1domain": {"before": None, "after": "evil.example"},
    }
    night = digest_of(
        [("changed", changed(1, impostors))],
        snapshot=SNAPSHOT,
        generated_at="2026-11-24T02:00:00Z",
        customer_count=1,
    )
    [entry] = night.changed
    assert entry.name is None
    assert [(f.field, f.shows_values, f.after) for f in entry.fields] == [
        ("/companyProfile.companyName", False, None),
        ("/companyProfile~1domain", False, None),
    ]
    runs = plain_texts(card_of(changes_message(night)))
    assert "Impostor" not in runs and "evil.example" not in runs


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  a\tb\nc  ", "a b c"), ("x" * 300, "x" * (MAX_TEXT - 1) + "…"), (5, None), ("\u202eab", "ab")],
)
def test_clean(value, expected):
    assert clean(value) == expected


# -- end to end: a real run's change record, the Teams stand-in ------------------------------------------
def record_entries(snapshots, name: str) -> list[tuple[str, bytes]]:
    data, properties = snapshots.raw(name)
    gzipped = properties.content_settings.content_encoding == "gzip"
    assert gzip.decompress(data) if gzipped else data
    return list(iter_entries([data], gzipped))


def test_a_change_night_reaches_the_teams_stand_in_as_a_valid_card(make_stack):
    stack, snapshots = make_stack(customers=200)
    run_timer()
    after, expected = night_two(stack.partner_center.customers)
    stack.partner_center.customers = after
    next_second()
    run_timer()
    latest = snapshots.latest()

    night = digest_of(
        record_entries(snapshots, latest["changes"]["name"]),
        snapshot=latest["snapshot"],
        generated_at=latest["generatedAt"],
        customer_count=latest["customerCount"],
    )
    message = message_for(night, api_public_url="http://127.0.0.1:7071")
    assert message is not None
    with TeamsWorkflow(stack.tls.ssl_server_context()) as teams:
        outcome = TeamsChannel(teams.workflow_url).send(message)
        assert outcome == Delivered("Teams workflow", "127.0.0.1", 202, 1)
        [card] = teams.cards
    assert card == card_of(message)
    runs = plain_texts(card)
    assert f"{expected['added'][0]['companyName']}" in runs
    renamed = expected["changed"][0]["fields"]["/companyProfile/companyName"]
    assert f"/companyProfile/companyName: {renamed['before']} → {renamed['after']}" in runs
    assert "→ Renamed & Co. Zürich" in runs and "→ moved.onmicrosoft.com" in runs
    assert "2 added, 2 removed, 4 changed" in all_text(card)
    assert (
        card["actions"][0]["url"] == f"http://127.0.0.1:7071/api/changes?since={latest['generatedAt'][:10]}"
    )


def test_a_withheld_night_reaches_the_teams_stand_in_as_a_valid_warning_card(make_stack):
    stack, snapshots = make_stack(customers=200)
    run_timer()
    stack.partner_center.customers = stack.partner_center.customers[:150]
    next_second()
    with pytest.raises(SnapshotWithheldError):
        run_timer()
    withheld = Withheld(**{_snake(k): v for k, v in json.loads(snapshots.raw("withheld.json")[0]).items()})
    record = withheld.snapshot.replace("/customers-", "/changes-")
    removed = digest_of(
        record_entries(snapshots, record),
        snapshot=withheld.snapshot,
        generated_at=withheld.generated_at,
        customer_count=withheld.customer_count,
    )
    message = withheld_message(withheld, removed=removed, api_public_url="http://127.0.0.1:7071")
    with TeamsWorkflow(stack.tls.ssl_server_context()) as teams:
        assert isinstance(TeamsChannel(teams.workflow_url).send(message), Delivered)
        [card] = teams.cards
    text = all_text(card_of(message))
    assert card == card_of(message)
    assert (
        "Snapshot withheld: 25% fewer customers" in text and "Removed (50)" in text and "and 40 more" in text
    )


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def test_the_shipped_schema_is_the_one_its_readme_names_and_it_is_strict():
    import hashlib

    readme = (SCHEMA_FILE.parent / "README.md").read_text()
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() in readme
    card = card_of(changes_message(digest(1)))
    assert not VALIDATOR.is_valid(card | {"msteams": {"width": "Full"}})
    assert not VALIDATOR.is_valid(card | {"body": [{"type": "TextBlock", "txt": "a typo"}]})
