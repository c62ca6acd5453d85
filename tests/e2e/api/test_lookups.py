"""GET /api/customers and GET /api/customers/{customerId}: the whole snapshot, one customer, ?domain= and
?q=, paging (the shared `world` of conftest.py)."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.api import (
    SPECIAL,
    ZYXWVU_IDS,
    assert_error,
    body,
    call,
    customer_call,
    follow,
    ids,
)


# -- GET /api/customers: the whole snapshot ------------------------------------------------------------
def test_whole_snapshot_is_served_as_stored_gzip_when_accepted(world):
    stored, _ = world.snapshots.raw(world.latest["snapshot"])

    zipped = call("customers", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    plain = call("customers")

    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert zipped.get_body() == stored  # the stored bytes as they are: no recompression
    assert plain.get_body() == world.snapshots.document_bytes(world.latest["snapshot"])
    assert json.loads(plain.get_body())["customers"] == world.customers
    for response in (zipped, plain):
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["Vary"] == "Accept, Accept-Encoding"  # JSON or CSV
        assert re.fullmatch(r"private, max-age=\d+, must-revalidate", response.headers["Cache-Control"])
        assert response.headers["X-Snapshot-Name"] == world.latest["snapshot"]
    assert zipped.headers["ETag"] != plain.headers["ETag"]  # two representations, two strong ETags


@pytest.mark.parametrize("accept", ["gzip;q=0", "identity", "br", "*;q=0", "GZIP;q=0.0"])
def test_gzip_only_when_the_client_accepts_it(world, accept):
    response = call("customers", headers={"Accept-Encoding": accept})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert json.loads(response.get_body())["customerCount"] == len(world.customers)


def test_filtered_answers_are_gzipped_too(world):
    response = call("customers", {"q": "zyxwvu"}, headers={"Accept-Encoding": "gzip, deflate"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert sorted(ids(body(response))) == sorted(ZYXWVU_IDS)


# -- GET /api/customers/{customerId} -------------------------------------------------------------------
def test_a_customer_by_id_as_stored_case_insensitive(world):
    wanted = world.customers[42]
    for given in (wanted["id"], wanted["id"].upper()):
        response = customer_call(given)
        assert response.status_code == 200
        assert json.loads(response.get_body()) == wanted
        # Byte for byte as the Partner Center stand-in sent it (its json.dumps defaults, non-ASCII kept).
        assert response.get_body() == json.dumps(wanted, ensure_ascii=False).encode()
        assert response.headers["X-Snapshot-Generated-At"] == world.latest["generatedAt"]


def test_a_customer_id_in_braces_is_the_same_customer(world):
    """One rule for ids on every route, the change records' one: braces and case make no other tenant."""
    wanted = world.customers[42]
    plain = customer_call(wanted["id"])
    for given in ("{" + wanted["id"] + "}", "{" + wanted["id"].upper() + "}"):
        response = customer_call(given)
        assert response.status_code == 200, given
        assert response.get_body() == plain.get_body()
        assert response.headers["ETag"] == plain.headers["ETag"]


def test_an_unknown_customer_is_404(world):
    assert_error(
        customer_call("00000000-0000-4000-8000-000000000000"), 404, "customer_not_found", "customerId"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-guid",
        "..",
        "..%2F..%2Flatest.json",
        "{0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0",
        "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0}",
        "{{0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0}}",
        "0f1e2d3c4b5a49788796a5b4c3d2e1f0",
        "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0a",
        "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1fg",
        "\u0660f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0",  # an Arabic-Indic zero
        "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0\n",
        "x" * 5000,
    ],
)
def test_a_malformed_customer_id_is_400(world, bad):
    assert_error(customer_call(bad), 400, "invalid_customer_id", "customerId")


# -- ?domain= and ?q= ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given",
    [
        "Contoso-Exact.onmicrosoft.com",
        "contoso-exact.ONMICROSOFT.COM",
        "contoso-exact.onmicrosoft.com.",  # the fully qualified form
        " contoso-exact.onmicrosoft.com ",
    ],
)
def test_domain_equals_case_insensitive(world, given):
    payload = body(call("customers", {"domain": given}))
    assert ids(payload) == [SPECIAL[4]["id"]]
    assert payload["count"] == 1
    assert payload["snapshot"] == {
        "name": world.latest["snapshot"],
        "generatedAt": world.latest["generatedAt"],
    }
    assert payload["query"] == {"domain": given.strip()}
    assert payload["nextLink"] is None


def test_an_idn_domain_matches_in_unicode_and_punycode(world):
    punycode = "xn--" + "münchen-prüfung".encode("punycode").decode() + ".de"
    for given in ("münchen-prüfung.de", "MÜNCHEN-PRÜFUNG.DE", punycode, punycode.upper()):
        assert ids(body(call("customers", {"domain": given}))) == [SPECIAL[3]["id"]], given


def test_domain_is_equality_not_containment(world):
    payload = body(call("customers", {"domain": "contoso-exact"}))
    assert payload["count"] == 0
    assert payload["customers"] == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("zyxwvu", ZYXWVU_IDS),  # in a name or a domain
        ("ZYXWVÜ", ZYXWVU_IDS),  # case- and accent-insensitive
        ("Zyxwvü Société", ZYXWVU_IDS[:1]),
        ("zyxwvu societe", ZYXWVU_IDS[:1]),
        ("zyxwvu3.example", ZYXWVU_IDS[2:3]),
        ("munchen prufung", [SPECIAL[3]["id"]]),
        ("MÜNCHEN-PRÜFUNG.DE", [SPECIAL[3]["id"]]),
        ("no such customer anywhere", []),
    ],
)
def test_search_by_name_or_domain(world, q, expected):
    payload = body(call("customers", {"q": q}))
    assert sorted(ids(payload)) == sorted(expected)
    assert payload["count"] == len(expected)
    assert payload["query"] == {"q": q}


def test_search_matches_what_a_reader_would_expect_across_the_population(world):
    # "straße" finds "Zürich Straße ..." written with ß and typed as ss, and the other way round.
    expected = sorted(c["id"] for c in world.customers if "Straße" in c["companyProfile"]["companyName"])
    assert expected
    for q in ("straße", "STRASSE", "zurich strasse"):
        payload = body(call("customers", {"q": q, "top": "1000"}))
        assert sorted(ids(payload)) == expected, q


def test_search_answers_page_with_next_links(world):
    first = body(call("customers", {"q": "onmicrosoft", "top": "40"}))
    pages = follow(first)
    found = [c["id"] for page in pages for c in page["customers"]]
    expected = [c["id"] for c in world.customers if "onmicrosoft" in c["companyProfile"]["domain"].lower()]
    assert found == expected
    assert first["count"] == len(expected) > 120
    assert all(page["count"] == len(expected) for page in pages)
    assert [len(page["customers"]) for page in pages[:-1]] == [40] * (len(pages) - 1)


def test_every_customer_can_be_paged_through(world):
    pages = follow(body(call("customers", {"top": "70"})))
    assert [c for page in pages for c in page["customers"]] == world.customers
    assert pages[0]["query"] == {}
    assert pages[0]["count"] == len(world.customers)
