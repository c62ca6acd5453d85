"""The HTTP functions over real HTTP through the local host (devstack/host.py): routes, keys, admin runs."""

from __future__ import annotations

import gzip
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from typing import Any

import pytest
import requests

from devstack.host import FunctionsHost, remove_dot_segments
from devstack.population import make_customers
from devstack.stack import DevStack
from tests.support.api import SPECIAL, foreign_settings, write_snapshot
from tests.support.functions import run_timer

CUSTOMERS = make_customers(150, seed=11) + SPECIAL


@pytest.fixture(scope="module")
def served(azurite) -> Iterator[dict[str, Any]]:
    """One published snapshot and a host serving function_app.py over HTTP."""
    patch = pytest.MonkeyPatch()
    for name in foreign_settings():
        patch.delenv(name, raising=False)
    stack = DevStack(azurite=azurite, customers=CUSTOMERS, system_cas=False).start()
    for name, value in {**stack.env, "SNAPSHOT_CONTAINER": f"host-{os.getpid()}"}.items():
        patch.setenv(name, value)
    run_timer()
    with FunctionsHost() as host, requests.Session() as session:
        yield {"stack": stack, "host": host, "session": session}
    patch.undo()
    stack.close()


@pytest.fixture
def host(served) -> FunctionsHost:
    return served["host"]


@pytest.fixture
def http(served) -> requests.Session:
    return served["session"]


def get(
    http: requests.Session, host: FunctionsHost, path: str, *, key: str | None = "function", **kwargs: Any
):
    headers = dict(kwargs.pop("headers", {}))
    if key == "function":
        headers["x-functions-key"] = host.function_key
    elif key is not None:
        headers["x-functions-key"] = key
    return http.get(host.url + path, headers=headers, timeout=10, allow_redirects=False, **kwargs)


def raw_request(host: FunctionsHost, method: str, target: str, headers: dict[str, str] | None = None):
    """Sends the request target exactly as written (clients would normalise dot segments)."""
    connection = HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# -- routes and keys -----------------------------------------------------------------------------------
def test_every_route_answers_over_http(host, http):
    customer = CUSTOMERS[9]
    today = get(http, host, "/api/health", key=None).json()["generatedAt"][:10]
    whole = get(http, host, "/api/customers")
    assert whole.status_code == 200
    assert whole.json()["customers"] == CUSTOMERS
    assert get(http, host, f"/api/customers/{customer['id']}").json() == customer
    assert get(http, host, "/api/customers", params={"q": "ZYXWVÜ"}).json()["count"] == 3
    assert (
        get(http, host, "/api/customers", params={"domain": SPECIAL[4]["companyProfile"]["domain"]}).json()[
            "count"
        ]
        == 1
    )
    listing = get(http, host, "/api/snapshots").json()["snapshots"]
    assert [s["date"] for s in listing] == [today]
    assert get(http, host, f"/api/snapshots/{today}").json()["customerCount"] == len(CUSTOMERS)


@pytest.mark.parametrize(
    "path",
    [
        "/api/customers",
        f"/api/customers/{SPECIAL[0]['id']}",
        "/api/customers?q=x",
        "/api/snapshots",
        "/api/snapshots/2024-02-29",
    ],
)
def test_function_routes_need_a_key(host, http, path):
    for key in (None, "", "wrong-key", host.function_key + "x"):
        response = get(http, host, path, key=key)
        assert response.status_code == 401, (path, key)
        assert response.json()["error"] == "unauthorized"
        assert "customers" not in response.text.replace("/api/customers", "")
        # A missing key and a wrong key are told apart.
        assert response.json()["message"].startswith(
            "the key sent is not valid" if key else "no key was sent"
        )
    for accepted in ({"key": host.function_key}, {"key": host.master_key}):
        assert get(http, host, path, **accepted).status_code in (200, 404), path
    separator = "&" if "?" in path else "?"
    assert get(http, host, f"{path}{separator}code={host.function_key}", key=None).status_code in (200, 404)


