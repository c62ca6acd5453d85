"""Azurite blob and queue emulators over HTTPS with ``--oauth basic``, so token credentials (managed identity)
work."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .tls import LocalTLS

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_QUEUE = REPO_ROOT / "node_modules" / ".bin" / "azurite-queue"
ACCOUNT = "devstoreaccount1"
# Azurite's published well-known development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Azurite:
    """``azurite-blob`` and ``azurite-queue`` child processes on free loopback ports, each in its own process
    group.

    Pass ``tls`` to share a CA with the other stand-ins; otherwise a private one is created (``.tls``).
    """

    def __init__(self, tls: LocalTLS | None = None, *, startup_timeout: float = 20.0) -> None:
        self._owns_tls = tls is None
        self.tls = tls or LocalTLS()
        self.startup_timeout = startup_timeout
        self.port = 0
        self.queue_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._queue_proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def account_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def queue_account_url(self) -> str:
        return f"https://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};QueueEndpoint={self.queue_account_url};"
        )

    def start(self) -> Azurite:
        if not AZURITE_BLOB.exists():
            raise AzuriteError(f"{AZURITE_BLOB} not found: run `make install` (or `npm ci`) in {REPO_ROOT}")
        if shutil.which("node") is None:
            raise AzuriteError("node is not on PATH; Azurite needs Node.js 20")
        self._workdir = Path(tempfile.mkdtemp(prefix="devstack-azurite-"))
        # Race window between picking the port and Azurite binding it is tiny; a clash fails loudly below.
        self.port = _free_port()
        log = (self._workdir / "azurite.log").open("wb")
        args = [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            *self._common_flags(),
        ]
        with log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                args,
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        self._start_queue()
        return self

    def _common_flags(self) -> list[str]:
        """What the blob and queue services both run with: in memory, any SDK api-version, no telemetry, no
        access log (nobody reads it: the work directory goes with the emulator, and a line per request was
        a tenth of its CPU), OAuth over HTTPS with the stack's test CA."""
        return [
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
            "--oauth",
            "basic",
            "--cert",
            str(self.tls.cert_pem),
            "--key",
            str(self.tls.key_pem),
        ]

    def _start_queue(self) -> None:
        assert self._workdir is not None
        self.queue_port = _free_port()
        args = [
            str(AZURITE_QUEUE),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            *self._common_flags(),
        ]
        queue_dir = self._workdir / "queue"
        queue_dir.mkdir()
        with (self._workdir / "azurite-queue.log").open("wb") as log:
            self._queue_proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                args,
                cwd=queue_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_listening(self._queue_proc, self.queue_port, "azurite-queue.log")

    def _wait_ready(self) -> None:
        assert self._proc is not None
        self._wait_listening(self._proc, self.port, "azurite.log")

    def _wait_listening(self, proc: subprocess.Popen[bytes], port: int, log_name: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                output = self._log_tail(log_name)
                self.stop()
                raise AzuriteError(f"Azurite exited with code {code}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        output = self._log_tail(log_name)
        self.stop()
        raise AzuriteError(f"Azurite did not listen on port {port} within {self.startup_timeout}s:\n{output}")

    def _log_tail(self, log_name: str = "azurite.log", lines: int = 30) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / log_name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        procs = (self._proc, self._queue_proc)
        self._proc = self._queue_proc = None
        for proc in procs:
            if proc is not None and proc.poll() is None:
                _terminate(proc)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._owns_tls:
            self.tls.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # node may have children: take the whole group down
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass
