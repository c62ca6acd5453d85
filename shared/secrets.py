"""Partner Center app credentials, and the two notification secrets: from Key Vault (managed identity) or
from the environment.

Values never appear in messages: errors name the secret and the vault only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import SecretsError as SecretsError  # re-exported: callers catch it here
from shared.hosts import is_loopback
from shared.redact import remember, scrubbed

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import PipelineResponse
    from azure.core.pipeline.policies import RetryPolicy
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
# Notifications (shared/notify), both optional: no Teams URL, no cards; the signing secret is required
# when WEBHOOK_URLS is set.
TEAMS_WORKFLOW_URL = "teams-workflow-url"
WEBHOOK_SIGNING_SECRET = "webhook-signing-secret"  # noqa: S105 - a secret name
NOTIFICATION_ENV_NAMES = {
    TEAMS_WORKFLOW_URL: "TEAMS_WORKFLOW_URL",
    WEBHOOK_SIGNING_SECRET: "WEBHOOK_SIGNING_SECRET",
}


@dataclass(frozen=True)
class PartnerCenterCredentials:
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NotificationSecrets:
    """The Teams workflow URL (it carries its signature) and the webhook signing secret; None: not set."""

    teams_workflow_url: str | None = field(default=None, repr=False)
    webhook_signing_secret: str | None = field(default=None, repr=False)


class CredentialStore:
    """Reads the credentials and writes back a rotated refresh token."""

    def notification_secrets(self, *, webhooks: bool) -> NotificationSecrets:
        """The notification secrets, checked (an https URL, a whsec_ secret) and registered for scrubbing.
        `webhooks`: WEBHOOK_URLS is set, so the signing secret is required. Raises SecretsError naming the
        secret (and the vault), never a value."""
        raise NotImplementedError

    def load(self) -> PartnerCenterCredentials:
        """The app credentials. Raises SecretsError naming what is missing or unreadable."""
        raise NotImplementedError

    def save_refresh_token(self, value: str) -> bool:
        """Persist a new refresh token; False when this store cannot keep it. Raises SecretsError when
        the store refuses the write."""
        raise NotImplementedError


class EnvironmentCredentialStore(CredentialStore):
    """Plain app settings (or Key Vault references resolved by the platform into app settings), handed in by
    the settings catalogue (shared.settings.environment_secrets): name → value."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._environment = environment

    def __repr__(self) -> str:
        return "EnvironmentCredentialStore()"  # never the values

    def load(self) -> PartnerCenterCredentials:
        values = {name: self._environment.get(env, "") for name, env in ENV_NAMES.items()}
        missing = [ENV_NAMES[n] for n in (TENANT_ID, CLIENT_ID, CLIENT_SECRET) if not values[n]]
        if missing:
            raise SecretsError(f"missing Partner Center credentials in the environment: {', '.join(missing)}")
        return PartnerCenterCredentials(
            values[TENANT_ID], values[CLIENT_ID], values[CLIENT_SECRET], values[REFRESH_TOKEN] or None
        )

    def save_refresh_token(self, value: str) -> bool:
        return False  # an app setting cannot be rewritten from inside the app

    def notification_secrets(self, *, webhooks: bool) -> NotificationSecrets:
        teams, signing = (self._environment.get(env) or None for env in NOTIFICATION_ENV_NAMES.values())
        return _checked(teams, signing, webhooks, NOTIFICATION_ENV_NAMES)