def test_health_is_anonymous(host, http):
    response = get(http, host, "/api/health", key=None)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/", 404),
        ("/api", 404),
        ("/api/", 404),
        ("/api/nothing", 404),
        ("/customers", 404),
        ("/api/customers/a/b", 404),
        ("/api/snapshots/2024/02/29", 404),
        ("/API/Health", 200),  # routes match case-insensitively, like ASP.NET Core
        ("/api/health/", 200),
        ("/api/snapshots/../health", 200),  # dot segments are resolved before routing
        ("/api/snapshots/../latest.json", 404),
        ("/api/snapshots/..%2F..%2Flatest.json", 400),  # %2F stays in the route value: 400 invalid_date
        ("/api/snapshots/%2e%2e", 400),
        ("/api/customers/..%2Flatest.json", 400),
    ],
)
def test_paths_are_routed_like_the_real_host(host, target, status):
    got, headers, body = raw_request(host, "GET", target, {"x-functions-key": host.function_key})
    assert got == status, (target, body[:200])
    assert headers["Content-Type"].startswith("application/json")
    assert b"Traceback" not in body


def test_dot_segments():
    assert remove_dot_segments("/a/b/../c/./d") == "/a/c/d"
    assert remove_dot_segments("/../../etc/passwd") == "/etc/passwd"
    assert remove_dot_segments("/a/b/..") == "/a/"


def test_other_methods_are_405_in_json_over_http(host, http):
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE", "QUERY"):  # http.server alone: 501
        response = http.request(
            method, host.url + "/api/customers", headers={"x-functions-key": host.function_key}, data=b"{}"
        )
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers["Allow"] == "GET"
    head = http.head(host.url + "/api/health")
    assert head.status_code == 405
    assert head.content == b""


