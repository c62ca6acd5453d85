"""Local receivers of the notifications: a Teams Workflows webhook and a Standard Webhooks endpoint.

Both serve HTTPS with the stack's test CA, record every request (`received`) and can be told to misbehave
for the next requests, in order (each `times` times; then they answer normally again):

    fail(status, headers=..., body=...)   e.g. 503, 429 with Retry-After, 410
    stall(seconds)                        read the request, say nothing for `seconds`, then answer normally
    trickle(interval, part="headers"|"body")  send the answer one byte every `interval` seconds
    redirect(location, status=307)        a redirect (never to be followed)
    huge(size)                            200 with a `size`-byte body, streamed until the client hangs up
    drop()                                hang up without answering
    raw(data)                             send `data` as the answer, whatever it is, then hang up
    heal()                                forget what is still to come: answer normally again

`TeamsWorkflow` answers like a Workflows trigger: 202 Accepted for a request to its URL (its `sig` query
parameter is the secret) whose body is a Workflows message with an Adaptive Card attachment (kept in
`cards`), 401 for a wrong signature, 400 for another body. `WebhookReceiver` verifies each batch with the
Standard Webhooks reference library (`standardwebhooks`) and its secret: 204 and the batch kept in
`batches` when it verifies and is `application/cloudevents-batch+json`, 401 or 415 otherwise. Either calls
`on_receive(received)` for each request (make serve/demo print with it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._http import Handler, LoopbackServer

MAX_REQUEST_BYTES = 8 * 1024 * 1024
BATCH_TYPE = "application/cloudevents-batch+json"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class Received:
    target: str  # path and query as requested
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int | None  # what is answered (None: hung up, stalled, trickled or not HTTP)
    behaviour: str  # "normal" or the injected one
    verified: bool | None = None  # webhooks: the signature verified with standardwebhooks
    problem: str | None = None  # why a request was refused
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Behaviour:
    kind: str
    times: int
    params: dict[str, Any]


class _Receiver(LoopbackServer):
    """The recording and misbehaving common to both receivers."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None, on_receive: Callable[[Received], None] | None
    ) -> None:
        super().__init__(_ReceiverHandler, ssl_context)
        self.received: list[Received] = []
        self.on_receive = on_receive
        self.stopping = threading.Event()
        self._script: list[_Behaviour] = []
        self._lock = threading.Lock()
        self.body_bytes_sent = 0  # of huge answers, before the client hung up

    # -- telling it to misbehave -------------------------------------------------------------------------
    def fail(
        self, status: int, *, times: int = 1, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        self._add("fail", times, status=status, headers=dict(headers or {}), body=body)

    def stall(self, seconds: float = 3600, *, times: int = 1) -> None:
        self._add("stall", times, seconds=seconds)

    def trickle(self, interval: float = 0.2, *, part: str = "headers", times: int = 1) -> None:
        assert part in ("headers", "body")
        self._add("trickle", times, interval=interval, part=part)

    def redirect(self, location: str, *, status: int = 307, times: int = 1) -> None:
        self._add("redirect", times, location=location, status=status)

    def huge(self, size: int = 1024**3, *, times: int = 1) -> None:
        self._add("huge", times, size=size)

    def drop(self, *, times: int = 1) -> None:
        self._add("drop", times)

    def raw(self, data: bytes, *, times: int = 1) -> None:
        self._add("raw", times, data=data)

    def heal(self) -> None:
        """Forgets every misbehaviour still to come: the next requests are answered normally."""
        with self._lock:
            self._script.clear()

    def _add(self, kind: str, times: int, **params: Any) -> None:
        with self._lock:
            self._script.append(_Behaviour(kind, times, params))

    def next_behaviour(self) -> _Behaviour | None:
        with self._lock:
            if not self._script:
                return None
            behaviour = self._script[0]
            behaviour.times -= 1
            if behaviour.times <= 0:
                self._script.pop(0)
            return behaviour

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)
        if self.on_receive is not None:
            self.on_receive(received)

    def stop(self) -> None:
        self.stopping.set()  # stalled and trickling handlers give up
        super().stop()

    # -- the normal answer -------------------------------------------------------------------------------
    def accept(
        self, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bool | None, str | None]:
        """(status, verified, problem) of a request answered normally."""
        raise NotImplementedError