class KeyVaultCredentialStore(CredentialStore):
    def __init__(self, vault_url: str, credential: TokenCredential, *, max_retry_after: float = 120) -> None:
        self.vault_url = vault_url
        self._credential = credential
        self._max_retry_after = max_retry_after
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
                retry_policy=_capped_retry_policy(self._max_retry_after),
            )
        return self._client

    def _get(self, name: str, *, optional: bool = False) -> str | None:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )

        try:
            value = self._secrets().get_secret(name).value
        except ResourceNotFoundError:
            if optional:
                return None
            raise SecretsError(
                f"Key Vault: secret {name!r} not found in Key Vault {self.vault_url}"
            ) from None
        except ClientAuthenticationError as exc:
            raise SecretsError(
                f"Key Vault: could not authenticate to Key Vault {self.vault_url} for secret {name!r}: "
                + _short(exc)
            ) from None
        except HttpResponseError as exc:
            raise SecretsError(_http_problem("read", name, self.vault_url, exc)) from None
        except AzureError as exc:  # no answer: refused, reset, timed out
            raise SecretsError(
                f"Key Vault: no answer from Key Vault {self.vault_url} for secret {name!r} "
                f"({type(exc).__name__})"
            ) from None
        if not value:
            if optional:
                return None
            raise SecretsError(f"Key Vault: secret {name!r} in Key Vault {self.vault_url} is empty")
        return value

    def load(self) -> PartnerCenterCredentials:
        return PartnerCenterCredentials(
            tenant_id=self._get(TENANT_ID) or "",
            client_id=self._get(CLIENT_ID) or "",
            client_secret=self._get(CLIENT_SECRET) or "",
            refresh_token=self._get(REFRESH_TOKEN, optional=True),
        )

    def notification_secrets(self, *, webhooks: bool) -> NotificationSecrets:
        teams = self._get(TEAMS_WORKFLOW_URL, optional=True)
        signing = self._get(WEBHOOK_SIGNING_SECRET, optional=True) if webhooks else None
        names = {
            name: f"Key Vault: secret {name!r} in Key Vault {self.vault_url}"
            for name in NOTIFICATION_ENV_NAMES
        }
        return _checked(teams, signing, webhooks, names)

    def save_refresh_token(self, value: str) -> bool:
        from azure.core.exceptions import HttpResponseError

        try:
            self._secrets().set_secret(REFRESH_TOKEN, value, content_type="refresh-token")
        except HttpResponseError as exc:
            raise SecretsError(_http_problem("write", REFRESH_TOKEN, self.vault_url, exc)) from None
        return True


def _checked(
    teams: str | None, signing: str | None, webhooks: bool, names: dict[str, str]
) -> NotificationSecrets:
    """The secrets when they are usable, registered for scrubbing; SecretsError naming the one that is not
    (`names`: how to name each secret in a message)."""
    from shared.hosts import endpoint_problem
    from shared.signing_secret import secret_problem

    remember(teams, signing)
    if teams is not None and (problem := endpoint_problem(teams)) is not None:
        raise SecretsError(f"{names[TEAMS_WORKFLOW_URL]} {problem}")
    if signing is None and webhooks:
        raise SecretsError(
            f"{names[WEBHOOK_SIGNING_SECRET]} is required when WEBHOOK_URLS is set (not found)"
        )
    if signing is not None and (problem := secret_problem(signing)) is not None:
        raise SecretsError(f"{names[WEBHOOK_SIGNING_SECRET]} {problem}")
    return NotificationSecrets(teams, signing if webhooks else None)


def _http_problem(verb: str, name: str, vault_url: str, exc: object) -> str:
    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None)
    hint = " (the identity lacks the Key Vault role for it)" if status == 403 else ""
    return (
        f"Key Vault: could not {verb} secret {name!r} in Key Vault {vault_url}: HTTP {status} "
        f"{scrubbed(str(code or ''), 100)}".rstrip()
        + hint
    )


def _short(exc: Exception) -> str:
    # azure-identity messages describe the failing credential; scrubbed, first line only all the same.
    return scrubbed(str(exc), 300) or type(exc).__name__


def _capped_retry_policy(max_retry_after: float) -> RetryPolicy[Any, Any]:
    """azure-core's retries, but a Retry-After longer than `max_retry_after` is capped and one that is not
    a number of seconds or an HTTP date (`soon`, `nan`) falls back to the normal backoff."""
    from azure.core.pipeline.policies import RetryPolicy

    class CappedRetryPolicy(RetryPolicy[Any, Any]):
        def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
            try:
                seconds = super().get_retry_after(response)
            except (ValueError, TypeError, OverflowError):
                return None
            if seconds is None or math.isnan(seconds):
                return None
            return min(max(seconds, 0.0), max_retry_after)

    return CappedRetryPolicy(retry_total=3)


def credential_store(
    vault_url: str | None,
    credential_factory: Callable[[], TokenCredential],
    *,
    environment: Mapping[str, str],
    max_retry_after: float = 120,
) -> CredentialStore:
    """Key Vault when `vault_url` is set (the credential is made only then), else `environment` (the secret
    app settings, shared.settings.environment_secrets); Key Vault's Retry-After is capped at
    `max_retry_after` seconds."""
    if vault_url:
        return KeyVaultCredentialStore(vault_url, credential_factory(), max_retry_after=max_retry_after)
    return EnvironmentCredentialStore(environment)
