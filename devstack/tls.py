"""One throwaway certificate authority per dev stack, plus the files the stand-ins and clients need."""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from pathlib import Path

import certifi
import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


def system_ca_file() -> Path:
    """The CA bundle clients trust today: REQUESTS_CA_BUNDLE wins over certifi, as it does for requests."""
    configured = os.environ.get("REQUESTS_CA_BUNDLE")
    if configured and Path(configured).is_file():
        return Path(configured)
    return Path(certifi.where())


class LocalTLS:
    """A trustme CA with one server certificate, written as PEM files into a private temp directory.

    ``bundle`` is system CAs + this CA: pointing REQUESTS_CA_BUNDLE at it keeps real hosts verifiable while
    trusting the stand-ins (requests and MSAL ignore every other trust setting once that variable is set).
    ``system_cas=False`` leaves the system CAs out, for tests that reach no real host: urllib3 reads the
    bundle again for every new connection, and the system's 140-odd CAs cost about 20 ms of CPU each time.
    """

    def __init__(self, directory: Path | None = None, *, system_cas: bool = True) -> None:
        self._owns_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="devstack-tls-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name="devstack local CA")
        self._cert = self.ca.issue_cert(*SERVER_NAMES)

        self.ca_pem = self.directory / "ca.pem"
        self.cert_pem = self.directory / "server-cert.pem"
        self.key_pem = self.directory / "server-key.pem"
        self.bundle = self.directory / "ca-bundle.pem"

        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.cert_pem.write_bytes(b"".join(blob.bytes() for blob in self._cert.cert_chain_pems))
        self._cert.private_key_pem.write_to_path(str(self.key_pem))
        self.key_pem.chmod(0o600)
        system = system_ca_file().read_bytes().rstrip(b"\n") + b"\n" if system_cas else b""
        self.bundle.write_bytes(system + self.ca.cert_pem.bytes())

    def trust(self, ca_pem: Path) -> None:
        """Also trust another CA (e.g. a shared Azurite's) in ``bundle``."""
        pem = Path(ca_pem).read_bytes()
        if pem not in self.bundle.read_bytes():
            with self.bundle.open("ab") as bundle:
                bundle.write(b"\n" + pem)

    def ssl_server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def ssl_client_context(self) -> ssl.SSLContext:
        """Trusts only the local CA: handy for raw http.client / urllib probes in tests."""
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def close(self) -> None:
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalTLS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
