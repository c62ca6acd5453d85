"""Calling the registered HTTP functions as the host does, reading their answers, and writing snapshots in
the job's own layout (the API tests' shared helpers and customers)."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func

from devstack.stack import DevStack
from shared.jsonenc import compact as dumps
from shared.snapshots.store import SnapshotStore
from shared.storage.layout import snapshot_name
from tests.conftest import Snapshots
from tests.support.functions import registered

BASE = "http://localhost:7071/api/"


HTTP_FUNCTIONS = ("customers", "customer", "snapshots", "snapshot_by_date", "health", "openapi")


ERROR_KEYS = {"error", "message", "parameter"}


PAST = [datetime(2024, 2, 28, 2, 0, tzinfo=UTC), datetime(2024, 2, 29, 2, 0, tzinfo=UTC)]


PAST_RERUN = datetime(2024, 2, 29, 5, 30, 15, tzinfo=UTC)  # a second run the same day: the one served


def _customer(customer_id: str, name: str, domain: str) -> dict[str, Any]:
    return {
        "id": customer_id,
        "companyProfile": {"tenantId": customer_id, "domain": domain, "companyName": name},
        "relationshipToPartner": "reseller",
        "attributes": {"objectType": "Customer"},
    }


SPECIAL = [
    _customer(
        "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0", "Zyxwvü Société Générale", "zyxwvu-societe.onmicrosoft.com"
    ),
    _customer("1f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f1", "ZYXWVU Tech", "zyxwvu-tech.onmicrosoft.com"),
    _customer("2f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f2", "Other Name", "zyxwvu3.example"),
    _customer("3f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f3", "München Prüfung GmbH", "münchen-prüfung.de"),
    _customer("4f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f4", "Contoso Exact", "Contoso-Exact.onmicrosoft.com"),
]


ZYXWVU_IDS = [c["id"] for c in SPECIAL[:3]]


def call(
    name: str,
    query: Any = (),
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    method: str = "GET",
) -> func.HttpResponse:
    """Invoke a registered HTTP function the way the host does: URL with the raw query, params with
    repeated names joined (what the host hands on), route values."""
    pairs = list(query.items()) if isinstance(query, dict) else list(query)
    params: dict[str, str] = {}
    for key, value in pairs:
        params[key] = f"{params[key]},{value}" if key in params else value
    url = (
        BASE
        + (name if path is None else path)
        + ("?" + urlencode(pairs, errors="surrogatepass") if pairs else "")
    )
    request = func.HttpRequest(
        method, url, headers=headers or {}, params=params, route_params=route or {}, body=b""
    )
    return registered()[name].get_user_function()(request)


def customer_call(customer_id: str, **kwargs: Any) -> func.HttpResponse:
    return call("customer", path=f"customers/{customer_id}", route={"customerId": customer_id}, **kwargs)


def date_call(value: str, **kwargs: Any) -> func.HttpResponse:
    return call("snapshot_by_date", path=f"snapshots/{value}", route={"date": value}, **kwargs)


def body(response: func.HttpResponse) -> Any:
    data = response.get_body()
    if response.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return json.loads(data)


def assert_error(response: func.HttpResponse, status: int, code: str, parameter: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_body()[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    payload = json.loads(response.get_body())
    assert set(payload) <= ERROR_KEYS, payload
    assert payload["error"] == code, payload
    assert payload["message"], payload
    assert payload.get("parameter") == parameter, payload
    assert response.headers["Cache-Control"] == "no-store"
    return payload


def ids(payload: dict) -> list[str]:
    return [c["id"] for c in payload["customers"]]


def follow(first: dict, name: str = "customers") -> list[dict]:
    """Every page of a listing, following nextLink as a client would."""
    pages = [first]
    while pages[-1]["nextLink"]:
        link = urlsplit(pages[-1]["nextLink"])
        assert "code" not in link.query  # keys never travel in bodies
        response = call(name, parse_qsl(link.query), path=link.path.removeprefix("/api/"))
        assert response.status_code == 200, response.get_body()
        pages.append(body(response))
        assert len(pages) < 100
    return pages


def write_snapshot(
    container: Any,
    customers: list[dict],
    when: datetime,
    *,
    publish: bool = True,
    commit: bool = True,
    index: bool = True,
) -> Any:
    """A snapshot in the job's own layout at a chosen time (the writer and store the job uses), with its
    lookup index as the job writes it (unless `index` is False): its CommittedSnapshot, or its name when
    it is left uncommitted."""
    store = SnapshotStore(container)
    store.ensure_container()
    generated_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    writer = store.new_snapshot(snapshot_name(when), generated_at)
    writer.add([dumps(c) for c in customers])
    if not commit:
        writer.abort()
        return snapshot_name(when)
    committed = writer.commit(
        {"customerCount": len(customers), "source": {"test": True}},
        {"generatedat": generated_at, "correlationid": "test", "pages": "1"},
    )
    if index:
        committed = store.commit_index(committed, writer.index)
    if publish:
        store.mark_published(store.publish(committed))  # as the job does
    return committed


def foreign_settings() -> list[str]:
    """The machine's or the shell's settings that would steer the job or the API elsewhere."""
    prefixes = ("PARTNER_CENTER_", "SNAPSHOT_", "AzureWebJobsStorage", "KEY_VAULT", "AZURE_", "MSI_", "API_")
    prefixes += ("TEAMS_", "WEBHOOK_")  # the notification settings
    extra = {"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "HEALTH_STALE_AFTER_HOURS"}
    return [name for name in os.environ if name.startswith(prefixes) or name in extra]


@dataclass
class World:
    stack: DevStack
    snapshots: Snapshots
    customers: list[dict]
    latest: dict
    past: list[str]

    def container(self) -> Any:
        return self.stack.blob_service_client().get_container_client(self.snapshots.container)


# Names a spreadsheet would misread or choke on: formulas (OWASP's list), separators, quotes, line breaks,
# non-ASCII scripts and emoji.
HOSTILE = [
    _customer(
        "a0000000-0000-4000-8000-000000000001", '=HYPERLINK("http://evil.example","Click")', "f1.example"
    ),
    _customer("a0000000-0000-4000-8000-000000000002", "+1-800-FORMULA", "f2.example"),
    _customer("a0000000-0000-4000-8000-000000000003", "-2+3+cmd|' /C calc'!A0", "f3.example"),
    _customer("a0000000-0000-4000-8000-000000000004", "@SUM(1+1)*cmd|' /C calc'!A0", "f4.example"),
    _customer("a0000000-0000-4000-8000-000000000005", "\tTabbed Inc", "f5.example"),
    _customer("a0000000-0000-4000-8000-000000000006", "\rCarriage Ltd", "f6.example"),
    _customer(
        "a0000000-0000-4000-8000-000000000007",
        'Smith, Jones & "Partners"\r\nLine Two; Zürich Straße 東京 🚀',
        "münchen-prüfung.de",
    ),
    _customer("a0000000-0000-4000-8000-000000000008", "Plain = Name - OK", "=evil.example"),
]


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "/work/", os.getcwd(), "devstoreaccount1", "127.0.0.1", "AccountKey"):
        assert leak not in text, leak