# -- HTTP behaviour ------------------------------------------------------------------------------------
def test_gzip_etag_and_304_over_http(host, http):
    path = f"/api/customers/{CUSTOMERS[1]['id']}"
    response = get(http, host, path, headers={"Accept-Encoding": "gzip"}, stream=True)
    wire = response.raw.read(decode_content=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(wire)
    assert json.loads(gzip.decompress(wire)) == CUSTOMERS[1]

    again = get(
        http, host, path, headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == response.headers["ETag"]
    assert "Content-Length" not in again.headers

    plain = get(http, host, path, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.json() == CUSTOMERS[1]


def test_the_whole_snapshot_over_http_is_the_stored_gzip(host, http, served):
    stack = served["stack"]
    container = stack.blob_service_client().get_container_client(os.environ["SNAPSHOT_CONTAINER"])
    latest = json.loads(container.download_blob("latest.json").readall())
    stored = container.get_blob_client(latest["snapshot"]).download_blob(decompress=False).readall()
    response = get(http, host, "/api/customers", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert response.raw.read(decode_content=False) == stored


@pytest.mark.parametrize(
    ("query", "status", "parameter"),
    [
        ("q=" + "x" * 8000, 400, "q"),
        ("q=%00", 400, "q"),
        ("q=%0d%0aSet-Cookie:%20x", 400, "q"),
        ("q=%ff%fe", 200, None),  # not UTF-8: decoded with replacement characters, matches nothing
        ("q=%F0%9F%9A%80", 200, None),  # 🚀
        ("q=M%C3%BCller&q=x", 400, "q"),
        ("domain=" + "a." * 130 + "com", 400, "domain"),
        ("top=999999999999999999999", 400, "top"),
        ("a=1&b=2&c=3", 400, "a"),
        ("=1", 400, ""),
        ("&&&", 200, None),
    ],
)
def test_odd_query_strings_over_http(host, query, status, parameter):
    got, _, body = raw_request(
        host, "GET", f"/api/customers?{query}&top=1", {"x-functions-key": host.function_key}
    )
    payload = json.loads(body)
    assert got == status, payload
    if status == 400:
        assert payload.get("parameter") == parameter
        assert set(payload) <= {"error", "message", "parameter"}


def raw_bytes_request(host: FunctionsHost, target: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """Sends a request line with raw (unencoded) bytes, as curl does with `?q=société` typed as is."""
    lines = [b"GET " + target + b" HTTP/1.1", f"Host: 127.0.0.1:{host.port}".encode(), b"Connection: close"]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_raw_utf8_query_is_decoded_as_utf8_like_the_functions_host(host, http):
    """`curl "$FUNC/api/customers?q=société"` sends the UTF-8 bytes unencoded: the same answer as %C3%A9."""
    key = {"x-functions-key": host.function_key}
    status, body = raw_bytes_request(host, "/api/customers?q=soci\u00e9t\u00e9&top=5".encode(), key)
    payload = json.loads(body)
    assert status == 200, payload
    assert payload["query"]["q"] == "soci\u00e9t\u00e9"
    assert payload["count"] >= 1
    encoded = get(http, host, "/api/customers?q=soci%C3%A9t%C3%A9&top=5").json()
    assert payload == encoded
    status, body = raw_bytes_request(host, f"/api/customers/{SPECIAL[0]['id']}?q=\u00e9".encode(), key)
    assert status == 400 and json.loads(body)["parameter"] == "q"  # the raw parameter reached the function


def test_a_huge_request_line_is_refused_and_the_host_keeps_serving(host, http):
    got, _, _ = raw_request(
        host, "GET", "/api/customers?q=" + "x" * 70_000, {"x-functions-key": host.function_key}
    )
    assert got == 414
    assert get(http, host, "/api/health", key=None).status_code == 200


def test_lookups_are_fast_and_safe_in_parallel(host, served):
    ids = [c["id"] for c in CUSTOMERS]
    timings: list[float] = []
    failures: list[Any] = []

    def worker(offset: int) -> None:
        with requests.Session() as session:
            for i in range(offset, offset + 25):
                started = time.perf_counter()
                response = get(session, host, f"/api/customers/{ids[i % len(ids)]}")
                timings.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["id"] != ids[i % len(ids)]:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(n * 25,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(timings) == 150
    # Each lookup is one conditional GET of latest.json plus an in-memory index hit.
    assert statistics.median(timings) < 0.5


# -- admin runs and new snapshots ----------------------------------------------------------------------
def test_the_admin_endpoint_runs_the_timer_now(make_stack):
    _, snapshots = make_stack(customers=SPECIAL)
    with FunctionsHost() as host, requests.Session() as http:
        admin = host.url + "/admin/functions/snapshot_customers"
        assert http.post(admin, headers={"x-functions-key": host.function_key}, json={}).status_code == 401
        assert http.post(admin, json={}).status_code == 401
        assert http.get(admin, headers={"x-functions-key": host.master_key}).status_code == 405
        missing = host.url + "/admin/functions/nothing"
        assert http.post(missing, headers={"x-functions-key": host.master_key}).status_code == 404
        assert get(http, host, "/api/health", key=None).json()["status"] == "empty"

        run = http.post(admin, headers={"x-functions-key": host.master_key}, json={"input": ""})

        assert run.status_code == 202
        assert run.content == b""
        assert len(snapshots.snapshot_names()) == 1
        health = get(http, host, "/api/health", key=None).json()
        assert health["status"] == "ok"
        assert health["customerCount"] == len(SPECIAL)
        assert get(http, host, f"/api/customers/{SPECIAL[2]['id']}").json() == SPECIAL[2]


def test_a_snapshot_published_between_two_requests_is_served_by_the_second(make_stack):
    stack, snapshots = make_stack(customers=SPECIAL[:2])
    run_timer()
    container = stack.blob_service_client().get_container_client(snapshots.container)
    with FunctionsHost() as host, requests.Session() as http:
        first = get(http, host, "/api/customers", params={"q": "zyxwvu"})
        assert first.json()["count"] == 2
        write_snapshot(container, SPECIAL, datetime.now(UTC) + timedelta(minutes=1))
        second = get(
            http,
            host,
            "/api/customers",
            params={"q": "zyxwvu"},
            headers={"If-None-Match": first.headers["ETag"]},
        )
        assert second.status_code == 200
        assert second.json()["count"] == 3
        assert second.json()["snapshot"]["name"] != first.json()["snapshot"]["name"]


def test_a_large_snapshot_redirect_is_followed_by_a_client(make_stack, azurite):
    stack, snapshots = make_stack(
        customers=0,
        env_overrides={
            "API_SNAPSHOT_INLINE_MAX_BYTES": "1000",
            "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
            "SNAPSHOT_STORAGE_CONNECTION_STRING": azurite.connection_string,
        },
    )
    customers = make_customers(50, seed=5)
    write_snapshot(
        stack.blob_service_client().get_container_client(snapshots.container), customers, datetime.now(UTC)
    )
    with FunctionsHost() as host, requests.Session() as http:
        redirect = get(http, host, "/api/customers")
        assert redirect.status_code == 307
        assert redirect.headers["Location"].startswith(stack.azurite.account_url)
        followed = http.get(
            host.url + "/api/customers", headers={"x-functions-key": host.function_key}, timeout=10
        )
        assert followed.status_code == 200
        assert followed.json()["customers"] == customers
        assert followed.history[0].status_code == 307


# -- the host itself -----------------------------------------------------------------------------------
def test_a_taken_port_falls_back_to_a_free_one():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with FunctionsHost(port=port) as host:
            assert host.port != port
            assert host.port > 0
    with FunctionsHost(port=port) as host:  # free again: that exact port
        assert host.port == port
