"""Query and route parameters: unknown names, repeats, lengths and odd characters are rejected (400),
naming the parameter, before anything is read from storage."""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from shared.api.errors import ApiError
from shared.api.errors import bad_parameter as bad_parameter
from shared.customer_id import route_id
from shared.text import fold

MAX_Q = 100
MAX_DOMAIN = 253  # the longest DNS name
MAX_CONTINUATION = 512
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # not \d: it matches every script's digits
_TOP = re.compile(r"[0-9]{1,6}")
# Always used with fullmatch: `$` would also accept a trailing newline.
# The Functions host reads the key from `code` and hands it on to the function: never an unknown parameter.
HOST_PARAMETERS = frozenset({"code"})


def query(req: func.HttpRequest, allowed: frozenset[str]) -> dict[str, str]:
    """The request's query parameters (names lower-cased) minus the host's, after rejecting unknown
    and repeated names. Repeats are only visible in the URL; the host joins or drops them in `params`."""
    names = [name.lower() for name, _ in parse_qsl(urlsplit(req.url).query, keep_blank_values=True)]
    values = {name.lower(): value for name, value in req.params.items()}
    for name in [*names, *values]:
        if name in HOST_PARAMETERS:
            continue
        if name not in allowed:
            shown = _shown(name)
            choices = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown query parameter {shown!r} (allowed: {choices})",
                parameter=shown,
            )
        if names.count(name) > 1:
            raise bad_parameter(name, f"{name} is given more than once")
    return {name: value for name, value in values.items() if name not in HOST_PARAMETERS}


def text(params: dict[str, str], name: str, max_length: int) -> str | None:
    """A free-text parameter: 1..max_length characters, no control characters."""
    value = params.get(name)
    if value is None:
        return None
    if not value.strip():
        raise bad_parameter(name, f"{name} must not be empty")
    if len(value) > max_length:
        raise bad_parameter(name, f"{name} is longer than {max_length} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in value):
        raise bad_parameter(name, f"{name} contains control or unassigned characters")
    return value.strip()


def domain(params: dict[str, str]) -> str | None:
    value = text(params, "domain", MAX_DOMAIN)
    if value is not None and (any(ch.isspace() for ch in value) or "/" in value or "@" in value):
        raise bad_parameter("domain", "domain must be a domain name, e.g. contoso.onmicrosoft.com")
    return value


def top(params: dict[str, str], default: int, maximum: int) -> int:
    value = params.get("top")
    if value is None:
        return default
    if not _TOP.fullmatch(value) or not 1 <= int(value) <= maximum:
        raise bad_parameter("top", f"top must be a whole number from 1 to {maximum}")
    return int(value)


def customer_id(req: func.HttpRequest) -> str:
    """The route's customer id as the change records key it (shared.customer_id: braces and case do not
    make another tenant); 400 for anything but a GUID."""
    key = route_id(req.route_params.get("customerId", ""))
    if key is None:
        raise ApiError(
            400,
            "invalid_customer_id",
            "customerId must be a customer (tenant) id: a GUID like 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            parameter="customerId",
        )
    return key


def snapshot_date(req: func.HttpRequest) -> date:
    value = req.route_params.get("date", "")
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400, "invalid_date", "date must be a UTC calendar date, YYYY-MM-DD", parameter="date"
        ) from None


@dataclass(frozen=True)
class CustomerQuery:
    """What GET /api/customers asks for, validated: a search (q) or a domain, or neither; a page size;
    where to continue. `whole_document`: no filter and no paging asked for (the snapshot as stored)."""

    q: str | None
    domain: str | None
    top: int
    paged: bool  # top= or continuation= given
    continuation: dict[str, Any] | None

    @property
    def whole_document(self) -> bool:
        return self.q is None and self.domain is None and not self.paged

    @property
    def criteria(self) -> dict[str, str]:
        """The filter, as the answer's `query` echoes it."""
        if self.domain is not None:
            return {"domain": self.domain}
        return {} if self.q is None else {"q": self.q}

    def offset(self, snapshot_key: str) -> int:
        """Where this page starts in the snapshot `snapshot_key` names: 0 without continuation; 400 for
        a token we did not make, 409 when a newer snapshot was published since the listing started."""
        if self.continuation is None:
            return 0
        offset = self.continuation["o"]
        if type(offset) is not int or offset < 0:  # not bool, not float
            raise invalid_continuation()
        if self.continuation["s"] != snapshot_key:
            raise ApiError(
                409,
                "snapshot_changed",
                "a newer snapshot was published since this listing started; start again without continuation",
            )
        return offset


def customer_query(params: dict[str, str], default_top: int, max_top: int) -> CustomerQuery:
    """The query of GET /api/customers; 400 naming the parameter for anything not allowed."""
    q = text(params, "q", MAX_Q)
    if q is not None and not fold(q).strip():
        raise bad_parameter("q", "q has nothing to search for once accents are set aside")
    domain_name = domain(params)
    if q is not None and domain_name is not None:
        raise bad_parameter("q", "use either q or domain, not both")
    return CustomerQuery(
        q=q,
        domain=domain_name,
        top=top(params, default_top, max_top),
        paged="top" in params or "continuation" in params,
        continuation=decode_continuation(params, ("s", "o")),
    )


# -- continuation tokens: opaque to clients, validated here --------------------------------------------
def encode_continuation(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(params: dict[str, str], keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The payload of `continuation`, with every key in `keys`; 400 for anything not made by us."""
    value = params.get("continuation")
    if value is None:
        return None
    try:
        if len(value) > MAX_CONTINUATION:
            raise ValueError("too long")
        payload = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if not isinstance(payload, dict) or any(key not in payload for key in keys):
            raise ValueError("not a continuation")
        return payload
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_continuation() from None


def invalid_continuation() -> ApiError:
    return ApiError(
        400,
        "invalid_continuation",
        "continuation is not a token from a nextLink of this API",
        parameter="continuation",
    )


def _shown(name: str) -> str:
    """A caller's parameter name, safe to echo: printable and short."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name)
    return cleaned if len(cleaned) <= 40 else cleaned[:40] + "…"
