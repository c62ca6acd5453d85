"""The customer id rule: the id routes accept and normalise ids as the change records key them."""

from __future__ import annotations

import pytest

from shared.changes.record import change_key
from shared.customer_id import route_id, tenant_key

ID = "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"


@pytest.mark.parametrize("given", [ID, ID.upper(), "{" + ID + "}", "{" + ID.upper() + "}"])
def test_the_id_routes_answer_the_tenant_the_change_records_key(given):
    assert route_id(given) == change_key(given) == tenant_key(given) == ID


@pytest.mark.parametrize(
    "given",
    [
        "",
        "not-a-guid",
        "{" + ID,
        ID + "}",
        "{{" + ID + "}}",
        ID.replace("-", ""),  # the records key it as this tenant too, but no route accepts it
        "urn:uuid:" + ID,
        "\u0660" + ID[1:],  # an Arabic-Indic zero
        ID + "\n",
        " " + ID,
    ],
)
def test_the_id_routes_accept_only_a_guid_with_or_without_braces(given):
    assert route_id(given) is None


def test_anything_but_a_guid_has_no_tenant_key():
    assert tenant_key("not-a-guid") is None and change_key("not-a-guid") == "~not-a-guid"
