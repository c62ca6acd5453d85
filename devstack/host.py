"""A small local Functions host: the HTTP functions registered in function_app.py at their real routes.

Azure Functions Core Tools cannot run here, so this plays the host's part for local runs, the demo and
tests, reading the same registrations the real host indexes (`app.get_functions()`):

- `/<routePrefix>/<route>` (host.json `extensions.http.routePrefix`, default `api`), route templates with
  `{name}`, `{name:constraint}` (constraint not checked), `{name?}` and `{*name}`; literal segments match
  case-insensitively, dot segments are removed and `%2F` stays encoded in route values, as in ASP.NET Core;
- the request target's raw bytes read as UTF-8 (`?q=société` unencoded), as Kestrel reads them;
- the auth level of each function: FUNCTION needs the function key (or the master key) in the
  `x-functions-key` header or the `code` query parameter, ADMIN the master key, ANONYMOUS nothing;
  a wrong or missing key is a 401 before the function runs;
- `POST /admin/functions/{name}` with the master key runs a non-HTTP function (the timer) now and answers
  202 like the real host; here the run finishes before the answer, so a script can query right after.

Differences from the real host: 401/404 answers carry a short JSON body (the real host's are empty; here
a 401 says whether the key was missing or wrong);
an HTTP function that raises gives a 500 with an empty body and the traceback on stderr; a failed admin
run prints one line (the job logs its own snapshot.failed line).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from ._http import Handler, LoopbackServer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 7071  # the port `func start` uses

_functions_lock = threading.Lock()
_functions: dict[Any, dict[str, Any]] = {}


def registered_functions(app: Any = None) -> dict[str, Any]:
    """name → Function of `app` (function_app.app by default). FunctionApp.get_functions() may be called
    only once per app object (a second call raises), so every caller in this process shares this cache."""
    if app is None:
        import function_app

        app = function_app.app
    with _functions_lock:
        if app not in _functions:
            _functions[app] = {f.get_function_name(): f for f in app.get_functions()}
        return _functions[app]


@dataclass(frozen=True)
class HttpRoute:
    name: str
    function: Any
    template: str
    pattern: re.Pattern[str]
    auth_level: func.AuthLevel
    methods: frozenset[str] | None  # None: every method

    @classmethod
    def of(cls, function: Any, prefix: str) -> HttpRoute:
        trigger = function.get_trigger()
        template = (trigger.route or function.get_function_name()).strip("/")
        methods = trigger.methods
        return cls(
            name=function.get_function_name(),
            function=function,
            template=template,
            pattern=_route_pattern("/".join(p for p in (prefix, template) if p)),
            auth_level=func.AuthLevel(str(_value(trigger.auth_level or func.AuthLevel.FUNCTION)).lower()),
            methods=None if not methods else frozenset(str(_value(m)).upper() for m in methods),
        )


def _value(item: Any) -> Any:
    return getattr(item, "value", item)


def _route_pattern(template: str) -> re.Pattern[str]:
    parts = []
    for segment in template.split("/"):
        match = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}", segment)
        if match is None:
            if "{" in segment:
                raise ValueError(f"route segment {segment!r} is not supported by the local host")
            parts.append("/" + re.escape(segment))
        elif match.group(1):  # {*rest}: everything that follows
            parts.append(f"(?:/(?P<{match.group(2)}>.*))?")
        elif match.group(3):  # {name?}
            parts.append(f"(?:/(?P<{match.group(2)}>[^/]+))?")
        else:
            parts.append(f"/(?P<{match.group(2)}>[^/]+)")
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)


def route_prefix(host_json: Path = REPO_ROOT / "host.json") -> str:
    try:
        config = json.loads(host_json.read_text())
        prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    except (OSError, ValueError, AttributeError):
        prefix = "api"
    return str(prefix).strip("/")


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, as Kestrel applies it before routing."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = "/" if path.endswith(("/.", "/..")) else ""
    return "/" + "/".join(output) + trailing


def request_target(path: str) -> str:
    """The request target as the Functions host reads it: raw bytes (`?q=société` typed unencoded) are UTF-8.

    http.server decodes the request line as Latin-1; Kestrel decodes it as UTF-8. Bytes that are not UTF-8
    become U+FFFD, as `%ff` does once percent-decoded."""
    return path.encode("latin-1").decode("utf-8", "replace")


def _decode_segment(segment: str) -> str:
    # ASP.NET Core decodes the path except %2F: an encoded slash never splits a route value.
    return unquote(re.sub("%2[Ff]", "%252F", segment))


class FunctionsHost(LoopbackServer):
    """`with FunctionsHost() as host:` serves function_app.py at `host.url` (default: a free port).

    `port`: try that port first (e.g. 7071) and fall back to a free one when it is taken."""

    def __init__(
        self,
        app: Any = None,
        *,
        port: int = 0,
        function_key: str | None = None,
        master_key: str | None = None,
        prefix: str | None = None,
        log_requests: bool = False,
    ) -> None:
        self.function_key = function_key or secrets.token_urlsafe(30)
        self.master_key = master_key or secrets.token_urlsafe(30)
        self.prefix = route_prefix() if prefix is None else prefix.strip("/")
        self.log_requests = log_requests
        functions = registered_functions(app)
        self.routes = [HttpRoute.of(f, self.prefix) for f in functions.values() if f.is_http_function()]
        self.others = {name: f for name, f in functions.items() if not f.is_http_function()}
        self._requested_port = port
        self.allow_reuse_address = bool(port)  # a fixed port must not wait out TIME_WAIT after a restart
        super().__init__(_HostHandler)

    def server_bind(self) -> None:
        if self._requested_port:
            self.server_address = ("127.0.0.1", self._requested_port)
            try:
                super().server_bind()
                return
            except OSError:
                self.server_address = ("127.0.0.1", 0)  # taken: any free port
        super().server_bind()

    def route(self, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self.routes:
            match = route.pattern.match(path)
            if match:
                values = {k: _decode_segment(v) for k, v in match.groupdict().items() if v is not None}
                return route, values
        return None

    def authorized(self, level: func.AuthLevel, key: str | None) -> bool:
        if level == func.AuthLevel.ANONYMOUS:
            return True
        if not key:
            return False
        accepted = (
            [self.master_key] if level == func.AuthLevel.ADMIN else [self.function_key, self.master_key]
        )
        return any(hmac.compare_digest(key.encode(), candidate.encode()) for candidate in accepted)


class _HostHandler(Handler):
    server: FunctionsHost

    def version_string(self) -> str:
        return "LocalFunctionsHost/1.0"

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) is routed too, as Kestrel does: the function answers 405,
        # where http.server would answer a bare 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        started = time.perf_counter()
        status = self._dispatch()
        if self.server.log_requests:
            elapsed = (time.perf_counter() - started) * 1000
            target = request_target(self.path)
            shown = re.sub(r"(?i)([?&]code=)[^&]*", r"\1***", target)[:160]  # keys stay out of logs
            print(f"  {self.command} {shown} → {status} ({elapsed:.1f} ms)", file=sys.stderr)

    def _dispatch(self) -> int:
        body = self.read_body()
        target = request_target(self.path)
        split = urlsplit(target)
        path = remove_dot_segments(split.path or "/")
        query = parse_qsl(split.query, keep_blank_values=True)
        params = _joined(query)
        headers = _joined((name.lower(), value) for name, value in self.headers.items())
        key = headers.get("x-functions-key") or params.get("code")

        admin = re.fullmatch(r"/admin/functions/([^/]+)", path, re.IGNORECASE)
        if admin:
            return self._run_function(unquote(admin.group(1)), key)
        found = self.server.route(path)
        if found is None:
            return self._json(
                404, {"error": "not_found", "message": "no function is registered at this path"}
            )
        route, route_params = found
        if not self.server.authorized(route.auth_level, key):
            return self._unauthorized(key, "this function needs its key")
        if route.methods is not None and self.command not in route.methods:
            return self._json(404, {"error": "not_found", "message": "no function accepts this method here"})
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.port}"
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{host}{target}",
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        try:
            response = route.function.get_user_function()(request)
        except Exception:
            traceback.print_exc()
            self._send(500, {}, b"")
            return 500
        return self._send_response(response)

    def _run_function(self, name: str, key: str | None) -> int:
        if self.command != "POST":
            return self._json(405, {"error": "method_not_allowed", "message": "use POST"})
        if not self.server.authorized(func.AuthLevel.ADMIN, key):
            return self._unauthorized(key, "the admin API needs the master key")
        function = next((f for n, f in self.server.others.items() if n.lower() == name.lower()), None)
        if function is None:
            return self._json(404, {"error": "not_found", "message": "no such non-HTTP function"})
        from azure.functions.timer import TimerRequest

        try:
            function.get_user_function()(TimerRequest(past_due=False))
        except Exception as exc:  # the real host logs it too; the caller still gets its 202
            print(
                f"  Executed '{function.get_function_name()}' (Failed: {type(exc).__name__})", file=sys.stderr
            )
        return self._send(202, {}, b"")

    def _unauthorized(self, key: str | None, needed: str) -> int:
        """401, saying whether the key was missing or wrong (Azure's host answers both with an empty body)."""
        if key:
            message = f"the key sent is not valid here: {needed} (x-functions-key header or code parameter)"
        else:
            message = f"no key was sent: {needed}, in the x-functions-key header or the code query parameter"
        return self._json(401, {"error": "unauthorized", "message": message})

    def _send_response(self, response: func.HttpResponse) -> int:
        headers = {name: value for name, value in response.headers.items()}
        bodiless = response.status_code in (204, 304)
        if not bodiless and response.mimetype and not any(n.lower() == "content-type" for n in headers):
            charset = f"; charset={response.charset}" if response.charset else ""
            headers["Content-Type"] = f"{response.mimetype}{charset}"
        return self._send(response.status_code, headers, response.get_body() or b"")

    def _json(self, status: int, payload: dict[str, str]) -> int:
        body = json.dumps(payload).encode()
        return self._send(status, {"Content-Type": "application/json; charset=utf-8"}, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> int:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        bodiless = status == 304 or status == 204 or 100 <= status < 200
        if not bodiless:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and not bodiless:
            self.wfile.write(body)
        return status


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated names joined with a comma, as the real host hands repeated query parameters on."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined
