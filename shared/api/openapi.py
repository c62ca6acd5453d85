"""GET /api/openapi.json: the API's OpenAPI 3.0 document (openapi.json beside this file), anonymous.

It holds no customer data. The stored document names its server relatively (`/api`); the served one names
the app's own base URL, so API Management, Power Automate custom connectors and client generators that
import it by URL need nothing filled in. tests/e2e/api/test_openapi.py keeps it in step with
function_app.py and schemathesis checks the running API against it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func

from shared.api import params as p
from shared.api.endpoint import endpoint
from shared.api.http import answer, json_bytes, make_etag

DOCUMENT = Path(__file__).with_name("openapi.json")
CACHE = "public, max-age=300"  # no customer data: any cache may keep it for a while
_SELF = "/openapi.json"


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def base_url(url: str) -> str:
    """The API's base URL (scheme, host, route prefix) from the URL this document was asked for."""
    parts = urlsplit(url)
    path = parts.path
    prefix = path[: -len(_SELF)] if path.lower().endswith(_SELF) else path.rsplit("/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, prefix.rstrip("/"), "", ""))


@endpoint
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    p.query(req, frozenset())
    served = dict(document())
    served["servers"] = [{"url": base_url(req.url), "description": "this function app"}]
    body = json_bytes(served)
    return answer(req, make_etag("openapi", body.decode()), CACHE, lambda: (body, False))
