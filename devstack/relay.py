"""A TCP relay in front of a stand-in (Azurite) that can be told to refuse or hold connections.

Pointing a client at the relay instead of Azurite lets a test take storage away from a warm instance and
give it back, without the instance's settings (or its cache) changing: TLS passes through untouched, so
the client sees Azurite's own certificate. Modes:

    forward   relay bytes both ways (the default)
    refuse    accept and reset at once: what a client sees of a storage endpoint that refuses connections
    hold      accept and say nothing until `restore()` or `refuse()`: a storage endpoint that hangs

Switching away from `forward` cuts the connections in flight, so pooled keep-alive connections fail too.
"""

from __future__ import annotations

import socket
import struct
import threading
from contextlib import suppress

MODES = ("forward", "refuse", "hold")


class Relay:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.mode = "forward"
        self.connections = 0  # accepted since start: one per connection attempt of a client
        self.held = 0  # connections waiting in `hold` mode right now
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    # -- control --------------------------------------------------------------------------------
    def start(self) -> Relay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()
        return self

    def refuse(self) -> None:
        self._switch("refuse")

    def hold(self) -> None:
        self._switch("hold")

    def restore(self) -> None:
        self._switch("forward")

    def close(self) -> None:
        if self._listener is not None:
            with suppress(OSError):
                self._listener.close()
            self._listener = None
        self._switch("refuse")

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _switch(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode == "hold":
                self._release.clear()
            else:
                self._release.set()  # held connections end: reset (refuse) or closed (forward)
            doomed = list(self._open) if previous == "forward" and mode != "forward" else []
        for sock in doomed:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump threads, which then close both ends

    # -- serving ----------------------------------------------------------------------------------
    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                mode = self.mode
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "refuse":
            _reset(client)
            return
        if mode == "hold":
            with self._lock:
                self.held += 1
            self._release.wait()
            with self._lock:
                self.held -= 1
            _reset(client)
            return
        try:
            upstream = socket.create_connection((self.host, self.target_port), timeout=10)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            for sock in (source, target):
                _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0): the peer sees the connection refused or reset, not a clean end."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.close()
