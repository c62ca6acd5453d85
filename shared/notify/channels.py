"""The webhooks' and the Teams card's parts of the change-event outbox (shared/changes/outbox.py): each
published run's CloudEvents to every endpoint of WEBHOOK_URLS in signed batches, and one Teams card per
run, delivered at least once, after the snapshot is published, each channel enabled by its own setting.

The outbox's sender (shared/changes/events.py EventSender.drain) reads the records and sends the queue's
part; `Channels.run` runs these parts beside it, one thread per webhook endpoint and one for Teams, each
walking the records oldest first within the same deadline (SNAPSHOT_EVENTS_SEND_SECONDS, never past the
run's deadline):

- An endpoint gets the record's messages from its own cursor on, as the queue gets them (the same
  CloudEvents and ids; one too large for a batch by reference, as on the queue), in batches of at most 100
  events and 256 KB (shared/notify/webhooks.py). The batches are cut from the cursor, which only moves to
  a batch's end, so a batch not delivered is the same batch, with the same webhook-id, when the next run
  sends it again. The cursor is saved every SAVE_EVERY messages and where the endpoint stops.
- Teams gets one card per record: the run's changes (or that they are unknown) from the digest of its
  change record; on a night without changes a short card when TEAMS_QUIET_NIGHTS, else nothing; for a
  withheld snapshot the warning card.
- Delivered: the part moves on. RetryLater (the receiver failed or stalled, or time ran out): that channel
  stops for this run, so it keeps its order (WARNING notify.pending); the next run goes on from there.
  PermanentFailure (a 4xx other than 408/429, a redirect): ERROR notify.given_up, which the failure alert
  watches, and the record's part for that channel is given up; the channel goes on with the next record.
- Storage failing while a part reads the change record or saves its progress, or a bug: ERROR
  snapshot.events_pending naming the step; that channel stops for this run, the others go on.

Nothing here raises to the run. Log lines and the summary name an endpoint by its place in WEBHOOK_URLS and
its host, never its URL (a path may hold the hook's token); the Teams URL is a secret and only its host is
named. Outbox records hold an endpoint's key (the first 16 hex digits of its URL's SHA-256), never the URL.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import events
from shared.changes.events import Stop, Unusable
from shared.errors import SnapshotAppError
from shared.events import log_event
from shared.notify.delivery import Delivered, Outcome, PermanentFailure, RetryLater
from shared.notify.webhooks import MAX_BATCH_BYTES, Signer, WebhookEndpoint, batches

if TYPE_CHECKING:
    from shared.changes.cloudevents import Message
    from shared.changes.events import EventSender, Item
    from shared.changes.outbox import Outbox
    from shared.notify.teams import TeamsWorkflow
    from shared.secrets import NotificationSecrets
    from shared.settings import Settings

log = logging.getLogger("shared.job")

SAVE_EVERY = 1000  # messages between two writes of an endpoint's cursor (what a crash may deliver again)
MAX_REPORTED = 20  # pending parts listed in snapshot.summary, oldest first
TEAMS = "Teams workflow"  # the channel's name in log lines (shared/notify/teams.py CHANNEL)


def endpoint_key(url: str) -> str:
    """How outbox records name an endpoint: not its URL, which may hold a token."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Endpoint:
    number: int  # its place in WEBHOOK_URLS, from 1
    key: str
    hook: WebhookEndpoint

    @property
    def channel(self) -> str:
        return f"webhook {self.number}"

    @property
    def host(self) -> str:
        return self.hook.sender.host


class _Taken(SnapshotAppError):
    """Another run changed the record since this one read it: it goes on with it."""


