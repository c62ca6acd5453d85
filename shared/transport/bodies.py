"""Bounded reads of an answer's body: a size limit, a time budget from its headers and the caller's
deadline, however slowly it trickles; the error says which bound it broke, and whether a retry is worth it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.errors import SnapshotAppError
from shared.transport.adapters import LIBRARY_ERROR, body_cause, read_some, socket_of

if TYPE_CHECKING:
    import requests

_READ_CHUNK = 256 * 1024  # bytes asked of the socket per read of a body


class BodyTooLarge(SnapshotAppError):
    """A body is larger than the caller's limit (`declared`: what Content-Length said, when it said so)."""

    def __init__(self, declared: int | None) -> None:
        super().__init__("the body is larger than its limit")
        self.declared = declared


class BodyBroken(SnapshotAppError):
    """The answer's body broke off, stalled or overran its read budget: the request is worth retrying."""


class BodyPastDeadline(SnapshotAppError):
    """The caller's deadline passed while a body was read."""


def read_body(response: requests.Response, limit: int, *, seconds: float, deadline: float) -> bytes:
    """The whole body of `response`, at most `limit` bytes, read within `seconds` from its headers and
    before `deadline` (a time.monotonic() value), however slowly it trickles."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    budget_end = time.monotonic() + seconds
    sock = socket_of(response)
    chunks: list[bytes] = []
    size = 0
    while True:
        now = time.monotonic()
        if now >= budget_end:
            raise BodyBroken(f"reading the body took longer than {seconds:g} s")
        if sock is not None:
            # A read waits no longer than the budget or the deadline: past the deadline only bytes
            # already here are taken, so an answer that arrived in time is still finished.
            sock.settimeout(max(min(budget_end, deadline) - now, 0.001))
        try:
            chunk = read_some(response, _READ_CHUNK)
        except (LIBRARY_ERROR, OSError) as exc:
            if time.monotonic() >= deadline:
                raise BodyPastDeadline from None
            raise BodyBroken(body_cause(exc)) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None)
        chunks.append(chunk)
