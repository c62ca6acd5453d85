"""Partner Center ``GET /v1/customers`` with continuation paging, quirks and one-shot fault injection.

Paging follows the documented contract: each page carries ``links.next`` (uri + method + an
``MS-ContinuationToken`` header) until the last page. Knobs reproduce what clients met in the wild: several
link URI forms, BOMs, a shifting cursor that repeats items, a trailing HTTP 400 "no more records".
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from ._http import BOM, Handler, LoopbackServer
from .entra import PC_RESOURCE, EntraID
from .tokens import TokenError, decode_jwt

# "token_only": no links.next at all, only continuationToken (clients must build the documented
# `/v1/customers?seekOperation=Next` request themselves).
LinkForm = Literal["v1", "root", "relative", "absolute", "rotate", "token_only"]
LINK_FORMS: tuple[str, ...] = ("v1", "root", "relative", "absolute")
# Faults in the body of an otherwise good 200 answer: the status line and headers arrive first.
#   drop_body: half the body, then the connection is reset; stall_body(seconds): half, then silence;
#   trickle(interval): one byte every `interval` seconds; oversized(bytes, chunked): a valid page padded
#   to `bytes` (sent with Content-Length, or chunked without one).
#   trickle_headers(interval): the status line and headers one byte every `interval` seconds, then the rest.
#   slow_error(status, bytes, interval): a retryable error (503) whose body of `bytes` trickles in.
BODY_FAULTS = ("drop_body", "stall_body", "trickle", "oversized", "trickle_headers", "slow_error")
FAULT_KINDS = frozenset(
    {"throttle", "status", "slow", "drop", "expired_token", "malformed", "bom", "redirect"} | set(BODY_FAULTS)
)
MALFORMED_VARIANTS = (
    "null_items",
    "missing_items",
    "items_not_list",
    "not_object",
    "truncated",
    "html",
    "links_not_object",
    "next_without_uri",
    "next_not_get",
    "next_bad_header",
    "nan_total",
)
MAX_PAGE_SIZE = 500
CUSTOMERS_PATH = "/v1/customers"
_TOKEN_PREFIX = "+RID:/"


@dataclass
class Fault:
    kind: str
    at: int
    times: int
    params: dict[str, Any]

    def active(self, index: int) -> bool:
        return self.at <= index < self.at + self.times


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``index`` counts /v1/customers requests from 1 (None for others);
    ``page`` is the 0-based page the request asked for (None if it could not be told);
    ``status`` is None while the request is in flight, and stays None if the connection was dropped."""

    index: int | None
    method: str
    target: str
    headers: dict[str, str]
    page: int | None = None
    status: int | None = None
    faults: tuple[str, ...] = ()
    token_uti: str | None = None  # unique id claim of the bearer token presented (never the token itself)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    @property
    def request_id(self) -> str | None:
        return self.header("MS-RequestId")

    @property
    def correlation_id(self) -> str | None:
        return self.header("MS-CorrelationId")

    @property
    def continuation_token(self) -> str | None:
        return self.header("MS-ContinuationToken")

    @property
    def has_authorization(self) -> bool:
        return self.header("Authorization") is not None


@dataclass(frozen=True)
class _Cursor:
    offset: int
    size: int
    page: int