class Channels:
    """The webhook endpoints and the Teams workflow that are on for this run."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        teams: TeamsWorkflow | None,
        context: Mapping[str, Any],
        *,
        quiet_nights: bool = False,
        api_public_url: str | None = None,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.teams = teams
        self.context = context
        self.quiet_nights = quiet_nights
        self.api_public_url = api_public_url
        self.batches_sent = 0
        self.cards_sent = 0
        self._lock = threading.Lock()

    @classmethod
    def of(
        cls, settings: Settings, secrets: NotificationSecrets | None, context: Mapping[str, Any]
    ) -> Channels | None:
        """The channels the settings and secrets turn on; None when neither is."""
        from shared.notify.teams import TeamsWorkflow

        teams_url = secrets.teams_workflow_url if secrets else None
        signing = secrets.webhook_signing_secret if secrets else None
        if not (settings.webhook_urls and signing) and not teams_url:
            return None
        signer = Signer(signing) if settings.webhook_urls and signing else None
        endpoints = [
            Endpoint(number, endpoint_key(url), WebhookEndpoint(url, signer, channel=f"webhook {number}"))
            for number, url in enumerate(settings.webhook_urls, 1)
            if signer is not None
        ]
        return cls(
            endpoints,
            TeamsWorkflow(teams_url) if teams_url else None,
            context,
            quiet_nights=settings.teams_quiet_nights,
            api_public_url=settings.api_public_url,
        )

    def owed(self) -> tuple[list[str], bool]:
        """What a record staged now owes: each endpoint's key, and whether a Teams card."""
        return [endpoint.key for endpoint in self.endpoints], self.teams is not None

    def done(self, outbox: Outbox) -> bool:
        """Whether the record's webhook and Teams parts are done (a part for an endpoint no longer in
        WEBHOOK_URLS, or for Teams turned off, is given up)."""
        keys = {endpoint.key for endpoint in self.endpoints}
        hooks = all(cursor >= outbox.messages for key, cursor in outbox.webhooks.items() if key in keys)
        return hooks and (outbox.teams is not False or self.teams is None)

    # -- the parts ------------------------------------------------------------------------------------------
    def run(self, sender: EventSender, items: Sequence[Item], deadline: float) -> None:
        """Every channel's part of `items` (oldest first), side by side, until done or `deadline`."""
        walks = [
            (endpoint.channel, functools.partial(self._webhook_walk, sender, items, endpoint, deadline))
            for endpoint in self.endpoints
        ]
        if self.teams is not None:
            walks.append((TEAMS, functools.partial(self._teams_walk, sender, items, self.teams, deadline)))
        with ThreadPoolExecutor(max(len(walks), 1), thread_name_prefix="notify") as pool:
            for future in [pool.submit(self._guarded, channel, walk) for channel, walk in walks]:
                future.result()

    def _guarded(self, channel: str, walk: Callable[[], None]) -> None:
        """One channel's walk: storage failing or a bug ends it, logged (never raised to the run)."""
        try:
            walk()
        except _Taken:
            return
        except Stop as exc:
            self._stopped(channel, exc.step, exc.error)
        except Exception as exc:  # a bug, after the snapshot is published: named, left for the next run
            self._stopped(channel, f"{channel}: delivering notifications", type(exc).__name__)

    def _webhook_walk(
        self, sender: EventSender, items: Sequence[Item], endpoint: Endpoint, deadline: float
    ) -> None:
        for item in items:
            cursor = item.outbox.webhooks.get(endpoint.key)
            if cursor is None or cursor >= item.outbox.messages or item.problem is not None:
                continue
            try:
                outcome = self._send_batches(sender, item, endpoint, deadline)
            except Unusable as exc:
                item.problem = item.problem or str(exc)
                continue
            if isinstance(outcome, RetryLater):
                self._pending(endpoint.channel, endpoint.host, item, outcome.reason)
                return
            if isinstance(outcome, PermanentFailure):
                left = item.outbox.messages - item.outbox.webhooks[endpoint.key]
                self._given_up(endpoint.channel, outcome, item, count=left)
                self._save(sender, item, _at(endpoint.key, None))

    def _send_batches(
        self, sender: EventSender, item: Item, endpoint: Endpoint, deadline: float
    ) -> Outcome | None:
        """Delivers the record's events from the endpoint's cursor on, batch by batch; None once all are,
        else the outcome that stopped it (the cursor saved at the last batch delivered)."""
        outbox, key = item.outbox, endpoint.key
        saved = cursor = outbox.webhooks[key]
        indices: deque[int] = deque()  # the message index of each event handed to `batches`
        finished = False
        try:
            for batch in batches(self._texts(sender, outbox, cursor, indices)):
                if time.monotonic() >= deadline:
                    outcome: Outcome = RetryLater(endpoint.channel, endpoint.host, "out of time", None, 0)
                else:
                    outcome = endpoint.hook.deliver(batch, deadline=deadline)
                if not isinstance(outcome, Delivered):
                    return outcome
                for _ in batch.event_ids:
                    cursor = indices.popleft() + 1
                with self._lock:
                    self.batches_sent += 1
                if cursor - saved >= SAVE_EVERY:
                    self._save(sender, item, _at(key, cursor))
                    saved = cursor
            finished = True
        finally:
            # What was delivered is not delivered again, whatever stopped the rest.
            if not finished and cursor > saved:
                with contextlib.suppress(Stop, _Taken):
                    self._save(sender, item, _at(key, cursor))
        self._save(sender, item, _at(key, None))  # all out (the last message, published, is always one)
        return None

    @staticmethod
    def _texts(sender: EventSender, outbox: Outbox, start: int, indices: deque[int]) -> Iterator[str]:
        """The record's events from `start` on, each in the first form that fits a batch (an entry that
        cannot be an event is skipped: the queue's part sets it aside)."""

        def fit(text: str) -> bool:
            return len(text.encode()) <= MAX_BATCH_BYTES - 2

        message: Message
        for message in sender.messages(outbox, start):
            if message.problem is not None:
                continue
            text = next(sender.texts(outbox, message, fit), None)
            indices.append(message.index)
            yield text if text is not None else next(sender.texts(outbox, message, lambda _text: True))

    def _teams_walk(
        self, sender: EventSender, items: Sequence[Item], teams: TeamsWorkflow, deadline: float
    ) -> None:
        host = teams.sender.host
        for item in items:
            if item.outbox.teams is not False or item.problem is not None:
                continue
            if time.monotonic() >= deadline:
                self._pending(TEAMS, host, item, "out of time")
                return
            try:
                message = self._card(sender, item.outbox)
            except Unusable as exc:
                item.problem = item.problem or str(exc)
                continue
            outcome = None if message is None else teams.send(message, deadline=deadline)
            if isinstance(outcome, RetryLater):
                self._pending(TEAMS, host, item, outcome.reason)
                return
            if isinstance(outcome, PermanentFailure):
                self._given_up(TEAMS, outcome, item)
            elif outcome is not None:
                with self._lock:
                    self.cards_sent += 1
            self._save(sender, item, lambda o: o.card_done())

    def _card(self, sender: EventSender, outbox: Outbox) -> bytes | None:
        """The Teams message of the record (None: a quiet night, and no card asked for)."""
        from shared.notify.digest import digest_of
        from shared.notify.teams import message_for, withheld_message

        digest = digest_of(
            sender.entries(outbox) if outbox.unavailable is None else (),
            snapshot=outbox.snapshot,
            generated_at=outbox.generated_at,
            customer_count=outbox.customer_count,
            unavailable=outbox.unavailable,
        )
        if outbox.withheld is not None:
            removed = digest if outbox.unavailable is None else None
            return withheld_message(outbox.withheld, removed=removed, api_public_url=self.api_public_url)
        return message_for(digest, quiet_nights=self.quiet_nights, api_public_url=self.api_public_url)

    # -- progress and what is logged ----------------------------------------------------------------------
    @staticmethod
    def _save(sender: EventSender, item: Item, change: Callable[[Outbox], Outbox]) -> None:
        if not sender.update(item, change):
            raise _Taken

    def _pending(self, channel: str, host: str, item: Item, reason: str) -> None:
        log_event(
            log,
            logging.WARNING,
            events.NOTIFY_PENDING,
            channel=channel,
            host=host,
            snapshot=item.outbox.snapshot,
            reason=reason,
            **self.context,
        )

    def _given_up(
        self, channel: str, outcome: PermanentFailure, item: Item, count: int | None = None
    ) -> None:
        fields: dict[str, Any] = {"events": count} if count is not None else {}
        log_event(
            log,
            logging.ERROR,
            events.NOTIFY_GIVEN_UP,
            channel=channel,
            host=outcome.host,
            status=outcome.status,
            reason=outcome.reason,
            snapshot=item.outbox.snapshot,
            kind="withheld" if item.outbox.withheld else "changes",
            **fields,
            **self.context,
        )

    def _stopped(self, channel: str, step: str, error: str) -> None:
        log_event(
            log,
            logging.ERROR,
            events.SNAPSHOT_EVENTS_PENDING,
            channel=channel,
            step=step,
            error=error,
            **self.context,
        )

    def report(self, left: Sequence[Item]) -> dict[str, Any]:
        """The summary's fields: what each channel delivered in this drain and what it still owes, oldest
        first (the first MAX_REPORTED), of the records due and left (`left`)."""
        webhooks: list[dict[str, Any]] = []
        teams: list[dict[str, Any]] = []
        for item in left:
            outbox = item.outbox
            kind = "withheld" if outbox.withheld else "changes"
            for endpoint in self.endpoints:
                cursor = outbox.webhooks.get(endpoint.key)
                if cursor is not None and cursor < outbox.messages:
                    webhooks.append(
                        {
                            "snapshot": outbox.snapshot,
                            "kind": kind,
                            "webhook": endpoint.number,
                            "host": endpoint.host,
                            "events": outbox.messages - cursor,
                        }
                    )
            if self.teams is not None and outbox.teams is False:
                teams.append({"snapshot": outbox.snapshot, "kind": kind})
        hooks_on, teams_on = bool(self.endpoints), self.teams is not None
        return {
            "webhookBatchesSent": self.batches_sent if hooks_on else None,
            "webhooksPending": webhooks[:MAX_REPORTED] if hooks_on else None,
            "teamsCardsSent": self.cards_sent if teams_on else None,
            "teamsPending": teams[:MAX_REPORTED] if teams_on else None,
        }


def _at(key: str, cursor: int | None) -> Callable[[Outbox], Outbox]:
    """The change that puts endpoint `key` at `cursor` (None: past the record's last message)."""
    return lambda outbox: outbox.delivered(key, outbox.messages if cursor is None else cursor)
