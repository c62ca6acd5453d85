"""The events queue (SNAPSHOT_EVENTS_QUEUE) in the snapshot storage account: its client and every send.

queue_client(settings, ...)   the queue, messages base64-encoded, a connection per sender
send(queue, text)             one message; the SDK's errors as they are
refused_as_too_large(exc)     whether the queue refused that message for its size (413, or 400
                              MessageTooLarge): any other refusal is the queue's (missing, forbidden, an
                              API version it does not speak) and would refuse every message alike
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.storage.problems import error_code

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient as QueueClient

    from shared.settings import Settings

_TOO_LARGE = frozenset({"RequestBodyTooLarge", "MessageTooLarge"})


def queue_client(
    settings: Settings, credential_factory: Callable[[], TokenCredential], *, workers: int
) -> QueueClient:
    """The events queue in the snapshot storage account, messages base64-encoded, with a connection for
    each of `workers` senders (requests keeps 10: more would be opened and dropped per message)."""
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from shared.transport.adapters import unretried_session

    assert settings.events_queue is not None
    session = unretried_session(workers)  # the SDK retries
    options: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "retry_total": settings.storage_retries,
        "initial_backoff": 1,
        "increment_base": 2,
        "transport": RequestsTransport(session=session, connection_timeout=20, read_timeout=60),
    }
    target = settings.storage
    if target.connection_string:
        return QueueClient.from_connection_string(target.connection_string, settings.events_queue, **options)
    url = settings.queue_account_url or (target.account_url or "").replace(".blob.", ".queue.", 1)
    return QueueClient(url, settings.events_queue, credential=credential_factory(), **options)


def send(queue: QueueClient, text: str) -> None:
    queue.send_message(text)


def refused_as_too_large(exc: BaseException) -> bool:
    from azure.core.exceptions import HttpResponseError

    return isinstance(exc, HttpResponseError) and (exc.status_code == 413 or error_code(exc) in _TOO_LARGE)
