"""Short-lived, read-only SAS URLs for one snapshot blob: how a snapshot too large for one buffered
Functions response is handed out (the client downloads straight from Blob Storage).

With a token credential (managed identity; production storage allows no shared keys) the SAS is a
user-delegation SAS, signed with a user delegation key the identity asks for (needs a Storage Blob Data
Reader/Contributor/Owner role; the key is cached and renewed well before it expires). With a connection
string (Azurite, local runs) it is a service SAS signed with the account key.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

CLOCK_SKEW = timedelta(minutes=5)  # Azure's advice: start a SAS a few minutes in the past
KEY_LIFETIME = timedelta(hours=6)  # a user delegation key may live up to 7 days


class SasIssuer:
    def __init__(self, container: ContainerClient) -> None:
        self.container = container
        self._lock = threading.Lock()
        self._key: Any = None
        self._key_expiry: datetime | None = None

    def read_url(self, blob_name: str, lifetime_seconds: int, now: datetime) -> tuple[str, datetime]:
        """(URL with a read-only SAS for `blob_name`, when it expires)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        expiry = now + timedelta(seconds=lifetime_seconds)
        common: dict[str, Any] = {
            "account_name": self.container.account_name,
            "container_name": self.container.container_name,
            "blob_name": blob_name,
            "permission": BlobSasPermissions(read=True),
            "start": now - CLOCK_SKEW,
            "expiry": expiry,
            # https only, unless the storage itself is plain http (a local emulator).
            "protocol": "https" if self.container.scheme == "https" else "https,http",
        }
        account_key = getattr(self.container.credential, "account_key", None)
        if account_key:
            token = generate_blob_sas(account_key=account_key, **common)
        else:
            token = generate_blob_sas(user_delegation_key=self._delegation_key(now, expiry), **common)
        return f"{self.container.get_blob_client(blob_name).url}?{token}", expiry

    def _delegation_key(self, now: datetime, needed_until: datetime) -> Any:
        with self._lock:
            if self._key is None or self._key_expiry is None or self._key_expiry < needed_until:
                service = self.container._get_blob_service_client()  # noqa: SLF001 - in the SDK's own samples
                expiry = now + KEY_LIFETIME
                self._key = service.get_user_delegation_key(now - CLOCK_SKEW, expiry)
                self._key_expiry = expiry
            return self._key
