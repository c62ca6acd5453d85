"""Microsoft Entra ID v2 token endpoint, enough for MSAL's ConfidentialClientApplication.

Serves OIDC discovery and ``/oauth2/v2.0/token`` for ``client_credentials`` and ``refresh_token`` (the
Partner Center "secure application model"). Every exchange of a refresh token returns a new one.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from ._http import Handler, LoopbackServer
from .tokens import TokenError, TokenRegistry, mint_jwt, standard_claims

PC_RESOURCE = "https://api.partnercenter.microsoft.com"
PC_SCOPE = f"{PC_RESOURCE}/.default"
PC_USER_SCOPE = f"{PC_RESOURCE}/user_impersonation"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600  # sliding inactivity window of Entra refresh tokens


@dataclass
class App:
    tenant_id: str
    client_id: str
    client_secret: str
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class RefreshGrant:
    token: str
    tenant_id: str
    client_id: str
    user_oid: str
    username: str
    expires_at: float
    revoked: str | None = None  # None, "revoked" or "expired"


@dataclass(frozen=True)
class TokenRequest:
    tenant_id: str
    grant_type: str | None
    client_id: str | None
    scope: str | None
    status: int
    error: str | None = None


class EntraID(LoopbackServer):
    """HTTPS stand-in for ``https://login.microsoftonline.com``; use ``url`` as MSAL's authority host."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        registry: TokenRegistry | None = None,
        access_token_lifetime: int = 3600,
        refresh_token_lifetime: int = REFRESH_TOKEN_LIFETIME,
        revoke_used_refresh_tokens: bool = False,
    ) -> None:
        super().__init__(_EntraHandler, ssl_context)
        self.registry = registry or TokenRegistry()
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        # Real Entra leaves a used refresh token valid; set True to prove a client persists the rotated one.
        self.revoke_used_refresh_tokens = revoke_used_refresh_tokens
        # A badly configured front end echoing the request (form body included) in error descriptions.
        self.echo_request_in_errors = False
        self.apps: dict[tuple[str, str], App] = {}
        self.token_requests: list[TokenRequest] = []
        self._grants: dict[str, RefreshGrant] = {}
        self._issued_refresh_tokens: list[str] = []
        self._id_tokens: list[str] = []
        self._access_tokens: list[str] = []
        self._lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------------------------
    def register_app(self, tenant_id: str, client_id: str, client_secret: str) -> App:
        app = App(tenant_id, client_id, client_secret)
        self.apps[(tenant_id.lower(), client_id.lower())] = app
        return app

    def authority(self, tenant_id: str) -> str:
        return f"{self.url}/{tenant_id}"

    def issue_refresh_token(
        self,
        tenant_id: str,
        client_id: str,
        *,
        username: str = "admin@partner.onmicrosoft.com",
        user_oid: str | None = None,
    ) -> str:
        """The refresh token a partner admin would obtain once, interactively with MFA."""
        grant = RefreshGrant(
            token=_opaque_refresh_token(),
            tenant_id=tenant_id,
            client_id=client_id,
            user_oid=user_oid or str(uuid.uuid4()),
            username=username,
            expires_at=time.time() + self.refresh_token_lifetime,
        )
        with self._lock:
            self._grants[grant.token] = grant
            self._issued_refresh_tokens.append(grant.token)
        return grant.token

    def revoke_refresh_token(self, token: str, reason: str = "revoked") -> None:
        """``reason`` "expired" answers like 90 days of inactivity (AADSTS700082), else AADSTS50173."""
        with self._lock:
            self._grants[token].revoked = reason

    # -- state for tests -----------------------------------------------------------------------------------
    @property
    def current_refresh_token(self) -> str | None:
        with self._lock:
            return self._issued_refresh_tokens[-1] if self._issued_refresh_tokens else None

    @property
    def refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued_refresh_tokens)

    @property
    def grant_counts(self) -> Counter[str]:
        """Token requests per grant_type, failed ones included."""
        with self._lock:
            return Counter(r.grant_type or "" for r in self.token_requests)

    @property
    def issued_secrets(self) -> list[str]:
        """Every credential this endpoint handed out (for log-leak tests)."""
        with self._lock:
            minted = [*self._issued_refresh_tokens, *self._access_tokens, *self._id_tokens]
        return [app.client_secret for app in self.apps.values()] + minted

    def validate_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a valid Partner Center token issued here; TokenError otherwise."""
        claims = self.registry.validate(token, PC_RESOURCE)
        if not str(claims.get("iss", "")).startswith("https://sts.windows.net/"):
            raise TokenError("unknown", "token not issued by Entra")
        return claims

    def revoke_access_token(self, token: str) -> None:
        self.registry.revoke(token)

    def issue_access_token(self, tenant_id: str, client_id: str) -> str:
        """An app-only Partner Center token without a round trip (tests and benchmarks that skip MSAL)."""
        return self._access_token(self.apps[(tenant_id.lower(), client_id.lower())], None)

    # -- token minting (called by the handler) -------------------------------------------------------------
    def _access_token(self, app: App, grant: RefreshGrant | None) -> str:
        extra: dict[str, Any] = {"idtyp": "app", "roles": []}
        oid = app.service_principal_id
        if grant is not None:
            extra = {
                "idtyp": "user",
                "scp": "user_impersonation",
                "upn": grant.username,
                "name": grant.username,
            }
            oid = grant.user_oid
        claims = standard_claims(
            aud=PC_RESOURCE,
            iss=f"https://sts.windows.net/{app.tenant_id}/",
            tenant_id=app.tenant_id,
            lifetime=self.access_token_lifetime,
            oid=oid,
            appid=app.client_id,
            **extra,
        )
        token = self.registry.issue(claims)
        with self._lock:
            self._access_tokens.append(token)
        return token

    def _rotate(self, grant: RefreshGrant) -> RefreshGrant:
        new = self.issue_refresh_token(
            grant.tenant_id, grant.client_id, username=grant.username, user_oid=grant.user_oid
        )
        with self._lock:
            if self.revoke_used_refresh_tokens:
                grant.revoked = "revoked"
            return self._grants[new]

    def _id_token(self, app: App, grant: RefreshGrant) -> str:
        now = int(time.time())
        token = mint_jwt(
            {
                "aud": app.client_id,
                "iss": f"{self.url}/{app.tenant_id}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "tid": app.tenant_id,
                "oid": grant.user_oid,
                "sub": grant.user_oid,
                "preferred_username": grant.username,
                "name": grant.username,
                "ver": "2.0",
            }
        )
        with self._lock:
            self._id_tokens.append(token)
        return token

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.token_requests.append(request)


def _opaque_refresh_token() -> str:
    # Shaped like Entra's ("1.A" + base64url blob), long and full of characters that need escaping in logs.
    return "1.AQ" + secrets.token_urlsafe(180)


def _b64url_json(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message


class _EntraHandler(Handler):
    server: EntraID

    def do_GET(self) -> None:
        parts = self.path_only.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant = parts[0]
            if not any(t == tenant.lower() for t, _ in self.server.apps):
                return self._error(_OAuthError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
            return self.send_json(200, self._discovery(tenant))
        self._error(_OAuthError(404, "invalid_request", 90019, "No such endpoint."))

    def do_POST(self) -> None:
        body = self.read_body().decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        parts = self.path_only.strip("/").split("/")
        tenant = parts[0] if parts else ""
        if parts[1:] != ["oauth2", "v2.0", "token"]:
            return self._error(_OAuthError(404, "invalid_request", 90019, "No such endpoint."))
        grant_type, client_id, scope = form.get("grant_type"), form.get("client_id"), form.get("scope")
        try:
            payload = self._token(tenant, form)
        except _OAuthError as exc:
            self.server._record(TokenRequest(tenant, grant_type, client_id, scope, exc.status, exc.error))
            if self.server.echo_request_in_errors:
                exc.message = f"Request: {body} {exc.message}"
            return self._error(exc)
        self.server._record(TokenRequest(tenant, grant_type, client_id, scope, 200))
        self.send_json(200, payload, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _token(self, tenant: str, form: dict[str, str]) -> dict[str, Any]:
        srv = self.server
        if not any(t == tenant.lower() for t, _ in srv.apps):
            raise _OAuthError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure "
                "you have the correct tenant ID and are signing into the correct cloud.",
            )
        client_id, client_secret = self._client_credentials(form)
        app = srv.apps.get((tenant.lower(), (client_id or "").lower()))
        if app is None:
            raise _OAuthError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if client_secret is None:
            raise _OAuthError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.",
            )
        if not secrets.compare_digest(client_secret.encode(), app.client_secret.encode()):
            raise _OAuthError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret "
                "being sent in the request is the client secret value, not the client secret ID, "
                f"for a secret added to app '{app.client_id}'.",
            )
        grant_type = form.get("grant_type")
        scopes = set((form.get("scope") or "").split())
        if grant_type == "client_credentials":
            if scopes != {PC_SCOPE}:
                raise _OAuthError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope "
                    f"{form.get('scope')} is not valid. Client credential flows must have a scope "
                    "value with /.default suffixed to the resource identifier (application ID URI).",
                )
            return self._tokens(app, None, form)
        if grant_type == "refresh_token":
            resource_scopes = scopes - RESERVED_SCOPES
            if not resource_scopes or not resource_scopes <= {PC_SCOPE, PC_USER_SCOPE}:
                raise _OAuthError(
                    400,
                    "invalid_scope",
                    70011,
                    "The provided request must include a 'scope' "
                    "input parameter. The provided value for the input parameter 'scope' is not "
                    "valid.",
                )
            grant = self._redeemable_grant(app, form.get("refresh_token") or "")
            return self._tokens(app, srv._rotate(grant), form, scopes)
        raise _OAuthError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return unquote(user), unquote(password)
            except ValueError:
                pass
        return form.get("client_id"), form.get("client_secret")

    def _redeemable_grant(self, app: App, token: str) -> RefreshGrant:
        with self.server._lock:
            grant = self.server._grants.get(token)
        if grant is None:
            raise _OAuthError(
                400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        if (
            grant.client_id.lower() != app.client_id.lower()
            or grant.tenant_id.lower() != app.tenant_id.lower()
        ):
            raise _OAuthError(400, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
        if grant.revoked == "expired" or grant.expires_at < time.time():
            raise _OAuthError(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was inactive for 90.00:00:00.",
            )
        if grant.revoked:
            raise _OAuthError(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being "
                "revoked, a fresh auth token is needed. The user might have changed or reset "
                "their password.",
            )
        return grant

    def _tokens(
        self, app: App, grant: RefreshGrant | None, form: dict[str, str], scopes: set[str] | None = None
    ) -> dict[str, Any]:
        srv = self.server
        lifetime = srv.access_token_lifetime
        payload: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": srv._access_token(app, grant),
        }
        if grant is not None:
            payload["scope"] = PC_USER_SCOPE
            payload["refresh_token"] = grant.token
            if "openid" in (scopes or ()):
                payload["id_token"] = srv._id_token(app, grant)
            if form.get("client_info") == "1":
                payload["client_info"] = _b64url_json({"uid": grant.user_oid, "utid": app.tenant_id})
        return payload

    def _discovery(self, tenant: str) -> dict[str, Any]:
        base = f"{self.server.url}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.server.url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def _error(self, exc: _OAuthError) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = str(uuid.uuid4())
        correlation_id = self.headers.get("client-request-id") or str(uuid.uuid4())
        self.send_json(
            exc.status,
            {
                "error": exc.error,
                "error_description": f"AADSTS{exc.code}: {exc.message} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {now}",
                "error_codes": [exc.code],
                "timestamp": now,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{self.server.url}/error?code={exc.code}",
            },
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )
