"""App Service / Functions managed-identity endpoint (the one IDENTITY_ENDPOINT + IDENTITY_HEADER point at).

Plain HTTP on loopback, exactly as on App Service. Errors use App Service's {"statusCode", "message"} shape.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from ._http import Handler, LoopbackServer
from .tokens import TokenRegistry, standard_claims

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"


@dataclass(frozen=True)
class IdentityRequest:
    resource: str | None
    client_id: str | None
    status: int


class ManagedIdentityEndpoint(LoopbackServer):
    """Issues unsigned JWTs with ``aud`` = the requested resource for one managed identity.

    ``client_id``: when set, the identity is user-assigned and requests must name it with ``client_id``
    (missing or different → 400), which proves the caller passes AZURE_CLIENT_ID through.
    """

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        principal_id: str | None = None,
        token_lifetime: int = 24 * 3600,
        registry: TokenRegistry | None = None,
    ) -> None:
        super().__init__(_IdentityHandler)
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.client_id = client_id
        # The app id stamped into tokens; a system-assigned identity has one too, just not one you choose.
        self.identity_client_id = client_id or str(uuid.uuid4())
        self.principal_id = principal_id or str(uuid.uuid4())
        self.token_lifetime = token_lifetime
        self.registry = registry or TokenRegistry()
        self.header = secrets.token_hex(16)
        self.requests: list[IdentityRequest] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def env(self) -> dict[str, str]:
        env = {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}
        if self.client_id:
            env["AZURE_CLIENT_ID"] = self.client_id
        return env

    def _record(self, resource: str | None, client_id: str | None, status: int) -> None:
        with self._lock:
            self.requests.append(IdentityRequest(resource, client_id, status))


class _IdentityHandler(Handler):
    server: ManagedIdentityEndpoint

    def _fail(self, status: int, message: str, resource: str | None, client_id: str | None) -> None:
        self.server._record(resource, client_id, status)
        self.send_json(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})

    def do_GET(self) -> None:
        srv = self.server
        resource, client_id = self.query_value("resource"), self.query_value("client_id")
        if self.path_only != TOKEN_PATH:
            return self._fail(404, "Not found", resource, client_id)
        header = self.headers.get("X-IDENTITY-HEADER")
        if header is None:
            return self._fail(
                400, "Required metadata header X-IDENTITY-HEADER not specified", resource, client_id
            )
        if not secrets.compare_digest(header, srv.header):
            return self._fail(401, "Unauthorized: X-IDENTITY-HEADER does not match", resource, client_id)
        if self.query_value("api-version") != API_VERSION:
            return self._fail(400, f"api-version must be {API_VERSION}", resource, client_id)
        if not resource:
            return self._fail(400, "Required query parameter resource not specified", resource, client_id)
        if srv.client_id is not None and client_id != srv.client_id:
            # Only a user-assigned identity exists: no client_id (system-assigned) or another id both fail.
            return self._fail(400, "Unable to load the proper Managed Identity.", resource, client_id)

        expires_on = int(time.time()) + srv.token_lifetime
        appid = srv.identity_client_id
        claims = standard_claims(
            aud=resource,
            iss=f"https://sts.windows.net/{srv.tenant_id}/",
            tenant_id=srv.tenant_id,
            lifetime=srv.token_lifetime,
            oid=srv.principal_id,
            appid=appid,
            idtyp="app",
        )
        claims["exp"] = expires_on
        token = srv.registry.issue(claims)
        srv._record(resource, client_id, 200)
        self.send_json(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": appid,
            },
        )
