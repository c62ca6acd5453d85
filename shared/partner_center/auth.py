"""Partner Center access tokens from Entra ID through MSAL.

App-only (client credentials) by default; App+User ("secure application model") when a refresh token
is present. Entra ID answers every refresh-token exchange with a new refresh token, which is handed to
`on_refresh_token` at once so the stored one never ages out (90 days of inactivity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.hosts import is_known_authority
from shared.partner_center.errors import PartnerCenterError
from shared.redact import remember, scrubbed
from shared.settings import PARTNER_CENTER_SCOPE

if TYPE_CHECKING:
    import msal

    from shared.secrets import PartnerCenterCredentials

log = logging.getLogger(__name__)

# Entra ID error codes that need an operator, not a retry (AADSTS<code> in the description).
_REFRESH_TOKEN_EXPIRED = "700082"  # noqa: S105 - an error code: 90 days without use
_REFRESH_TOKEN_REVOKED = "50173"  # noqa: S105 - an error code: password reset, revoked sessions
_REPLACE_REFRESH_TOKEN = (
    "sign in again (with MFA) through the Partner Center consent flow and replace the refresh token in "  # noqa: S105
    "Key Vault secret 'partner-center-refresh-token' (PARTNER_CENTER_REFRESH_TOKEN without Key Vault)"
)


class PartnerCenterTokens:
    def __init__(
        self,
        credentials: PartnerCenterCredentials,
        authority_host: str,
        *,
        timeout: float = 60,
        on_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self._credentials = credentials
        self._authority = f"{authority_host.rstrip('/')}/{credentials.tenant_id}"
        self._timeout = timeout
        self._refresh_token = credentials.refresh_token
        self._on_refresh_token = on_refresh_token
        self._app: msal.ConfidentialClientApplication | None = None
        self._access_token: str | None = None
        remember(credentials.client_secret, credentials.refresh_token)

    @property
    def mode(self) -> str:
        return "app+user" if self._credentials.refresh_token else "app-only"

    def _msal(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            import msal

            self._app = msal.ConfidentialClientApplication(
                self._credentials.client_id,
                client_credential=self._credentials.client_secret,
                authority=self._authority,
                # Discovery asks login.microsoftonline.com about the authority: right for Entra ID's
                # own hosts, meaningless (and unreachable) for any other authority.
                instance_discovery=is_known_authority(self._authority),
                timeout=self._timeout,
            )
        return self._app

    def token(self) -> str:
        """A current access token (cached for the run). Raises PartnerCenterError when Entra ID refuses
        the request (`code` holds its error) or cannot be reached."""
        if self._access_token is None:
            self._access_token = self._acquire()
        return self._access_token

    def renew(self) -> str:
        """A new access token, after Partner Center rejected the cached one (401); raises as token()."""
        self._access_token = None
        if self._app is not None and not self._refresh_token:
            self._app.remove_tokens_for_client()
        return self.token()

    def _acquire(self) -> str:
        try:
            app = self._msal()  # discovers the authority: the first request to Entra ID
            if self._refresh_token:
                result = app.acquire_token_by_refresh_token(
                    self._refresh_token, scopes=[PARTNER_CENTER_SCOPE]
                )
            else:
                result = app.acquire_token_for_client(scopes=[PARTNER_CENTER_SCOPE])
        except ValueError as exc:  # MSAL raises ValueError when the authority cannot be discovered
            raise PartnerCenterError(
                f"token: Entra ID authority {self._authority} is unusable: {scrubbed(str(exc), 300)}"
            ) from None
        except OSError as exc:
            raise PartnerCenterError(
                f"token: Entra ID token request failed: {type(exc).__name__}", transient=True
            ) from None
        remember(result.get("access_token"), result.get("refresh_token"), result.get("id_token"))
        if "access_token" not in result:
            error = scrubbed(str(result.get("error", "unknown_error")), 100)
            description = scrubbed(str(result.get("error_description") or ""), 400)
            codes = {str(code) for code in result.get("error_codes") or ()}
            advice = ""
            if self._refresh_token and (
                _REFRESH_TOKEN_EXPIRED in codes or f"AADSTS{_REFRESH_TOKEN_EXPIRED}" in description
            ):
                advice = (
                    f"the refresh token expired (AADSTS700082, 90 days unused): {_REPLACE_REFRESH_TOKEN}. "
                )
            elif self._refresh_token and _REFRESH_TOKEN_REVOKED in codes:
                advice = f"the refresh token was revoked: {_REPLACE_REFRESH_TOKEN}. "
            elif error == "invalid_client":
                advice = (
                    "the client secret is wrong or expired: replace Key Vault secret "
                    "'partner-center-client-secret' (PARTNER_CENTER_CLIENT_SECRET without Key Vault). "
                )
            raise PartnerCenterError(
                f"token: {advice}Entra ID refused the {self.mode} token request: {error}: {description}",
                code=error,
            )
        new_refresh_token = result.get("refresh_token")
        if self._refresh_token and new_refresh_token and new_refresh_token != self._refresh_token:
            self._refresh_token = new_refresh_token
            if self._on_refresh_token is not None:
                self._on_refresh_token(new_refresh_token)
        access_token: str = result["access_token"]
        return access_token
