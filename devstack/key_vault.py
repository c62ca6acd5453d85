"""Key Vault secrets REST API (the subset azure-keyvault-secrets' SecretClient uses for get/set).

Like the real vault it answers an unauthenticated request with a 401 challenge naming the tenant and the
``https://vault.azure.net`` resource, then accepts only bearer tokens for that audience.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._http import Handler, LoopbackServer
from .tokens import TokenError, TokenRegistry

VAULT_RESOURCE = "https://vault.azure.net"
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_HELP_NOT_FOUND = "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"


@dataclass(frozen=True)
class SecretVersion:
    value: str
    version: str
    created: int
    content_type: str | None = None
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True)
class VaultOperation:
    method: str
    name: str | None
    version: str | None
    status: int  # 401 entries are the SDK's challenge round trips


class KeyVault(LoopbackServer):
    """HTTPS Key Vault stand-in. ``forbidden_get`` / ``forbidden_set``: secret names answered with 403."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        tenant_id: str | None = None,
        registry: TokenRegistry | None = None,
        secrets: Mapping[str, str] | None = None,
        forbidden_get: Iterable[str] = (),
        forbidden_set: Iterable[str] = (),
    ) -> None:
        super().__init__(_VaultHandler, ssl_context)
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.registry = registry or TokenRegistry()
        # Plain sets so tests can .add() names between runs; matched case-insensitively like secret names.
        self.forbidden_get: set[str] = set(forbidden_get)
        self.forbidden_set: set[str] = set(forbidden_set)
        # Secret name -> (GETs still to answer 429, Retry-After value sent with them).
        self.throttled_get: dict[str, tuple[int, str]] = {}
        self.operations: list[VaultOperation] = []
        self._versions: dict[str, list[SecretVersion]] = {}
        self._lock = threading.Lock()
        for name, value in (secrets or {}).items():
            self.set(name, value)

    @property
    def url(self) -> str:  # type: ignore[override]
        """Vault URL with the trailing slash, as the portal shows it."""
        return super().url + "/"

    def set(
        self, name: str, value: str, *, content_type: str | None = None, tags: Mapping[str, str] | None = None
    ) -> SecretVersion:
        item = SecretVersion(value, uuid.uuid4().hex, int(time.time()), content_type, tags)
        with self._lock:
            self._versions.setdefault(name.lower(), []).append(item)
        return item

    def get(self, name: str) -> str | None:
        """Latest value, or None (secret names are case-insensitive in Key Vault)."""
        with self._lock:
            versions = self._versions.get(name.lower())
            return versions[-1].value if versions else None

    def versions(self, name: str) -> list[SecretVersion]:
        with self._lock:
            return list(self._versions.get(name.lower(), []))

    def delete(self, name: str) -> None:
        with self._lock:
            self._versions.pop(name.lower(), None)

    def lookup(self, name: str, version: str | None) -> SecretVersion | None:
        with self._lock:
            versions = self._versions.get(name.lower(), [])
            if not version:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version == version.lower()), None)

    def bundle(self, name: str, item: SecretVersion) -> dict[str, Any]:
        body: dict[str, Any] = {
            "value": item.value,
            "id": f"{self.url}secrets/{name}/{item.version}",
            "attributes": {
                "enabled": True,
                "created": item.created,
                "updated": item.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": dict(item.tags or {}),
        }
        if item.content_type:
            body["contentType"] = item.content_type
        return body

    def _record(self, op: VaultOperation) -> None:
        with self._lock:
            self.operations.append(op)


def _listed(name: str, names: set[str]) -> bool:
    return name.lower() in {n.lower() for n in names}


class _VaultHandler(Handler):
    server: KeyVault

    def do_GET(self) -> None:
        self._handle(None)

    def do_PUT(self) -> None:
        self._handle(self.read_body())

    def do_DELETE(self) -> None:
        self._handle(None)

    def do_PATCH(self) -> None:
        self._handle(self.read_body())

    def _handle(self, body: bytes | None) -> None:
        parts = self.path_only.strip("/").split("/")
        name = parts[1] if len(parts) > 1 and parts[0] == "secrets" else None
        version = parts[2] if len(parts) > 2 and name else None
        status = self._dispatch(parts, name, version, body)
        self.server._record(VaultOperation(self.command, name, version or None, status))

    def _dispatch(self, parts: list[str], name: str | None, version: str | None, body: bytes | None) -> int:
        srv = self.server
        claims = self._authenticate()
        if claims is None:
            return 401
        if not self.query_value("api-version"):
            return self._fail(400, "BadParameter", "The 'api-version' query parameter is missing.")
        if name is None or len(parts) > 3 or not _NAME.match(name):
            return self._fail(
                400 if name else 404,
                "BadParameter" if name else "NotFound",
                "The request URI is not valid for this operation.",
            )
        if self.command == "GET":
            if self._throttled(name):
                return 429
            if _listed(name, srv.forbidden_get):
                return self._forbidden("get", claims)
            item = srv.lookup(name, version)
            if item is None:
                shown = f"{name}/{version}" if version else name
                return self._fail(
                    404,
                    "SecretNotFound",
                    f"A secret with (name/id) {shown} was not found in this "
                    "key vault. If you recently deleted this secret you may be able to recover it "
                    f"using the correct recovery command. {_HELP_NOT_FOUND}",
                )
            return self._ok(srv.bundle(name, item))
        if self.command == "PUT" and version is None:
            if _listed(name, srv.forbidden_set):
                return self._forbidden("set", claims)
            try:
                params = json.loads(body or b"")
                value = params["value"]
                if not isinstance(value, str):
                    raise TypeError(value)
            except (ValueError, KeyError, TypeError):
                return self._fail(400, "BadParameter", "Property 'value' is required and must be a string.")
            item = srv.set(name, value, content_type=params.get("contentType"), tags=params.get("tags"))
            return self._ok(srv.bundle(name, item))
        return self._fail(405, "MethodNotAllowed", f"{self.command} is not supported by this stand-in.")

    def _throttled(self, name: str) -> bool:
        """Answers 429 with the configured Retry-After while `throttled_get` says so for `name`."""
        srv = self.server
        with srv._lock:
            times, retry_after = srv.throttled_get.get(name.lower(), (0, ""))
            if times:
                srv.throttled_get[name.lower()] = (times - 1, retry_after)
        if times:
            message = "Request was not processed because too many requests were received."
            self._send(
                429, {"error": {"code": "Throttled", "message": message}}, {"Retry-After": retry_after}
            )
        return bool(times)

    def _authenticate(self) -> dict[str, Any] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
            return None
        try:
            return self.server.registry.validate(auth[7:].strip(), (VAULT_RESOURCE, VAULT_RESOURCE + "/"))
        except TokenError as exc:
            messages = {
                "audience": f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {exc}.",
                "expired": "AKV10032: Token expired.",
            }
            self._challenge(messages.get(exc.reason, f"AKV10001: Invalid token ({exc.reason})."))
            return None

    def _challenge(self, message: str) -> None:
        challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.server.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        self._send(
            401, {"error": {"code": "Unauthorized", "message": message}}, {"WWW-Authenticate": challenge}
        )

    def _forbidden(self, permission: str, claims: dict[str, Any]) -> int:
        who = f"appid={claims.get('appid')};oid={claims.get('oid')};iss={claims.get('iss')}"
        message = (
            f"The user, group or application '{who}' does not have secrets {permission} permission on key "
            f"vault '{self.server.url};location=local'. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125287"
        )
        self._send(
            403, {"error": {"code": "Forbidden", "message": message, "innererror": {"code": "AccessDenied"}}}
        )
        return 403

    def _fail(self, status: int, code: str, message: str) -> int:
        self._send(status, {"error": {"code": code, "message": message}})
        return status

    def _ok(self, payload: dict[str, Any]) -> int:
        self._send(200, payload)
        return 200

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        base = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-keyvault-service-version": "1.9.0.0"}
        self.send_json(status, payload, {**base, **(headers or {})})
