"""A Blob Storage front for Azurite that can fail chosen requests, as a real storage account sometimes does.

Requests pass through to Azurite unchanged (the SDK signs and authenticates end to end); a rule added with
``fail()`` answers matching requests itself with a storage error (status, ``x-ms-error-code`` and the XML
body Blob Storage sends), so tests can make staging, committing, publishing or reading latest.json fail.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ._http import Handler, LoopbackServer

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass
class StorageFault:
    method: str
    pattern: re.Pattern[str]  # searched in the request target (path and query)
    status: int
    code: str
    times: int
    skip: int = 0  # matching requests let through first
    hits: int = 0


class StorageProxy(LoopbackServer):
    """HTTPS pass-through to ``upstream_url`` (an Azurite account URL); ``url``'s account URL is
    ``account_url``."""

    def __init__(
        self, ssl_context: ssl.SSLContext, upstream_url: str, client_context: ssl.SSLContext
    ) -> None:
        super().__init__(_ProxyHandler, ssl_context)
        parts = urlsplit(upstream_url)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 443
        self.account_path = parts.path
        self.client_context = client_context
        self.faults: list[StorageFault] = []
        # (method, pattern, callback): callback(target) runs once Azurite has answered a matching request and
        # before that answer is passed on (a test overwrites a blob right after the job committed it, say:
        # by the time the job hears back, the blob has changed, whatever the job does next).
        self.after: list[tuple[str, re.Pattern[str], Callable[[str], None]]] = []
        self.lock = threading.Lock()

    @property
    def account_url(self) -> str:
        return f"{self.url}{self.account_path}"

    def fail(
        self,
        method: str,
        pattern: str,
        *,
        status: int = 500,
        code: str = "InternalError",
        times: int = 1,
        skip: int = 0,
    ) -> StorageFault:
        fault = StorageFault(method.upper(), re.compile(pattern), status, code, times, skip)
        with self.lock:
            self.faults.append(fault)
        return fault

    def on(self, method: str, pattern: str, callback: Callable[[str], None]) -> None:
        with self.lock:
            self.after.append((method.upper(), re.compile(pattern), callback))

    def _callbacks_for(self, method: str, target: str) -> list[Callable[[str], None]]:
        with self.lock:
            return [cb for m, pattern, cb in self.after if m == method and pattern.search(target)]

    def _fault_for(self, method: str, target: str) -> StorageFault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.pattern.search(target):
                    fault.hits += 1
                    if fault.skip < fault.hits <= fault.skip + fault.times:
                        return fault
        return None


class _ProxyHandler(Handler):
    server: StorageProxy
    upstream: http.client.HTTPSConnection | None = None

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_DELETE = do_POST = do_GET

    def _forward(self) -> None:
        body = self.read_body()
        fault = self.server._fault_for(self.command, self.path)
        if fault is not None:
            message = f"{fault.code}: injected by the storage proxy\nRequestId:{uuid.uuid4()}"
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><Error>'
                f"<Code>{fault.code}</Code><Message>{message}</Message></Error>"
            ).encode()
            headers = {"x-ms-error-code": fault.code, "x-ms-request-id": str(uuid.uuid4())}
            return self.send_bytes(fault.status, xml, "application/xml", headers)
        srv = self.server
        answer, data = self._exchange(body)
        for callback in srv._callbacks_for(self.command, self.path):
            callback(self.path)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        length = answer.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _exchange(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        """The request sent on to Azurite and its answer, read whole. The connection to Azurite is this
        client connection's own, kept alive (a handshake per request made a backlog of messages slow); one
        that Azurite closed while idle is opened again and the request sent once more."""
        srv = self.server
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = f"{srv.upstream_host}:{srv.upstream_port}"
        headers["Content-Length"] = str(len(body))
        while True:
            fresh = self.upstream is None
            if self.upstream is None:
                self.upstream = http.client.HTTPSConnection(
                    srv.upstream_host, srv.upstream_port, context=srv.client_context, timeout=60
                )
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                answer = self.upstream.getresponse()
                return answer, answer.read()
            except (OSError, http.client.HTTPException):
                self.upstream.close()
                self.upstream = None
                if fresh:
                    raise

    def finish(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        super().finish()
