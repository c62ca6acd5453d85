"""The change-event queue and outbox as a test reads them, and the log lines a run wrote."""

from __future__ import annotations

import base64
import json
import uuid


def drain(stack) -> list[dict]:
    """Every message on the queue, base64-decoded as a Functions queue trigger does by default, deleted."""
    return [json.loads(base64.b64decode(text, validate=True)) for text in drain_raw(stack)]


def drain_raw(stack) -> list[str]:
    """Every message on the queue as it is stored (base64 text), in the order received, then deleted."""
    queue = stack.queue_client(stack.events_queue)
    found = []
    # Each received message stays hidden while the rest are read; one call deletes them all at the end.
    while batch := list(queue.receive_messages(messages_per_page=32, visibility_timeout=300)):
        found.extend(message.content for message in batch)
    queue.clear_messages()
    return found


def events_stack(make_stack, *, create_queue: bool = True):
    name = f"changes-{uuid.uuid4().hex[:12]}"  # Azurite is shared by the whole session
    stack, snapshots = make_stack(customers=80, env_overrides={"SNAPSHOT_EVENTS_QUEUE": name})
    stack.events_queue = name
    if create_queue:
        stack.queue_client(name).create_queue()  # infra/ creates it in Azure
    return stack, snapshots


def outbox(snapshots) -> list[str]:
    return [n for n in snapshots.names() if n.startswith("outbox/")]


def logged(caplog, name: str) -> list[tuple[str, dict]]:
    """(level, fields) of every `name` line logged."""
    prefix = name + " "
    return [
        (r.levelname, json.loads(r.getMessage().removeprefix(prefix)))
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]
