"""CSV answers of GET /api/customers (format=csv or Accept: text/csv), through the registered functions."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from devstack.population import make_customers
from devstack.stack import DevStack
from shared.api.csv_answer import _gzip, encode
from shared.api.csv_answer import cell as csv_cell
from shared.api.csv_answer import row as csv_row
from shared.storage.layout import rendition_name
from tests.conftest import Snapshots
from tests.support.api import (
    HOSTILE,
    assert_error,
    body,
    call,
    customer_call,
    foreign_settings,
    write_snapshot,
)
from tests.support.functions import new_instance, run_timer

BOM = b"\xef\xbb\xbf"
HEADER = ["id", "tenantId", "companyName", "domain", "relationshipToPartner"]

FORMULAS = {c["id"] for c in HOSTILE[:6]}


@pytest.fixture(scope="module")
def csv_world(azurite) -> Iterator[dict[str, Any]]:
    patch = pytest.MonkeyPatch()
    for name in foreign_settings():
        patch.delenv(name, raising=False)
    customers = make_customers(150, seed=5) + HOSTILE
    stack = DevStack(azurite=azurite, customers=customers, system_cas=False).start()
    container = f"csv-{os.getpid()}"
    for name, value in {
        **stack.env,
        "SNAPSHOT_CONTAINER": container,
        "API_LATEST_CHECK_SECONDS": "0",
    }.items():
        patch.setenv(name, value)
    run_timer()
    yield {"customers": customers, "snapshots": Snapshots(stack, container)}
    patch.undo()
    stack.close()


def rows(response: Any) -> list[list[str]]:
    data = response.get_body()
    if response.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return parse_csv(data)


def parse_csv(data: bytes) -> list[list[str]]:
    """The data rows of a CSV answer, after checking its BOM and header."""
    assert data.startswith(BOM), data[:20]  # Excel reads UTF-8 only with it
    text = data[len(BOM) :].decode("utf-8")
    parsed = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert parsed[0] == HEADER
    return parsed[1:]


def expected_row(customer: dict[str, Any]) -> list[str]:
    profile = customer["companyProfile"]
    values = [customer["id"], profile["tenantId"], profile["companyName"], profile["domain"]]
    return [*values, customer["relationshipToPartner"]]


def unquoted(value: str) -> str:
    return value[1:] if value.startswith("'") else value


# -- the whole snapshot ------------------------------------------------------------------------------------
def test_the_whole_snapshot_as_rfc4180_csv_with_bom(csv_world):
    response = call("customers", {"format": "csv"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="customers-')
    raw = response.get_body()
    # RFC 4180: CRLF after every record (inside a quoted cell a line break is data), every cell quoted.
    assert raw.endswith(b'"\r\n') and raw.startswith(BOM + b'"id","tenantId","companyName"')
    got = rows(response)
    assert len(got) == len(csv_world["customers"])
    by_id = {row[0]: row for row in got}
    for customer in csv_world["customers"]:
        row = by_id[customer["id"]]
        assert [unquoted(cell) for cell in row] == expected_row(customer)


def test_formula_looking_cells_are_neutralised(csv_world):
    by_id = {row[0]: row for row in rows(call("customers", {"format": "csv"}))}
    for customer in HOSTILE:
        name = by_id[customer["id"]][2]
        if customer["id"] in FORMULAS:
            assert name == "'" + customer["companyProfile"]["companyName"], name
        else:
            assert name == customer["companyProfile"]["companyName"]  # = or - inside a name is harmless
    assert by_id[HOSTILE[-1]["id"]][3] == "'=evil.example"  # every column, not only the name
    for row in by_id.values():
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row


def test_an_excel_hostile_name_round_trips(csv_world):
    response = call("customers", {"format": "csv", "q": "Smith, Jones"})
    (row,) = rows(response)
    assert row[2] == 'Smith, Jones & "Partners"\r\nLine Two; Zürich Straße 東京 🚀'
    assert b'"Smith, Jones & ""Partners""\r\nLine Two; Z\xc3\xbcrich' in response.get_body()
    assert row[3] == "münchen-prüfung.de"


@pytest.mark.parametrize(
    ("accept", "is_csv"),
    [
        ("text/csv", True),
        ("text/csv, */*;q=0.5", True),
        ("text/csv;q=0.9, application/json;q=0.5", True),
        ("application/json, text/csv", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_accept_text_csv_asks_for_csv(csv_world, accept, is_csv):
    response = call("customers", {"top": "3"}, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv" if is_csv else "application/json")


def test_format_wins_over_accept_and_is_checked(csv_world):
    response = call("customers", {"format": "json", "top": "3"}, headers={"Accept": "text/csv"})
    assert response.headers["Content-Type"].startswith("application/json")
    assert_error(call("customers", {"format": "xlsx"}), 400, "invalid_parameter", "format")


# -- filtered and paged ------------------------------------------------------------------------------------
def test_search_and_domain_in_csv(csv_world):
    json_answer = body(call("customers", {"q": "zürich"}))
    csv_answer = call("customers", {"q": "zürich", "format": "csv"})
    assert [row[0] for row in rows(csv_answer)] == [c["id"] for c in json_answer["customers"]]
    assert csv_answer.headers["X-Total-Count"] == str(json_answer["count"])
    (row,) = rows(call("customers", {"domain": "MÜNCHEN-prüfung.de", "format": "csv"}))
    assert row[0] == HOSTILE[6]["id"]
    assert rows(call("customers", {"domain": "nothing.example", "format": "csv"})) == []


def test_every_customer_pages_through_in_csv_with_link_headers(csv_world):
    seen: list[str] = []
    query: list[tuple[str, str]] = [("format", "csv"), ("top", "40"), ("code", "the-callers-key")]
    pages = 0
    while True:
        response = call("customers", query)
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == str(len(csv_world["customers"]))
        seen += [row[0] for row in rows(response)]
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            break
        target, _, rel = link.partition(">; ")
        assert rel == 'rel="next"'
        query = parse_qsl(urlsplit(target.removeprefix("<")).query)
        assert dict(query)["format"] == "csv" and dict(query)["code"] == "the-callers-key"
    assert pages == 4
    assert sorted(seen) == sorted(c["id"] for c in csv_world["customers"]) and len(seen) == len(set(seen))


# -- caching and compression -------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [{"format": "csv"}, {"format": "csv", "q": "contoso", "top": "5"}])
@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_csv_etag_304_and_gzip(csv_world, query, encoding):
    headers = {"Accept-Encoding": encoding} if encoding else {}
    first = call("customers", query, headers=headers)
    json_first = call("customers", {k: v for k, v in query.items() if k != "format"}, headers=headers)
    etag = first.headers["ETag"]
    assert etag != json_first.headers["ETag"]  # a different representation of the same question
    assert "Accept" in first.headers["Vary"] and "Accept-Encoding" in first.headers["Vary"]
    assert (first.headers.get("Content-Encoding") == "gzip") == bool(encoding)
    assert rows(first)
    again = call("customers", query, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.get_body() == b"" and again.headers["ETag"] == etag
    by_accept = call(
        "customers",
        {k: v for k, v in query.items() if k != "format"},
        headers={**headers, "Accept": "text/csv", "If-None-Match": etag},
    )
    assert by_accept.status_code == 304  # Accept: text/csv is the same representation as format=csv


# -- the whole snapshot when it is large: a CSV rendition and a redirect ----------------------------------
def test_a_large_snapshot_as_csv_redirects_to_a_rendition_written_once(make_stack, azurite, caplog):
    extra = {
        "API_SNAPSHOT_INLINE_MAX_BYTES": "1000",
        "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
        "SNAPSHOT_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    stack, snapshots = make_stack(customers=0, env_overrides=extra)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    customers = make_customers(300, seed=9) + HOSTILE
    write_snapshot(container, customers, datetime.now(UTC))
    latest = snapshots.latest()

    caplog.set_level("INFO", logger="shared.api")
    response = call("customers", {"format": "csv"}, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 307, response.get_body()
    payload = json.loads(response.get_body())
    assert payload["snapshot"]["name"] == latest["snapshot"] and payload["contentType"].startswith("text/csv")
    rendition = rendition_name(latest["snapshot"])
    assert rendition in snapshots.names() and rendition.endswith(".csv")
    downloaded = requests.get(response.headers["Location"], timeout=10)
    assert downloaded.status_code == 200 and downloaded.headers["Content-Encoding"] == "gzip"
    assert downloaded.headers["Content-Type"] == "text/csv; charset=utf-8"

    got = parse_csv(downloaded.content)  # requests inflated it
    assert [row[0] for row in got] == [c["id"] for c in customers]
    assert {row[0]: row for row in got}[HOSTILE[0]["id"]][2].startswith("'=HYPERLINK")

    # The second request finds the rendition: not written again, not listed as a snapshot.
    _, properties = snapshots.raw(rendition)
    assert call("customers", {"format": "csv"}).status_code == 307
    assert snapshots.raw(rendition)[1].etag == properties.etag
    written = [r for r in caplog.records if r.getMessage().startswith("api.csv_rendition_written")]
    assert len(written) == 1
    listed = body(call("snapshots"))["snapshots"]
    assert [s["name"] for s in listed] == [latest["snapshot"]]


def test_no_rendition_of_a_snapshot_that_does_not_match_its_manifest(make_stack, azurite):
    extra = {"API_SNAPSHOT_INLINE_MAX_BYTES": "1000"}
    stack, snapshots = make_stack(customers=0, env_overrides=extra)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    write_snapshot(container, make_customers(100, seed=4), datetime.now(UTC))
    latest = snapshots.latest()
    latest["sha256"] = "0" * 64  # e.g. a manifest edited by hand
    container.upload_blob("latest.json", json.dumps(latest).encode(), overwrite=True)
    assert_error(call("customers", {"format": "csv"}), 503, "snapshot_unavailable")
    assert rendition_name(latest["snapshot"]) not in snapshots.names()


# -- cells and batches, directly ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (12, "12"),
        (True, "true"),
        ({"a": "=b"}, '{"a": "=b"}'),
        ("-12", "'-12"),
        ("@home", "'@home"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_a_cell_is_text_and_never_a_formula(value, shown):
    assert csv_cell(value) == shown


def test_a_customer_without_a_profile_is_a_row_of_empty_cells():
    assert csv_row({"id": "x", "companyProfile": None}) == ["x", "", "", "", ""]


def test_more_customers_than_a_batch_keep_their_order():
    customers = make_customers(4500, seed=3)
    lines = [json.dumps(c).encode() for c in customers]
    got = parse_csv(b"".join(encode(lines)))
    assert [r[0] for r in got] == [c["id"] for c in customers]
    compressed = b"".join(_gzip(encode(lines)))
    assert gzip.decompress(compressed) == b"".join(encode(lines))


def test_an_unreadable_accept_weight_counts_as_zero(csv_world):
    response = call("customers", {"top": "1"}, headers={"Accept": "text/csv;q=high"})
    assert response.headers["Content-Type"].startswith("application/json")


def test_the_rendition_leaves_out_lines_that_are_not_customers(make_stack, azurite):
    """Whatever a stored line holds (not JSON, not an object, nested past the parser), the rendition is
    written for the others: a CSV answer never fails on one odd customer."""
    from shared.jsonenc import compact as dumps
    from shared.snapshots.store import SnapshotStore
    from shared.storage.layout import snapshot_name

    extra = {
        "API_SNAPSHOT_INLINE_MAX_BYTES": "1000",
        "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
        "SNAPSHOT_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    stack, snapshots = make_stack(customers=0, env_overrides=extra)
    store = SnapshotStore(stack.blob_service_client().get_container_client(snapshots.container))
    store.ensure_container()
    good = make_customers(30, seed=6)
    odd = ['{"id": broken}', "[1, 2]", '"text"', '{"id":"deep","x":' + "[" * 100_000 + "]" * 100_000 + "}"]
    when = datetime.now(UTC)
    writer = store.new_snapshot(snapshot_name(when), when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    writer.add([dumps(c) for c in good[:10]] + odd + [dumps(c) for c in good[10:]])
    total = len(good) + len(odd)
    store.publish(writer.commit({"customerCount": total, "source": {}}, {"customercount": str(total)}))

    response = call("customers", {"format": "csv"})
    assert response.status_code == 307, response.get_body()
    downloaded = requests.get(response.headers["Location"], timeout=10)
    assert [r[0] for r in parse_csv(downloaded.content)] == [c["id"] for c in good]


# -- text the API cannot encode, and a rendition that fails ---------------------------------------------
def test_a_name_holding_a_lone_surrogate_is_u_fffd_in_every_csv_answer_and_as_stored_in_json(
    make_stack, azurite, monkeypatch
):
    """Partner Center may send "\\ud800" (strict JSON, storable): the JSON answers keep it as stored, every
    CSV answer (a page, a search, the whole snapshot inline and its rendition) writes U+FFFD for it."""
    customers = make_customers(120, seed=15)
    odd = customers[70]
    odd["companyProfile"]["companyName"] = "Lone \ud800 Surrogate Ltd"
    odd["companyProfile"]["domain"] = "lone\udfff.example"
    _stack, snapshots = make_stack(customers=customers)
    run_timer()
    stored = snapshots.document_bytes(snapshots.latest()["snapshot"])
    assert b'"Lone \\ud800 Surrogate Ltd"' in stored  # the JSON escape, as Partner Center sent it
    as_json = customer_call(odd["id"])
    assert as_json.status_code == 200 and json.loads(as_json.get_body()) == odd

    def odd_row(response: Any) -> list[str]:
        assert response.status_code == 200, response.get_body()[:300]
        return {row[0]: row for row in rows(response)}[odd["id"]]

    shown = ["Lone \ufffd Surrogate Ltd", "lone\ufffd.example"]
    assert odd_row(call("customers", {"format": "csv", "top": "100"}))[2:4] == shown
    assert odd_row(call("customers", {"format": "csv", "q": "surrogate"}))[2:4] == shown
    assert (
        odd_row(call("customers", {"format": "csv", "top": "5", "continuation": _page_of(70)}))[2:4] == shown
    )
    whole = call("customers", {"format": "csv"}, headers={"Accept-Encoding": "gzip"})
    assert odd_row(whole)[2:4] == shown and len(rows(whole)) == len(customers)

    # A snapshot too large to answer inline: the CSV rendition beside it.
    monkeypatch.setenv("API_SNAPSHOT_INLINE_MAX_BYTES", "1000")
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", "")
    monkeypatch.setenv("SNAPSHOT_STORAGE_CONNECTION_STRING", azurite.connection_string)
    new_instance()
    redirected = call("customers", {"format": "csv"})
    assert redirected.status_code == 307, redirected.get_body()[:300]
    downloaded = requests.get(redirected.headers["Location"], timeout=10)
    got = {row[0]: row for row in parse_csv(downloaded.content)}
    assert len(got) == len(customers) and got[odd["id"]][2:4] == shown


def _page_of(position: int) -> str:
    """The continuation token of the page that starts at `position` (from a first page's nextLink)."""
    first = body(call("customers", {"top": str(position)}))
    return dict(parse_qsl(urlsplit(first["nextLink"]).query))["continuation"]


def test_a_rendition_that_fails_is_attempted_once_per_snapshot(make_stack, azurite, monkeypatch, caplog):
    """A snapshot whose rendition cannot be written (here: its bytes do not match latest.json's sha256) is
    streamed once, logged once, and answered 503 at once after that; the next snapshot gets its own, and a
    storage error is tried again."""
    import ssl

    from devstack.storage_proxy import StorageProxy

    stack, snapshots = make_stack(customers=0)
    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    proxy = StorageProxy(stack.tls.ssl_server_context(), azurite.account_url, client)
    proxy.start()
    streamed: list[str] = []
    proxy.on("GET", r"/customers-\d{8}T\d{6}Z\.json(\?|$)", streamed.append)
    container = stack.blob_service_client().get_container_client(snapshots.container)
    write_snapshot(container, make_customers(100, seed=4), datetime.now(UTC) - timedelta(minutes=5))
    latest = snapshots.latest()
    latest["sha256"] = "0" * 64
    container.upload_blob("latest.json", json.dumps(latest).encode(), overwrite=True)
    monkeypatch.setenv("API_SNAPSHOT_INLINE_MAX_BYTES", "1000")
    monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", "")
    monkeypatch.setenv(
        "SNAPSHOT_STORAGE_CONNECTION_STRING",
        azurite.connection_string.replace(azurite.account_url, proxy.account_url),
    )
    caplog.set_level("INFO", logger="shared.api")
    try:
        assert_error(call("customers", {"format": "csv"}), 503, "snapshot_unavailable")
        once = len(streamed)
        assert once >= 1
        for _ in range(3):
            assert_error(call("customers", {"format": "csv"}), 503, "snapshot_unavailable")
        assert len(streamed) == once  # not streamed again
        failed = [r for r in caplog.records if r.getMessage().startswith("api.csv_rendition_failed")]
        assert len(failed) == 1
        write_snapshot(container, make_customers(50, seed=5), datetime.now(UTC))  # the next publish
        # Storage failing is not the snapshot's doing: not remembered, the next request writes it.
        proxy.fail("GET", r"/customers-\d{8}T\d{6}Z\.json(\?|$)", status=500, times=100)
        assert_error(call("customers", {"format": "csv"}), 503, "storage_unavailable")
        proxy.faults.clear()
        assert call("customers", {"format": "csv"}).status_code == 307
    finally:
        proxy.stop()
