"""Cutting a connection whose time is up, whatever it is blocked in: a socket read bounds one read, not
the whole (a receiver that trickles one byte at a time never trips it), so a timer shuts the socket down.
A shut-down socket fails the blocked read at once with an OSError, which the caller reports as a timeout
because `cut` is set."""

from __future__ import annotations

import contextlib
import socket
import threading


def shut_down(sock: socket.socket | None, cut: threading.Event) -> None:
    """Marks `cut` and shuts `sock` down (both directions); a socket already closed is no error."""
    cut.set()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """Shuts an attempt's connection down when its time is up, whatever it is blocked in (the TLS
    handshake, a trickle of header bytes, a body); DNS resolution aside.

    It holds its own duplicate of the socket: the HTTP library detaches the plain socket when it wraps it
    in TLS, and may close it on an error, so neither object can be relied on; a duplicate shuts down the same
    connection, and its descriptor cannot be reused by another connection while the watchdog holds it."""

    def __init__(self, seconds: float) -> None:
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._done = False
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(max(seconds, 0.0), self.fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            self._timer.cancel()
            if self._sock is not None:
                self._sock.close()

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            shut_down(self._sock, self.cut)

    def register(self, sock: socket.socket) -> None:
        """Called with the new connection's socket, before anything is sent or received on it."""
        with self._lock:
            if self.cut.is_set() or self._done:
                raise TimeoutError("the attempt's time was up before it connected")
            self._sock = sock.dup()
