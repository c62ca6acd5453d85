"""DevStack: every stand-in the snapshot job talks to, wired together on loopback with one test CA."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from .azurite import Azurite
from .entra import EntraID
from .key_vault import KeyVault
from .managed_identity import ManagedIdentityEndpoint
from .partner_center import PartnerCenter
from .population import make_customers
from .tls import LocalTLS
from .tokens import TokenRegistry

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

SECRET_TENANT_ID = "partner-center-tenant-id"
SECRET_CLIENT_ID = "partner-center-client-id"
SECRET_CLIENT_SECRET = "partner-center-client-secret"
SECRET_REFRESH_TOKEN = "partner-center-refresh-token"


def _client_secret() -> str:
    # Entra client secrets look like "Abc8Q~" + 34 characters.
    return secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(32)[:34]


class DevStack:
    """Managed identity endpoint, Entra ID, Key Vault, Partner Center and Azurite, ready for the job.

    ``customers``: a count (generated with ``seed``) or a ready list. ``app_user``: also seed a refresh token
    (secure application model). ``mi_client_id``: make the managed identity user-assigned and require that
    client id on token requests. ``azurite``: True starts one, False none, or pass a running ``Azurite`` to
    share (its CA is added to the trust bundle). ``system_cas``: False leaves the system CAs out of the trust
    bundle (the tests: no real host is reached, and every new connection reads the bundle again).
    """

    def __init__(
        self,
        *,
        customers: int | Sequence[dict[str, Any]] = 1000,
        seed: int = 0,
        page_latency: float = 0.0,
        app_user: bool = False,
        mi_client_id: str | None = None,
        azurite: Azurite | bool = True,
        access_token_lifetime: int = 3600,
        system_cas: bool = True,
    ) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.client_secret = _client_secret()
        self.app_user = app_user
        self.mi_client_id = mi_client_id
        self._customers = make_customers(customers, seed) if isinstance(customers, int) else list(customers)
        self._page_latency = page_latency
        self._azurite_arg = azurite
        self._access_token_lifetime = access_token_lifetime
        self._system_cas = system_cas
        self._exit = ExitStack()
        self.azurite: Azurite | None = None

    def start(self) -> DevStack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def _start(self) -> None:
        push = self._exit.enter_context
        self.tls = push(LocalTLS(system_cas=self._system_cas))
        ctx = self.tls.ssl_server_context()
        self.registry = TokenRegistry()
        self.identity = push(
            ManagedIdentityEndpoint(
                tenant_id=self.tenant_id, client_id=self.mi_client_id, registry=self.registry
            )
        )
        self.entra = push(
            EntraID(ctx, registry=self.registry, access_token_lifetime=self._access_token_lifetime)
        )
        self.entra.register_app(self.tenant_id, self.client_id, self.client_secret)
        vault_secrets = {
            SECRET_TENANT_ID: self.tenant_id,
            SECRET_CLIENT_ID: self.client_id,
            SECRET_CLIENT_SECRET: self.client_secret,
        }
        if self.app_user:
            vault_secrets[SECRET_REFRESH_TOKEN] = self.entra.issue_refresh_token(
                self.tenant_id, self.client_id
            )
        self.key_vault = push(
            KeyVault(ctx, tenant_id=self.tenant_id, registry=self.registry, secrets=vault_secrets)
        )
        self.partner_center = push(
            PartnerCenter(ctx, self.entra, customers=self._customers, latency=self._page_latency)
        )
        if isinstance(self._azurite_arg, Azurite):
            self.azurite = self._azurite_arg
            if self.azurite.tls is not self.tls:
                self.tls.trust(self.azurite.tls.ca_pem)
        elif self._azurite_arg:
            self.azurite = push(Azurite(self.tls))

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> dict[str, str]:
        """Settings for the job, as app settings would provide them in Azure (plus local trust)."""
        bundle = str(self.tls.bundle)
        env = {
            **self.identity.env,
            "KEY_VAULT_URL": self.key_vault.url,
            "PARTNER_CENTER_API_URL": self.partner_center.api_url,
            "PARTNER_CENTER_AUTHORITY_HOST": self.entra.url,
            "REQUESTS_CA_BUNDLE": bundle,
            "SSL_CERT_FILE": bundle,
            "CURL_CA_BUNDLE": bundle,  # the machine sets it too; keep every trust variable consistent
        }
        if self.azurite is not None:
            env["SNAPSHOT_STORAGE_ACCOUNT_URL"] = self.azurite.account_url
            env["SNAPSHOT_QUEUE_ACCOUNT_URL"] = self.azurite.queue_account_url
        return env

    def env_without_key_vault(self) -> dict[str, str]:
        """Same, but Partner Center credentials come straight from app settings instead of Key Vault."""
        env = {k: v for k, v in self.env.items() if k != "KEY_VAULT_URL"}
        env.update(
            PARTNER_CENTER_TENANT_ID=self.tenant_id,
            PARTNER_CENTER_CLIENT_ID=self.client_id,
            PARTNER_CENTER_CLIENT_SECRET=self.client_secret,
        )
        refresh_token = self.key_vault.get(SECRET_REFRESH_TOKEN)
        if refresh_token:
            env["PARTNER_CENTER_REFRESH_TOKEN"] = refresh_token
        return env

    @property
    def secret_values(self) -> list[str]:
        """Every credential string the stack knows of: none may ever appear in logs or snapshots."""
        values = [self.identity.header, *self.entra.issued_secrets, *self.registry.issued]
        return list(dict.fromkeys(values))

    def queue_client(self, name: str, **kwargs: Any) -> QueueClient:
        """Shared-key client of queue `name`, for tests and the demo (production uses managed identity);
        messages are handed over as sent (base64 text), not decoded."""
        from azure.storage.queue import QueueClient

        if self.azurite is None:
            raise RuntimeError("this DevStack runs without Azurite")
        kwargs.setdefault("connection_verify", str(self.tls.bundle))
        kwargs.setdefault("retry_total", 0)
        return QueueClient.from_connection_string(self.azurite.connection_string, name, **kwargs)

    def blob_service_client(self, **kwargs: Any) -> BlobServiceClient:
        """Shared-key client for test assertions (production uses managed identity)."""
        from azure.storage.blob import BlobServiceClient

        if self.azurite is None:
            raise RuntimeError("this DevStack runs without Azurite")
        kwargs.setdefault("connection_verify", str(self.tls.bundle))
        kwargs.setdefault("retry_total", 0)  # the SDK's default backoff turns one failure into minutes
        return BlobServiceClient.from_connection_string(self.azurite.connection_string, **kwargs)
