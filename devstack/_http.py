"""Shared plumbing for the stand-in servers: loopback-only, keep-alive, optional TLS, quiet."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

JSON_TYPE = "application/json; charset=utf-8"
BOM = b"\xef\xbb\xbf"


class LoopbackServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on 127.0.0.1:<free port>, served from a daemon thread.

    TLS is wrapped per connection without an immediate handshake so a slow or failing client handshake
    happens in its handler thread rather than stalling the accept loop.
    """

    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        """Origin without a trailing slash, e.g. https://127.0.0.1:43121."""
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conn_lock:
            self._connections.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up, failed handshakes and stop() closing idle keep-alive sockets are normal here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def start(self) -> None:
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """serve_forever without its poll: stop() wakes the loop at once rather than at the next poll (a
        test's stand-ins stop in microseconds, not a poll interval each), and an idle server never wakes."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _events in selector.select():
                    if key.fileobj is self and not self._stopping.is_set():
                        self._handle_request_noblock()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wake_write.send(b"\0")
            self._thread.join(timeout=5)
            self._thread = None
            self._wake_read.close()
            self._wake_write.close()
        # Idle keep-alive connections would otherwise keep handler threads parked in readline().
        with self._conn_lock:
            live, self._connections = list(self._connections), set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler with JSON helpers; always sends Content-Length."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # avoids the ~40 ms Nagle/delayed-ACK stall per keep-alive request
    timeout = 120  # idle keep-alive connections are closed eventually, like real front ends do
    server: LoopbackServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        """First value of a query parameter, matched case-insensitively like Azure front ends do."""
        for key, values in self.query.items():
            if key.lower() == name.lower():
                return values[0]
        return None

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(
        self, status: int, body: bytes, content_type: str = JSON_TYPE, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Status line, headers and body in one write, as real front ends send a small answer: a body
        # sent apart can reach the client a scheduling slice later, which makes timing tests flaky.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, *, bom: bool = False
    ) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_bytes(status, BOM + body if bom else body, headers=headers)

    def drop_connection(self) -> None:
        """Hang up without answering, as a crashed front end or a reset connection would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
