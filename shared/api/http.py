"""Conditional requests, compression and caching headers shared by every data answer."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from shared.api.errors import JSON_TYPE
from shared.jsonenc import compact_bytes

IMMUTABLE = "private, max-age=31536000, immutable"
NO_STORE = "no-store"
GZIP_LEVEL = 6


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON; a lone surrogate (strict JSON, which UTF-8 cannot carry) as its JSON escape,
    the form it was stored in (as change records write it: shared/changes/record.py `encoded`)."""
    return compact_bytes(value)


def make_etag(*parts: str) -> str:
    """An opaque strong validator: the same parts give the same ETag on every instance."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'


def accepts_gzip(req: func.HttpRequest) -> bool:
    """Accept-Encoding allows gzip (RFC 9110 §12.5.3: `gzip`, `x-gzip` or `*`, q not 0)."""
    weights = quality_weights(req.headers.get("accept-encoding") or "")
    for coding in ("gzip", "x-gzip"):
        if coding in weights:
            return weights[coding] > 0
    return weights.get("*", 0) > 0


def quality_weights(header: str) -> dict[str, float]:
    """`Accept` / `Accept-Encoding` as {lower-cased value: q}; q defaults to 1, a q that is not a number
    counts as 0 (refused)."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        value, *options = (part.strip() for part in item.split(";"))
        weight = 1.0
        for option in options:
            key, _, q = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(q)
                except ValueError:
                    weight = 0.0
        if value:
            weights[value.lower()] = weight
    return weights


def representation_etag(base: str, gzipped: bool) -> str:
    """Gzip and identity bodies are different representations, so they get different strong ETags."""
    return f'{base[:-1]}-gzip"' if gzipped else base


def if_none_match_any(req: func.HttpRequest) -> bool:
    """If-None-Match: * — true only for a representation that exists (RFC 9110 §13.1.2)."""
    return (req.headers.get("if-none-match") or "").strip() == "*"


def not_modified(req: func.HttpRequest, etag: str) -> bool:
    """If-None-Match lists `etag` or is `*` (weak comparison, as RFC 9110 §13.1.2 requires); `*` matches
    only a representation that exists, which the caller must know first (see `answer`)."""
    header = req.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates


def cache_control(max_age: int) -> str:
    # private: the answers are one partner's customer data, never for shared caches.
    return f"private, max-age={max(0, max_age)}, must-revalidate"


def data_headers(etag: str, cache: str, **extra: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "Cache-Control": cache,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        **extra,
    }


def answer(
    req: func.HttpRequest,
    base_etag: str,
    cache: str,
    produce: Callable[[], tuple[bytes, bool]],
    *,
    headers: dict[str, str] | None = None,
    content_type: str = JSON_TYPE,
) -> func.HttpResponse:
    """A 200 answer (JSON unless `content_type` says otherwise), or a 304 when If-None-Match has its ETag
    (then `produce` is never called), or is `*` and `produce` finds something (it raises the 404 otherwise).

    `produce()` gives (body, body is gzip); it may add entries to `headers` (read after it ran) for headers
    that only a 200 carries. Gzip goes out when the client accepts it (the Linux host never
    compresses): stored gzip bytes as they are, anything else compressed here; inflated otherwise."""
    gzipped = accepts_gzip(req)
    etag = representation_etag(base_etag, gzipped)
    extra = headers if headers is not None else {}
    if not_modified(req, etag):
        if if_none_match_any(req):
            produce()  # `*` is a 304 only for something that exists: produce() raises the 404 otherwise
        return func.HttpResponse(status_code=304, headers=data_headers(etag, cache, **extra))
    data, is_gzip = produce()
    if gzipped and not is_gzip:
        data = gzip.compress(data, GZIP_LEVEL, mtime=0)
    elif is_gzip and not gzipped:
        data = gzip.decompress(data)  # every member (writer.py writes many)
    response_headers = data_headers(etag, cache, **extra) | {"Content-Type": content_type}
    if gzipped:
        response_headers["Content-Encoding"] = "gzip"
    return func.HttpResponse(data, status_code=200, headers=response_headers)


def status_response(status: int, value: Any, *, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A small uncached JSON answer (health, redirects)."""
    return func.HttpResponse(
        json_bytes(value),
        status_code=status,
        headers={
            "Content-Type": JSON_TYPE,
            "Cache-Control": NO_STORE,
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
