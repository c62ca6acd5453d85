"""Change events per second: the job's sender (shared/changes/events.py EventSender.drain) sending a backlog
of one outbox record to Azurite's queue, its SEND_WORKERS in flight against one at a time; then the same
through the storage proxy adding a round trip to every message, the way a queue in Azure answers from a few
milliseconds away (Azurite on loopback answers in well under one, and its own CPU is the limit there).

Each measurement writes a change record of `events` changed customers with the job's own writer
(shared/changes/store.py), stages its outbox record and drains it into a fresh queue: the clock runs from the
drain's start to the last message's answer, and every message is counted on the queue afterwards.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from devstack.azurite import Azurite
from devstack.storage_proxy import StorageProxy
from shared.changes.record import Counts
from shared.changes.store import RecordHeader, write_record
from shared.storage.layout import changes_name


@dataclass
class EventFigures:
    events: int  # per measurement on Azurite directly
    events_with_latency: int
    latency: float  # seconds added per message through the proxy
    workers: int  # the job's SEND_WORKERS
    rates: dict[str, float]  # events per second: "concurrent", "one at a time", and the same "+latency"
    cpu_per_event: float  # seconds of this process's CPU per event, concurrent, Azurite directly


class _AllChanged:
    """The changes of a night where `count` customers were renamed, as write_record reads them."""

    def __init__(self, count: int) -> None:
        self.counts = Counts(0, 0, count)

    def added(self) -> Iterable[dict[str, Any]]:
        return ()

    def removed(self) -> Iterable[dict[str, Any]]:
        return ()

    def changed_lines(self) -> Iterator[bytes]:
        for n in range(self.counts.changed):
            before, after = f"Contoso {n} AG", f"Contoso {n} Holding AG"
            fields = {"/companyProfile/companyName": {"before": before, "after": after}}
            yield json.dumps({"id": str(uuid.uuid4()), "fields": fields}).encode()


def event_figures(azurite: Azurite, *, events: int, latency: float = 0.01) -> EventFigures:
    from shared.changes.events import SEND_WORKERS

    trust = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(azurite.tls.bundle)  # the sender's session trusts Azurite's CA
    client = ssl.create_default_context(cafile=str(azurite.tls.bundle))
    proxy = StorageProxy(azurite.tls.ssl_server_context(), azurite.queue_account_url, client)
    proxy.on("POST", r"/messages", lambda _target: time.sleep(latency))
    proxy.start()
    slow = max(1, min(events, 1000))
    try:
        cpu = time.process_time()
        rates = {"concurrent": _rate(azurite, events, SEND_WORKERS)}
        cpu = (time.process_time() - cpu) / events  # the sender only: Azurite is another process
        rates["one at a time"] = _rate(azurite, events, 1)
        rates["concurrent +latency"] = _rate(azurite, slow, SEND_WORKERS, proxy.account_url)
        rates["one at a time +latency"] = _rate(azurite, slow, 1, proxy.account_url)
    finally:
        proxy.stop()
        if trust is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = trust
    return EventFigures(events, slow, latency, SEND_WORKERS, rates, cpu)


def _rate(azurite: Azurite, events: int, workers: int, queue_url: str | None = None) -> float:
    """Events per second draining one outbox record of `events` changes (plus its snapshot.published)."""
    from azure.storage.blob import BlobServiceClient

    from shared.changes.events import EventSender, Outbox
    from shared.snapshots.store import ChangeRef, SnapshotStore
    from shared.storage.queue import queue_client

    suffix = uuid.uuid4().hex[:12]
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string, connection_verify=str(azurite.tls.bundle)
    )
    container = service.get_container_client(f"bench-events-{suffix}")
    container.create_container()
    store = SnapshotStore(container)
    snapshot = "snapshots/2026/11/24/customers-20261124T020000Z.json"
    record = changes_name(snapshot)
    header = RecordHeader(snapshot, None, "2026-11-24T02:00:00Z", None)
    write_record(store, record, header, _AllChanged(events))  # type: ignore[arg-type]
    connection = azurite.connection_string
    if queue_url is not None:
        connection = connection.replace(azurite.queue_account_url, queue_url)
    settings = SimpleNamespace(
        events_queue=f"bench-events-{suffix}",
        storage_retries=4,  # as deployed (SNAPSHOT_STORAGE_RETRIES)
        storage=SimpleNamespace(connection_string=connection),
        queue_account_url=None,
    )
    with queue_client(settings, lambda: None, workers=workers) as queue:  # type: ignore[arg-type]
        queue.create_queue()
        sender = EventSender(store, queue, {}, workers=workers)
        sender.stage(Outbox.of(snapshot, header.generated_at, events, ChangeRef(record, 0, 0, events)))
        started = time.perf_counter()
        drained = sender.drain(snapshot, 3600)
        seconds = time.perf_counter() - started
        on_queue = queue.get_queue_properties().approximate_message_count
    # Nothing is deleted (this Azurite ends with the bench): twice, with each queue deleted after its
    # measurement, a send of the next measurement waited the whole 60 s read timeout for Azurite's answer.
    if drained.sent != events + 1 or on_queue != events + 1 or drained.pending:
        raise RuntimeError(
            f"sent {drained.sent}, {on_queue} on the queue, {drained.pending} pending: not all"
        )
    return drained.sent / seconds