class _BadRequest(Exception):
    def __init__(self, status: int, code: int | str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


class PartnerCenter(LoopbackServer):
    """HTTPS stand-in for ``https://api.partnercenter.microsoft.com``; tokens are checked against ``entra``.

    Attributes may be changed between runs: ``customers``, ``latency`` (seconds added to every request),
    ``link_form`` ("v1", "root", "relative", "absolute" or "rotate"), ``end_with_400_2000``,
    ``duplicates`` and ``bom``. Call ``reset()`` to forget requests and faults.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        entra: EntraID,
        *,
        customers: Sequence[dict[str, Any]] = (),
        latency: float = 0.0,
        link_form: LinkForm = "v1",
        end_with_400_2000: bool = False,
        duplicates: bool = False,
        bom: bool = False,
    ) -> None:
        super().__init__(_PartnerCenterHandler, ssl_context)
        self.entra = entra
        self.latency = latency
        self.link_form: LinkForm = link_form
        self.end_with_400_2000 = end_with_400_2000
        self.duplicates = duplicates
        self.bom = bom
        # Every page comes back empty with a fresh `links.next`, forever (a service stuck in a loop).
        self.empty_pages_forever = False
        # Called with each /v1/customers request before it is answered (tests hold a request there).
        self.gate: Callable[[RecordedRequest], None] | None = None
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._key = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._count = 0
        self.customers = customers

    @property
    def api_url(self) -> str:
        """Base URL as production configures it (PARTNER_CENTER_API_URL): no /v1, no trailing slash."""
        return self.url

    @property
    def customers(self) -> list[dict[str, Any]]:
        return self._customers

    @customers.setter
    def customers(self, value: Sequence[dict[str, Any]]) -> None:
        # Each distinct page slice is serialized once (one json.dumps call); a new list drops that cache.
        self._customers = list(value)
        self._page_cache: dict[tuple[int, int], bytes] = {}

    def inject(self, kind: str, *, at: int, times: int = 1, **params: Any) -> Fault:
        """Fire ``kind`` on the ``at``-th /v1/customers request (1-based, retries count) and the next
        ``times - 1`` ones. Kinds: throttle(retry_after=1|None), status(status=500, code, description),
        slow(seconds=1.0), drop, expired_token, malformed(variant="null_items"), bom,
        redirect(location, status=302) and the body faults in BODY_FAULTS. status(echo=True) puts the
        request's Authorization header into the error description, as a careless front end would."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if at < 1 or times < 1:
            raise ValueError("at and times must be >= 1")
        if kind == "malformed" and params.get("variant", "null_items") not in MALFORMED_VARIANTS:
            raise ValueError(f"malformed variant must be one of {MALFORMED_VARIANTS}")
        fault = Fault(kind, at, times, params)
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        """Forget recorded requests, the request counter and pending faults (knobs stay as they are)."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._count = 0

    @property
    def customer_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.index is not None]

    # -- paging internals ---------------------------------------------------------------------------------
    def _arrived(self, record: RecordedRequest) -> list[Fault]:
        """Number and log a request on arrival (a slow one stays in arrival order); return its faults."""
        with self._lock:
            if record.index is not None:
                self._count += 1
                record.index = self._count
            self.requests.append(record)
            return [f for f in self.faults if record.index is not None and f.active(record.index)]

    def encode_token(self, cursor: _Cursor) -> str:
        raw = struct.pack(">III", cursor.offset, cursor.size, cursor.page)
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:11]
        # 23 bytes → base64 ending in "=", plus "+", "/" and "," around it: clients must send it verbatim.
        return f"{_TOKEN_PREFIX}{base64.b64encode(raw + mac).decode()},RT:{cursor.page}"

    def decode_token(self, token: str) -> _Cursor | None:
        body = token.removeprefix(_TOKEN_PREFIX).partition(",")[0]
        try:
            blob = base64.b64decode(body, validate=True)
        except ValueError:
            return None
        if len(blob) != 23:
            return None
        cursor = _Cursor(*struct.unpack(">III", blob[:12]))
        return cursor if hmac.compare_digest(self.encode_token(cursor), token) else None

    def _link_uri(self, form: str, relative: str) -> str:
        return {
            "v1": f"/v1/{relative}",
            "root": f"/{relative}",
            "relative": relative,
            "absolute": f"{self.url}/v1/{relative}",
        }[form]

    def page_body(self, cursor: _Cursor, token: str | None) -> bytes:
        customers, n = self._customers, len(self._customers)
        first = cursor.offset
        if self.duplicates and cursor.page > 0 and cursor.size > 1:
            first = max(first - 1, 0)  # the cursor slipped back by one: repeat the previous page's last item
        end = min(first + cursor.size, n)
        if self.empty_pages_forever:  # no items, and always one more page
            first = end = cursor.offset
            n = end + cursor.size + 1
        items = self._page_cache.get((first, end))
        if items is None:
            if len(self._page_cache) > 4096:
                self._page_cache.clear()
            try:
                items = json.dumps(customers[first:end], ensure_ascii=False).encode()
            except UnicodeEncodeError:  # a lone surrogate ("\ud800"): UTF-8 cannot carry it, a JSON
                items = json.dumps(customers[first:end]).encode()  # escape can (strict JSON all the same)
            self._page_cache[(first, end)] = items
        form = {"rotate": LINK_FORMS[cursor.page % len(LINK_FORMS)], "token_only": "v1"}.get(
            self.link_form, self.link_form
        )
        self_query = f"customers?size={cursor.size}" + ("&seekOperation=Next" if cursor.page else "")
        self_headers = [{"key": "MS-ContinuationToken", "value": token}] if token else []
        links: dict[str, Any] = {
            "self": {"uri": self._link_uri(form, self_query), "method": "GET", "headers": self_headers}
        }
        rest: dict[str, Any] = {}
        if end < n or self.end_with_400_2000:
            next_token = self.encode_token(_Cursor(end, cursor.size, cursor.page + 1))
            rest["continuationToken"] = next_token
            if self.link_form != "token_only":
                links["next"] = {
                    "uri": self._link_uri(form, f"customers?size={cursor.size}&seekOperation=Next"),
                    "method": "GET",
                    "headers": [{"key": "MS-ContinuationToken", "value": next_token}],
                }
        rest["links"] = links
        rest["attributes"] = {"objectType": "Collection"}
        head = f'{{"totalCount": {end - first}, "items": '.encode()
        return b"".join((head, items, b", ", json.dumps(rest, ensure_ascii=False)[1:].encode()))

    def warm(self, page_size: int = MAX_PAGE_SIZE) -> None:
        """Serialize every page of a plain run ahead of time, so a benchmark times the client only."""
        for offset in range(0, max(len(self._customers), 1), page_size):
            self.page_body(_Cursor(offset, page_size, offset // page_size), None)


def _error_body(code: int | str, description: str) -> dict[str, Any]:
    return {"code": code, "description": description, "data": [], "source": "PartnerFD"}


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {"*/*", "application/*", "application/json"})


class _PartnerCenterHandler(Handler):
    server: PartnerCenter

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self.read_body()
        self._serve()

    def _serve(self) -> None:
        srv = self.server
        if srv.latency:
            time.sleep(srv.latency)
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        if self.path_only != CUSTOMERS_PATH:  # e.g. a naive join's /v1//v1/customers
            record = RecordedRequest(None, self.command, self.path, headers)
            srv._arrived(record)
            return self._answer(
                record, self._error(404, 404, f"Resource not found: {self.path_only}"), bom=srv.bom
            )

        record = RecordedRequest(0, self.command, self.path, headers, token_uti=self._token_uti())
        faults = srv._arrived(record)
        try:
            cursor: _Cursor | _BadRequest = self._cursor()
            record.page = cursor.page
        except _BadRequest as exc:
            cursor = exc
            presented = srv.decode_token(self.headers.get("MS-ContinuationToken") or "")
            record.page = presented.page if presented else None
        if srv.gate is not None:
            srv.gate(record)
        bom = srv.bom
        body_fault: Fault | None = None
        for fault in faults:
            record.faults += (fault.kind,)
            if fault.kind in BODY_FAULTS:
                body_fault = fault
            elif fault.kind == "slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))
            elif fault.kind == "bom":
                bom = True
            elif fault.kind == "drop":
                return self.drop_connection()
            else:
                return self._answer(record, self._fault_response(fault, cursor), bom=bom)
        response = self._normal_response(cursor)
        if body_fault is not None and (response.status == 200 or body_fault.kind == "slow_error"):
            return self._faulty_body(record, response, body_fault)
        self._answer(record, response, bom=bom)

    def _faulty_body(self, record: RecordedRequest, response: _Response, fault: Fault) -> None:
        record.status = response.status
        body, p = response.body, fault.params
        if fault.kind == "oversized":
            size = int(p.get("bytes", 8 * 1024 * 1024))
            head, _, tail = body.rpartition(b"}")
            body = head + b', "padding": "' + b"x" * max(size - len(body), 0) + b'"}' + tail
            if p.get("chunked"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for at in range(0, len(body), 64 * 1024):
                        piece = body[at : at + 64 * 1024]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                return None
            return self.send_bytes(200, body)
        if fault.kind == "slow_error":
            status = int(p.get("status", 503))
            body = json.dumps(
                _error_body(status, "Service unavailable " + "." * int(p.get("bytes", 2000)))
            ).encode()
            record.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                for at in range(len(body)):
                    self.wfile.write(body[at : at + 1])
                    self.wfile.flush()
                    time.sleep(float(p.get("interval", 0.01)))
            return None
        if fault.kind == "trickle_headers":
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            with contextlib.suppress(OSError):
                for at in range(len(head)):
                    self.wfile.write(head[at : at + 1])
                    self.wfile.flush()
                    time.sleep(float(p.get("interval", 1.0)))
                self.wfile.write(body)
                self.wfile.flush()
            return None
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        half = max(len(body) // 2, 1)
        with contextlib.suppress(OSError):
            if fault.kind == "trickle":
                for at in range(len(body)):
                    self.wfile.write(body[at : at + 1])
                    self.wfile.flush()
                    time.sleep(float(p.get("interval", 1.0)))
                return None
            self.wfile.write(body[:half])
            self.wfile.flush()
            if fault.kind == "stall_body":
                time.sleep(float(p.get("seconds", 5.0)))
        return self.drop_connection()

    def _answer(self, record: RecordedRequest, response: _Response, *, bom: bool) -> None:
        record.status = response.status
        for name in ("MS-RequestId", "MS-CorrelationId"):
            if self.headers.get(name):
                response.headers.setdefault(name, self.headers[name])
        body = (
            BOM + response.body
            if bom and response.content_type.startswith("application/json")
            else response.body
        )
        self.send_bytes(response.status, body, response.content_type, response.headers)

    def _token_uti(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        try:
            return decode_jwt(auth[7:].strip()).get("uti") if auth.lower().startswith("bearer ") else None
        except ValueError:
            return None

    def _cursor(self) -> _Cursor:
        srv = self.server
        size_text = self.query_value("size")
        size = MAX_PAGE_SIZE
        if size_text is not None:
            if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
                raise _BadRequest(
                    400, 400, f"Invalid size '{size_text}': must be an integer from 1 to {MAX_PAGE_SIZE}."
                )
            size = int(size_text)
        seek = self.query_value("seekOperation")
        token = self.headers.get("MS-ContinuationToken")
        if seek is None:
            if token:
                raise _BadRequest(400, 400, "MS-ContinuationToken is only valid with seekOperation=Next.")
            return _Cursor(0, size, 0)
        if seek.lower() != "next":
            raise _BadRequest(400, 400, f"Unsupported seekOperation '{seek}'.")
        if not token:
            raise _BadRequest(400, 400, "seekOperation=Next requires the MS-ContinuationToken header.")
        cursor = srv.decode_token(token)
        if cursor is None:
            raise _BadRequest(400, 400, "The continuation token is invalid or has been tampered with.")
        return cursor

    def _authorize(self) -> _Response | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return self._error(
                401,
                401,
                "Authorization header is missing or is not a bearer token.",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            self.server.entra.validate_access_token(auth[7:].strip())
        except TokenError as exc:
            if exc.reason == "audience":
                return self._error(
                    401,
                    900420,
                    f"Invalid token audience {exc}: tokens for {PC_RESOURCE} only.",
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return self._error(
                401,
                401,
                f"The access token is {exc.reason}.",
                {
                    "WWW-Authenticate": f'Bearer error="invalid_token", '
                    f'error_description="The access token is {exc.reason}"'
                },
            )
        return None

    def _normal_response(self, cursor: _Cursor | _BadRequest) -> _Response:
        denied = self._authorize()
        if denied is not None:
            return denied
        if self.command != "GET":
            return self._error(405, 405, f"Method {self.command} is not allowed.")
        if not _accepts_json(self.headers.get("Accept")):
            return self._error(406, 406, "Only application/json responses are available.")
        if isinstance(cursor, _BadRequest):
            return self._error(cursor.status, cursor.code, cursor.description)
        srv = self.server
        if cursor.page > 0 and cursor.offset >= len(srv.customers) and not srv.empty_pages_forever:
            return self._error(400, 2000, "No more records.")
        token = self.headers.get("MS-ContinuationToken") if cursor.page else None
        return _Response(200, srv.page_body(cursor, token))

    def _fault_response(self, fault: Fault, cursor: _Cursor | _BadRequest) -> _Response:
        p = fault.params
        if fault.kind == "throttle":
            retry_after = p.get("retry_after", 1)
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            wait = 1 if retry_after is None else retry_after
            body = {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {wait} seconds."}
            return _Response(429, json.dumps(body).encode(), headers)
        if fault.kind == "redirect":
            location = p["location"]
            return _Response(int(p.get("status", 302)), b"", {"Location": location})
        if fault.kind == "status":
            status = int(p.get("status", 500))
            description = p.get("description") or HTTPStatus(status).phrase
            if p.get("echo"):
                description += f" (request: Authorization: {self.headers.get('Authorization', '')})"
            return self._error(status, p.get("code", status), description)
        if fault.kind == "expired_token":
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                self.server.entra.revoke_access_token(auth[7:].strip())
            challenge = 'Bearer error="invalid_token", error_description="The access token expired"'
            return self._error(401, 401, "The access token has expired.", {"WWW-Authenticate": challenge})
        return self._malformed(p.get("variant", "null_items"), cursor)

    def _malformed(self, variant: str, cursor: _Cursor | _BadRequest) -> _Response:
        collection = {"objectType": "Collection"}
        bodies: dict[str, Any] = {
            "null_items": {"totalCount": 0, "items": None, "attributes": collection},
            "missing_items": {"totalCount": 0, "attributes": collection},
            "items_not_list": {"totalCount": 1, "items": {"id": "not-a-list"}, "attributes": collection},
            "not_object": [],
            "nan_total": {"totalCount": float("nan"), "items": [], "attributes": collection},  # not JSON
            # A page whose items are fine but whose way to the next page cannot be followed safely.
            "links_not_object": {"totalCount": 0, "items": [], "links": "next", "attributes": collection},
            "next_without_uri": {"totalCount": 0, "items": [], "links": {"next": {"method": "GET"}}},
            "next_not_get": {
                "totalCount": 0,
                "items": [],
                "links": {"next": {"uri": "/customers?seekOperation=Next", "method": "DELETE"}},
            },
            "next_bad_header": {
                "totalCount": 0,
                "items": [],
                "links": {
                    "next": {"uri": "/customers?seekOperation=Next", "method": "GET", "headers": ["token"]}
                },
            },
        }
        if variant in bodies:
            return _Response(200, json.dumps(bodies[variant]).encode())
        if variant == "html":
            html = b"<html><body><h1>Service Unavailable</h1></body></html>"
            return _Response(200, html, content_type="text/html")
        full = self.server.page_body(cursor if isinstance(cursor, _Cursor) else _Cursor(0, 1, 0), None)
        return _Response(200, full[: max(len(full) // 2, 1)])  # "truncated": valid length, cut JSON

    def _error(
        self, status: int, code: int | str, description: str, headers: dict[str, str] | None = None
    ) -> _Response:
        return _Response(status, json.dumps(_error_body(code, description)).encode(), headers or {})
