"""Unsigned JWTs and the registry the stand-ins share to decide which bearer tokens are valid.

Tokens are ``header.payload.`` with ``alg: none``: every consumer here (Azurite ``--oauth basic``, the
stand-ins) checks claims only, and an unsigned token can never be mistaken for a real one.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

# Azure stamps iat/nbf a few minutes in the past to absorb clock skew; do the same.
CLOCK_SKEW = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def mint_jwt(claims: Mapping[str, Any]) -> str:
    header = _b64url(json.dumps({"typ": "JWT", "alg": "none"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    return f"{header}.{payload}."


def decode_jwt(token: str) -> dict[str, Any]:
    """Claims of a JWT without checking any signature; ValueError if it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("JWT payload is not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not an object")
    return claims


def standard_claims(
    *,
    aud: str,
    iss: str,
    tenant_id: str,
    lifetime: int,
    oid: str | None = None,
    appid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": aud,
        "iss": iss,
        "iat": now - CLOCK_SKEW,
        "nbf": now - CLOCK_SKEW,
        "exp": now + lifetime,
        "tid": tenant_id,
        "oid": oid or str(uuid.uuid4()),
        "sub": oid or str(uuid.uuid4()),
        "uti": secrets.token_urlsafe(16),  # Entra's unique token id: lets tests tell tokens apart safely
        "ver": "1.0",
    }
    if appid:
        claims["appid"] = appid
    claims.update(extra)
    return claims


class TokenError(Exception):
    """A bearer token was refused; ``reason`` is one of malformed, unknown, expired, revoked, audience
    (the message then is the audience found)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class TokenRegistry:
    """Every token the stand-ins issued (so resources can tell ours from forged ones), and revocations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, dict[str, Any]] = {}
        self._revoked: set[str] = set()

    def issue(self, claims: Mapping[str, Any]) -> str:
        token = mint_jwt(claims)
        with self._lock:
            self._claims[token] = dict(claims)
        return token

    def validate(self, token: str, audience: str | tuple[str, ...]) -> dict[str, Any]:
        audiences = (audience,) if isinstance(audience, str) else audience
        try:
            claims = decode_jwt(token)
        except ValueError as exc:
            raise TokenError("malformed", str(exc)) from None
        with self._lock:
            known, revoked = token in self._claims, token in self._revoked
        if not known:
            raise TokenError("unknown", "token was not issued by this dev stack")
        if revoked:
            raise TokenError("revoked", "token has been revoked")
        if claims.get("exp", 0) < time.time():
            raise TokenError("expired", "token is expired")
        if claims.get("aud") not in audiences:
            raise TokenError("audience", str(claims.get("aud")))
        return claims

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def revoke_all(self, audience: str | None = None) -> None:
        with self._lock:
            self._revoked.update(t for t, c in self._claims.items() if audience in (None, c.get("aud")))

    @property
    def issued(self) -> list[str]:
        with self._lock:
            return list(self._claims)