class TeamsWorkflow(_Receiver):
    """A Teams Workflows trigger ("Send webhook alerts to a channel")."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None, *, on_receive: Callable[[Received], None] | None = None
    ) -> None:
        super().__init__(ssl_context, on_receive)
        self.workflow_id = uuid.uuid4().hex
        self.signature = secrets.token_urlsafe(32)
        self.cards: list[dict[str, Any]] = []

    @property
    def workflow_url(self) -> str:
        """The URL a user copies from the workflow's trigger (the signature is its secret)."""
        return (
            f"{self.url}/workflows/{self.workflow_id}/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.signature}"
        )

    def accept(
        self, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bool | None, str | None]:
        parts = urlsplit(target)
        if parts.path != f"/workflows/{self.workflow_id}/triggers/manual/paths/invoke":
            return 404, None, "no such workflow"
        if parse_qs(parts.query).get("sig") != [self.signature]:
            return 401, None, "wrong or missing sig"
        try:
            message = json.loads(body)
            cards = [
                attachment["content"]
                for attachment in message["attachments"]
                if attachment["contentType"] == CARD_TYPE
            ]
        except (ValueError, KeyError, TypeError):
            return 400, None, "not a Workflows message"
        if message.get("type") != "message" or not cards:
            return 400, None, "not a Workflows message with an Adaptive Card"
        with self._lock:
            self.cards.extend(cards)
        return 202, None, None


class WebhookReceiver(_Receiver):
    """A webhook endpoint that verifies Standard Webhooks signatures with the reference library."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        secret: str | None = None,
        *,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        super().__init__(ssl_context, on_receive)
        self.secret = secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.token = secrets.token_urlsafe(24)  # in the path, as many hook URLs carry theirs
        self.batches: list[list[dict[str, Any]]] = []

    @property
    def endpoint_url(self) -> str:
        return f"{self.url}/hooks/{self.token}"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for batch in self.batches for event in batch]

    def accept(
        self, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bool | None, str | None]:
        from standardwebhooks import Webhook, WebhookVerificationError

        if urlsplit(target).path != f"/hooks/{self.token}":
            return 404, None, "no such hook"
        try:
            batch = Webhook(self.secret).verify(body, dict(headers))
        except (WebhookVerificationError, ValueError) as exc:
            return 401, False, f"signature: {exc}"
        if headers.get("content-type", "").split(";")[0].strip() != BATCH_TYPE:
            return 415, True, "not application/cloudevents-batch+json"
        if not isinstance(batch, list):
            return 400, True, "not a JSON array of events"
        with self._lock:
            self.batches.append(batch)
        return 204, True, None


class _ReceiverHandler(Handler):
    server: _Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.send_bytes(413, b"")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        behaviour = self.server.next_behaviour()
        # Recorded before answering: a client may look as soon as it has its answer.
        if behaviour is None:
            status, verified, problem = self.server.accept(self.path, headers, body)
            self.server.record(Received(self.path, headers, body, status, "normal", verified, problem))
            self.send_bytes(status, b"", content_type="text/plain")
            return
        planned = {"fail": behaviour.params.get("status"), "redirect": behaviour.params.get("status")}
        status = 200 if behaviour.kind == "huge" else planned.get(behaviour.kind)
        self.server.record(Received(self.path, headers, body, status, behaviour.kind))
        self._misbehave(behaviour, headers, body)

    def _misbehave(self, behaviour: _Behaviour, headers: Mapping[str, str], body: bytes) -> int | None:
        params = behaviour.params
        self.close_connection = True
        if behaviour.kind == "fail":
            self.send_bytes(
                params["status"], params["body"], content_type="text/plain", headers=params["headers"]
            )
            return int(params["status"])
        if behaviour.kind == "redirect":
            self.send_bytes(
                params["status"], b"", content_type="text/plain", headers={"Location": params["location"]}
            )
            return int(params["status"])
        if behaviour.kind == "stall":
            if self.server.stopping.wait(params["seconds"]):
                return None
            status, _verified, _problem = self.server.accept(self.path, headers, body)
            with contextlib.suppress(OSError):
                self.send_bytes(status, b"", content_type="text/plain")
            return status
        if behaviour.kind == "trickle":
            self._trickle(params["interval"], params["part"])
            return None
        if behaviour.kind == "huge":
            self._huge(params["size"])
            return 200
        if behaviour.kind == "raw":
            with contextlib.suppress(OSError):
                self.wfile.write(params["data"])
                self.wfile.flush()
            self.drop_connection()
            return None
        self.drop_connection()
        return None

    def _trickle(self, interval: float, part: str) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
        slow, fast = (head, b"") if part == "headers" else (b"x" * 100000, head)
        with contextlib.suppress(OSError):
            if fast:
                self.wfile.write(fast)
                self.wfile.flush()
            for index in range(len(slow)):
                if self.server.stopping.wait(interval):
                    return
                self.wfile.write(slow[index : index + 1])
                self.wfile.flush()

    def _huge(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"[" + b"0," * 32767 + b"0"
        sent = 0
        with contextlib.suppress(OSError):
            while sent < size and not self.server.stopping.is_set():
                piece = chunk[: size - sent]
                self.wfile.write(piece)
                sent += len(piece)
                self.server.body_bytes_sent += len(piece)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
