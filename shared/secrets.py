"""Partner Center app credentials: from Key Vault (managed identity) or from the environment.

Values never appear in messages: errors name the secret and the vault only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.errors import SecretsError as SecretsError  # re-exported: callers catch it here
from shared.hosts import is_loopback

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.secrets import SecretClient

TENANT_ID = "partner-center-tenant-id"
CLIENT_ID = "partner-center-client-id"
CLIENT_SECRET = "partner-center-client-secret"  # noqa: S105 - a secret name
REFRESH_TOKEN = "partner-center-refresh-token"  # noqa: S105 - a secret name

# Key Vault secret name -> environment variable used when KEY_VAULT_URL is not set.
ENV_NAMES = {
    TENANT_ID: "PARTNER_CENTER_TENANT_ID",
    CLIENT_ID: "PARTNER_CENTER_CLIENT_ID",
    CLIENT_SECRET: "PARTNER_CENTER_CLIENT_SECRET",
    REFRESH_TOKEN: "PARTNER_CENTER_REFRESH_TOKEN",
}


@dataclass(frozen=True)
class PartnerCenterCredentials:
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)


class CredentialStore:
    """Reads the credentials and writes back a rotated refresh token."""

    def load(self) -> PartnerCenterCredentials:
        """The app credentials. Raises SecretsError naming what is missing or unreadable."""
        raise NotImplementedError

    def save_refresh_token(self, value: str) -> bool:
        """Persist a new refresh token; False when this store cannot keep it. Raises SecretsError when
        the store refuses the write."""
        raise NotImplementedError


class EnvironmentCredentialStore(CredentialStore):
    """Plain app settings (or Key Vault references resolved by the platform into app settings)."""

    def load(self) -> PartnerCenterCredentials:
        values = {name: os.environ.get(env, "").strip() for name, env in ENV_NAMES.items()}
        missing = [ENV_NAMES[n] for n in (TENANT_ID, CLIENT_ID, CLIENT_SECRET) if not values[n]]
        if missing:
            raise SecretsError(f"missing Partner Center credentials in the environment: {', '.join(missing)}")
        return PartnerCenterCredentials(
            values[TENANT_ID], values[CLIENT_ID], values[CLIENT_SECRET], values[REFRESH_TOKEN] or None
        )

    def save_refresh_token(self, value: str) -> bool:
        return False  # an app setting cannot be rewritten from inside the app


class KeyVaultCredentialStore(CredentialStore):
    def __init__(self, vault_url: str, credential: TokenCredential) -> None:
        self.vault_url = vault_url
        self._credential = credential
        self._client: SecretClient | None = None

    def _secrets(self) -> SecretClient:
        if self._client is None:
            from azure.keyvault.secrets import SecretClient

            # The challenge names resource https://vault.azure.net; a vault outside *.vault.azure.net
            # (a loopback stand-in) cannot match it, so verification is skipped only there.
            self._client = SecretClient(
                self.vault_url,
                self._credential,
                verify_challenge_resource=not is_loopback(self.vault_url),
                retry_total=3,
            )
        return self._client

    def _get(self, name: str, *, optional: bool = False) -> str | None:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

        try:
            value = self._secrets().get_secret(name).value
        except ResourceNotFoundError:
            if optional:
                return None
            raise SecretsError(f"secret {name!r} not found in Key Vault {self.vault_url}") from None
        except ClientAuthenticationError as exc:
            raise SecretsError(
                f"could not authenticate to Key Vault {self.vault_url} for secret {name!r}: {_short(exc)}"
            ) from None
        except HttpResponseError as exc:
            raise SecretsError(_http_problem("read", name, self.vault_url, exc)) from None
        if not value:
            if optional:
                return None
            raise SecretsError(f"secret {name!r} in Key Vault {self.vault_url} is empty")
        return value

    def load(self) -> PartnerCenterCredentials:
        return PartnerCenterCredentials(
            tenant_id=self._get(TENANT_ID) or "",
            client_id=self._get(CLIENT_ID) or "",
            client_secret=self._get(CLIENT_SECRET) or "",
            refresh_token=self._get(REFRESH_TOKEN, optional=True),
        )

    def save_refresh_token(self, value: str) -> bool:
        from azure.core.exceptions import HttpResponseError

        try:
            self._secrets().set_secret(REFRESH_TOKEN, value, content_type="refresh-token")
        except HttpResponseError as exc:
            raise SecretsError(_http_problem("write", REFRESH_TOKEN, self.vault_url, exc)) from None
        return True


def _http_problem(verb: str, name: str, vault_url: str, exc: object) -> str:
    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None)
    hint = " (the identity lacks the Key Vault role for it)" if status == 403 else ""
    return (
        f"could not {verb} secret {name!r} in Key Vault {vault_url}: HTTP {status} {code or ''}".rstrip()
        + hint
    )


def _short(exc: Exception) -> str:
    # azure-identity messages describe the failing credential, not secrets; keep the first line only.
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def credential_store(
    vault_url: str | None, credential_factory: Callable[[], TokenCredential]
) -> CredentialStore:
    """Key Vault when `vault_url` is set (the credential is made only then), else the environment."""
    if vault_url:
        return KeyVaultCredentialStore(vault_url, credential_factory())
    return EnvironmentCredentialStore()
