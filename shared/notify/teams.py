"""Teams: one Adaptive Card per run, posted to a Teams Workflows webhook ("Send webhook alerts to a
channel"; the Office 365 connectors it replaces were retired), in the Workflows message format:

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": <card>}]}

The card is an Adaptive Card of version 1.5 without host extensions (no top-level `msteams`), so it
validates against the official schema (tests/data/adaptive-card-1.5.schema.json).

- A night with changes: the snapshot's date and customer count, the counts added / removed / changed, up
  to 10 names per kind with "and N more", the changed fields (before → after for names and domains), and
  a link to the change list (`<API_PUBLIC_URL>/api/changes?since=<date>`).
- A night whose run could not compare: the changes are unknown, and why.
- A quiet night: a short card, sent only when TEAMS_QUIET_NIGHTS is on (`message_for` decides).
- A withheld snapshot (the completeness guard): counts, drop percentage, what to check, how to accept it.

Text that comes from customers (names, domains, field names) is put only in the TextRuns of RichTextBlocks,
which do not render Markdown: a customer named "[click here](https://…)" shows as that text, not a link.
TextBlocks (which render Markdown) hold only this module's own words and numbers.

Teams refuses a message over about 28 KB. The card is built with up to 10 entries per kind and texts of up
to 200 characters; over MESSAGE_BUDGET it is built again with fewer entries and shorter texts, down to the
counts alone: it shrinks, it never fails.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.notify.delivery import DeliveryPolicy, Outcome, Sender
from shared.notify.digest import Changed, Customer, RunDigest, clean, cut

if TYPE_CHECKING:
    from shared.changes.guard import Withheld

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 28 * 1024  # Teams' limit for one message
MESSAGE_BUDGET = MAX_MESSAGE_BYTES - 1024  # room for what the workflow adds around the card
CHANNEL = "Teams workflow"
KINDS = (("added", "Added"), ("removed", "Removed"), ("changed", "Changed"))
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class _Level:
    """How much a card shows: entries per kind, characters per text, fields per changed customer."""

    entries: int
    chars: int
    fields: int


_LEVELS = (
    _Level(10, 200, 4),
    _Level(10, 100, 2),
    _Level(5, 60, 2),
    _Level(3, 40, 1),
    _Level(1, 40, 0),
    _Level(0, 0, 0),
)


# -- the messages ------------------------------------------------------------------------------------
def message_for(
    digest: RunDigest,
    *,
    quiet_nights: bool = False,
    api_public_url: str | None = None,
    max_bytes: int = MESSAGE_BUDGET,
) -> bytes | None:
    """The message for a published run: its changes (or that they are unknown), a quiet-night card when
    `quiet_nights`, else None (nothing to send)."""
    if digest.has_changes or digest.unavailable is not None:
        return changes_message(digest, api_public_url=api_public_url, max_bytes=max_bytes)
    if quiet_nights:
        return quiet_message(digest, api_public_url=api_public_url, max_bytes=max_bytes)
    return None


def changes_message(
    digest: RunDigest, *, api_public_url: str | None = None, max_bytes: int = MESSAGE_BUDGET
) -> bytes:
    """The card of a night with changes (or whose changes are unknown), within `max_bytes`."""
    link = _changes_link(api_public_url, digest.generated_at)
    return _fit(lambda level: changes_card(digest, link, level), max_bytes)


def quiet_message(
    digest: RunDigest, *, api_public_url: str | None = None, max_bytes: int = MESSAGE_BUDGET
) -> bytes:
    """The short card of a night without changes."""
    link = _changes_link(api_public_url, digest.generated_at)

    def card(_level: _Level) -> dict[str, Any]:
        body = [
            _title("Partner Center customers: no changes"),
            _facts(("Snapshot", _when(digest.generated_at)), ("Customers", _number(digest.customer_count))),
        ]
        return _card(body, "Partner Center customers: no changes", link, "Open the change list")

    return _fit(card, max_bytes)


def withheld_message(
    withheld: Withheld,
    *,
    removed: RunDigest | None = None,
    api_public_url: str | None = None,
    max_bytes: int = MESSAGE_BUDGET,
) -> bytes:
    """The warning card of a snapshot the completeness guard withheld; `removed`: the digest of its
    change record, whose first removed customers the card lists."""
    health = f"{api_public_url.rstrip('/')}/api/health" if api_public_url else None
    return _fit(lambda level: withheld_card(withheld, removed, health, level), max_bytes)


def envelope(card: dict[str, Any]) -> dict[str, Any]:
    """The Workflows message around `card`."""
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class TeamsWorkflow:
    """The Teams Workflows webhook: POSTs one message (Workflows answers 202 Accepted)."""

    def __init__(self, url: str, policy: DeliveryPolicy | None = None) -> None:
        self.sender = Sender(url, CHANNEL, policy)

    def __repr__(self) -> str:
        return f"TeamsWorkflow(host={self.sender.host})"

    def send(self, message: bytes, *, deadline: float | None = None) -> Outcome:
        return self.sender.post(message, lambda: {"Content-Type": "application/json"}, deadline=deadline)


# -- the cards ---------------------------------------------------------------------------------------
def changes_card(digest: RunDigest, link: str | None, level: _Level = _LEVELS[0]) -> dict[str, Any]:
    """The card of `digest` showing what `level` allows."""
    if digest.unavailable is not None:
        return _unknown_card(digest, link)
    counts = ", ".join(f"{_number(digest.count(kind))} {kind}" for kind, _label in KINDS)
    title = f"Partner Center customers: {counts}"
    body: list[dict[str, Any]] = [
        _title(title),
        _facts(
            ("Snapshot", _when(digest.generated_at)),
            ("Customers", _number(digest.customer_count)),
            *((label, _number(digest.count(kind))) for kind, label in KINDS),
        ),
    ]
    for kind, label in KINDS:
        body += _section(digest, kind, label, level)
    return _card(body, title, link, "Open the change list")


def _unknown_card(digest: RunDigest, link: str | None) -> dict[str, Any]:
    """The card of a run that could not compare: its changes are unknown."""
    title = "Partner Center customers: changes unknown"
    body = [
        _title(title, color="Warning"),
        _facts(("Snapshot", _when(digest.generated_at)), ("Customers", _number(digest.customer_count))),
        _plain(
            _run(
                "This run could not compare with the snapshot before it, so customers may have been added, "
                "removed or changed without being listed here. Why:"
            )
        ),
        _plain(_run(cut(clean(digest.unavailable) or "", 300)), subtle=True),
    ]
    return _card(body, title, link, "Open the change list")


def withheld_card(
    withheld: Withheld, removed: RunDigest | None, link: str | None, level: _Level = _LEVELS[0]
) -> dict[str, Any]:
    from shared.storage.layout import changes_name

    drop = withheld.drop_percent
    title = f"Snapshot withheld: {drop:g}% fewer customers"
    body: list[dict[str, Any]] = [
        _title(title, color="Attention"),
        _facts(
            ("Taken", _when(withheld.generated_at)),
            ("Customers found", _number(withheld.customer_count)),
            ("Latest published", _number(withheld.latest_customer_count)),
            ("Drop", f"{drop:g}%"),
            ("Allowed drop", f"{withheld.max_drop_percent:g}%"),
        ),
        _plain(_run("Nothing was published: latest.json and the API still show the previous snapshot.")),
        _heading("What to check"),
        _plain(
            _run(
                f"The removed list of the withheld change record ({changes_name(withheld.snapshot)}) "
                "and Partner Center: did these customers really leave, or did the list stop early?"
            )
        ),
        _heading("To accept the drop"),
        _plain(
            _run(
                f"Run the job again with SNAPSHOT_MAX_DROP_PERCENT above {drop:g} (for example "
                f"{math.floor(drop) + 1}), then set it back to {withheld.max_drop_percent:g}."
            )
        ),
    ]
    if removed is not None:
        body += _section(removed, "removed", "Removed", level)
    return _card(body, title, link, "Open health")


def _section(digest: RunDigest, kind: str, label: str, level: _Level) -> list[dict[str, Any]]:
    count = digest.count(kind)
    if count == 0:
        return []
    listed: Sequence[Customer | Changed] = getattr(digest, kind)[: level.entries]
    elements = [_heading(f"{label} ({_number(count)})")]
    for entry in listed:
        if isinstance(entry, Changed):
            elements += _changed(entry, level)
        else:
            elements.append(_customer(entry, level))
    if count > len(listed):
        more = "and " + _number(count - len(listed)) + (" more" if listed else " (see the change list)")
        elements.append(_plain(_run(more), subtle=True))
    return elements


def _customer(customer: Customer, level: _Level) -> dict[str, Any]:
    runs = [_run(cut(customer.name or customer.id, level.chars), weight="Bolder")]
    if customer.domain:
        runs.append(_run("  " + cut(customer.domain, level.chars), isSubtle=True))
    return _plain(*runs, spacing="Small")


def _changed(entry: Changed, level: _Level) -> list[dict[str, Any]]:
    elements = [_plain(_run(cut(entry.name or entry.id, level.chars), weight="Bolder"), spacing="Small")]
    shown = entry.fields[: level.fields]
    for change in shown:
        runs = [_run(cut(change.field, level.chars) + (": " if change.shows_values else " changed"))]
        if change.shows_values:
            before, after = change.before or "(none)", change.after or "(none)"
            runs += [_run(cut(before, level.chars)), _run(" → "), _run(cut(after, level.chars))]
        elements.append(_plain(*runs, subtle=True, spacing="None"))
    hidden = len(entry.fields) - len(shown) + entry.more_fields
    if hidden:
        elements.append(_plain(_run(f"and {hidden} more field{'s' if hidden > 1 else ''}"), subtle=True))
    return elements


# -- building blocks ---------------------------------------------------------------------------------
def _fit(build: Callable[[_Level], dict[str, Any]], max_bytes: int) -> bytes:
    """The first rendering within `max_bytes`, from the fullest down; without its link when even the
    counts alone are over (an absurdly long API_PUBLIC_URL); a bare title at the very end."""
    for level in _LEVELS:
        card = build(level)
        message = encode(envelope(card))
        if len(message) <= max_bytes:
            return message
    card.pop("actions", None)
    message = encode(envelope(card))
    if len(message) <= max_bytes:
        return message
    title = cut(str(card.get("fallbackText", "")), 200)
    return encode(envelope(_card([_title(title)], title, None, "")))


def _card(body: list[dict[str, Any]], summary: str, link: str | None, action: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "fallbackText": summary,
        "body": body,
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": action, "url": link}]
    return card


def _title(text: str, *, color: str | None = None) -> dict[str, Any]:
    block = {"type": "TextBlock", "text": text, "weight": "Bolder", "size": "Medium", "wrap": True}
    return block | ({"color": color} if color else {})


def _heading(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "wrap": True, "spacing": "Medium"}


def _plain(*runs: dict[str, Any], subtle: bool = False, spacing: str | None = None) -> dict[str, Any]:
    """Text that is never read as Markdown (RichTextBlock of TextRuns)."""
    if subtle:
        runs = tuple(run | {"isSubtle": True} for run in runs)
    block: dict[str, Any] = {"type": "RichTextBlock", "inlines": list(runs)}
    return block | ({"spacing": spacing} if spacing else {})


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _facts(*pairs: tuple[str, str]) -> dict[str, Any]:
    """Facts of this module's own words and numbers only (fact values may render Markdown)."""
    return {"type": "FactSet", "facts": [{"title": title, "value": value} for title, value in pairs]}


def _number(value: int) -> str:
    return f"{value:,}"


def _when(iso: str) -> str:
    """`2026-11-24T02:00:00Z` as `2026-11-24 02:00 UTC` (anything else: cleaned and cut)."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return cut(clean(iso) or "?", 40)
    if moment.utcoffset() is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _changes_link(api_public_url: str | None, generated_at: str) -> str | None:
    """The change list of the snapshot's UTC date: `<API_PUBLIC_URL>/api/changes?since=YYYY-MM-DD`."""
    if not api_public_url:
        return None
    date = _DATE.match(generated_at or "")
    query = f"?since={date.group(0)}" if date else ""
    return f"{api_public_url.rstrip('/')}/api/changes{query}"
