"""Bad and hostile requests, other methods, the declared routes and failures answered without internals."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.api import (
    HTTP_FUNCTIONS,
    SPECIAL,
    assert_error,
    assert_no_internals,
    body,
    call,
    customer_call,
    date_call,
)
from tests.support.functions import registered


# -- bad and hostile input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "query", "code", "parameter"),
    [
        ("customers", {"foo": "1"}, "unknown_parameter", "foo"),
        ("customers", {"$top": "1"}, "unknown_parameter", "$top"),
        ("customers", {"search": "contoso"}, "unknown_parameter", "search"),
        ("customers", [("q", "a"), ("q", "b")], "invalid_parameter", "q"),
        ("customers", [("q", "a"), ("Q", "b")], "invalid_parameter", "q"),
        ("customers", {"q": ""}, "invalid_parameter", "q"),
        ("customers", {"q": "   "}, "invalid_parameter", "q"),
        ("customers", {"q": "x" * 101}, "invalid_parameter", "q"),
        ("customers", {"q": "é" * 101}, "invalid_parameter", "q"),
        ("customers", {"q": "x" * 100_000}, "invalid_parameter", "q"),
        ("customers", {"q": "contoso\x00"}, "invalid_parameter", "q"),
        ("customers", {"q": "a\nb"}, "invalid_parameter", "q"),
        ("customers", {"q": "\x1b[31m"}, "invalid_parameter", "q"),
        ("customers", {"q": "\ud800"}, "invalid_parameter", "q"),
        ("customers", {"q": "\u0301\u0308"}, "invalid_parameter", "q"),  # accents alone would match everyone
        ("customers", {"domain": "d" * 254}, "invalid_parameter", "domain"),
        ("customers", {"domain": "contoso .com"}, "invalid_parameter", "domain"),
        ("customers", {"domain": "../latest.json"}, "invalid_parameter", "domain"),
        ("customers", {"domain": "a.com", "q": "a"}, "invalid_parameter", "q"),
        ("customers", {"top": "0"}, "invalid_parameter", "top"),
        ("customers", {"top": "1001"}, "invalid_parameter", "top"),
        ("customers", {"top": "-1"}, "invalid_parameter", "top"),
        ("customers", {"top": "1e3"}, "invalid_parameter", "top"),
        ("customers", {"top": "٣"}, "invalid_parameter", "top"),
        ("customers", {"continuation": "garbage!"}, "invalid_continuation", "continuation"),
        ("customers", {"continuation": "e30"}, "invalid_continuation", "continuation"),  # {}
        ("customers", {"continuation": "A" * 600}, "invalid_continuation", "continuation"),
        ("snapshots", {"top": "101"}, "invalid_parameter", "top"),
        ("snapshots", {"q": "x"}, "unknown_parameter", "q"),
        (
            "snapshots",
            {"continuation": "eyJiZWZvcmUiOiIuLi9sYXRlc3QuanNvbiJ9"},
            "invalid_continuation",
            "continuation",
        ),
        ("health", {"verbose": "1"}, "unknown_parameter", "verbose"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_parameter(world, name, query, code, parameter):
    assert_error(call(name, query), 400, code, parameter)


def test_parameters_on_single_item_routes_are_rejected(world):
    assert_error(customer_call(world.customers[0]["id"], query={"q": "x"}), 400, "unknown_parameter", "q")
    assert_error(date_call("2024-02-29", query={"top": "1"}), 400, "unknown_parameter", "top")


def test_a_hostile_parameter_name_is_echoed_short_and_printable(world):
    payload = assert_error(
        call("customers", {"\x07" + "n" * 500: "1"}),
        400,
        "unknown_parameter",
        "?" + "n" * 39 + "…",
    )
    assert len(payload["message"]) < 200


def test_the_function_key_parameter_is_not_an_unknown_parameter(world):
    response = call("customers", {"code": "the-key", "q": "zyxwvu", "top": "2"})
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["customers", "snapshots"])
def test_a_caller_paging_with_code_keeps_it_in_next_link(world, name):
    """A caller that authenticates with ?code= can follow nextLink as it is; a key sent in the
    header never appears in a body, and the ETag differs with the key (the bodies differ)."""
    query = {"code": "the-key", "top": "2"} | ({"q": "zyxwvu"} if name == "customers" else {})
    with_code = body(call(name, query))
    assert dict(parse_qsl(urlsplit(with_code["nextLink"]).query))["code"] == "the-key"
    header_key = {"x-functions-key": "header-key"}
    without = call(name, {k: v for k, v in query.items() if k != "code"}, headers=header_key)
    assert "code" not in body(without)["nextLink"] and b"header-key" not in without.get_body()
    assert without.headers["ETag"] != call(name, query).headers["ETag"]


@pytest.mark.parametrize(
    "q", ["🚀", "Blue Yonder 🚀", "東京", "москва", "\u202egnp.exe", "' OR 1=1 --", "%00", "<script>"]
)
def test_odd_but_valid_searches_answer_normally(world, q):
    response = call("customers", {"q": q})
    assert response.status_code == 200
    payload = body(response)
    expected = [c for c in world.customers if q.casefold() in c["companyProfile"]["companyName"].casefold()]
    assert payload["count"] >= len(expected)


# -- methods, errors, failures -------------------------------------------------------------------------
@pytest.mark.parametrize("name", HTTP_FUNCTIONS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_are_405_in_json(world, name, method):
    response = call(name, method=method, route={"customerId": SPECIAL[0]["id"], "date": "2024-02-29"})
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


def test_every_http_route_is_declared_as_the_issue_asks():
    declared = {
        name: (f.get_trigger().route, str(f.get_trigger().auth_level), f.get_trigger().methods)
        for name, f in registered().items()
        if f.is_http_function()
    }
    assert declared == {
        "customers": ("customers", "FUNCTION", None),
        "customer": ("customers/{customerId}", "FUNCTION", None),
        "snapshots": ("snapshots", "FUNCTION", None),
        "snapshot_by_date": ("snapshots/{date}", "FUNCTION", None),
        "health": ("health", "ANONYMOUS", None),
        "changes": ("changes", "FUNCTION", None),
        "customer_history": ("customers/{customerId}/history", "FUNCTION", None),
        "openapi": ("openapi.json", "ANONYMOUS", None),
    }


def test_an_unexpected_failure_is_a_generic_500_with_no_internals(world, env, caplog):
    from shared.api.latest import LatestCache

    def explode(self, manifest):
        raise RuntimeError(
            f"boom at {os.getcwd()}/secret-path with {os.environ['SNAPSHOT_STORAGE_ACCOUNT_URL']}"
        )

    env.setattr(LatestCache, "snapshot", explode)
    payload = assert_error(customer_call(world.customers[0]["id"]), 500, "internal_error")
    assert_no_internals(json.dumps(payload))
    assert "boom at" in caplog.text  # logged on the server side


def test_unreachable_storage_is_503_quickly(world, env):
    env.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", "https://127.0.0.1:9/devstoreaccount1")  # discard: refused
    env.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
    for response in (
        call("customers"),
        customer_call(SPECIAL[0]["id"]),
        call("snapshots"),
        date_call("2024-02-29"),
    ):
        payload = assert_error(response, 503, "storage_unavailable")
        assert response.headers["Retry-After"]
        assert "127.0.0.1" not in payload["message"]
    health = call("health")
    assert health.status_code == 503
    assert json.loads(health.get_body())["status"] == "unavailable"


def test_bad_settings_are_a_generic_500(world, env):
    env.setenv("SNAPSHOT_CONTAINER", "Not_A_Valid_Container")
    payload = assert_error(call("customers"), 500, "internal_error")
    assert "Not_A_Valid_Container" not in json.dumps(payload)


def test_the_api_needs_no_partner_center_credentials(world, env):
    env.setenv("API_SAS_LIFETIME_SECONDS", "303")  # settings are read again
    env.delenv("KEY_VAULT_URL", raising=False)
    env.setenv("PARTNER_CENTER_PAGE_SIZE", "100000")  # a job-only mistake does not take the API down
    assert customer_call(SPECIAL[0]["id"]).status_code == 200
