"""The OpenAPI document (shared/api/openapi.json): valid, complete, served anonymously, and true of the
running API (schemathesis against the local host, with the function key)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.host import FunctionsHost
from devstack.population import make_customers
from devstack.stack import DevStack
from shared.api.openapi import DOCUMENT
from tests.support.api import HOSTILE, SPECIAL, foreign_settings
from tests.support.functions import registered, run_timer
from tests.support.openapi import assert_documented, document
from tests.support.paths import REPO

ROOT = REPO
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"


def http_routes() -> dict[str, Any]:
    """'/' + route template → the registered HTTP function, as function_app.py declares them."""
    return {"/" + f.get_trigger().route.strip("/"): f for f in registered().values() if f.is_http_function()}


def test_the_document_is_valid_openapi_3_0():
    import schemathesis

    doc = document()
    assert doc["openapi"].startswith("3.0.")
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.0 JSON schema


def test_every_route_of_function_app_is_in_the_document_and_nothing_else():
    """Add a route to function_app.py without documenting it (or the reverse) and this fails."""
    doc = document()
    assert set(doc["paths"]) == set(http_routes())
    for path, function in http_routes().items():
        operations = doc["paths"][path]
        assert set(operations) == {"get"}, path  # every other method is a 405
        operation = operations["get"]
        declared = {p["name"] for p in operation.get("parameters", []) if "$ref" not in p} | {
            doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]]["name"]
            for p in operation.get("parameters", [])
            if "$ref" in p
        }
        assert set(re.findall(r"\{(\w+)\}", path)) <= declared, path
        anonymous = str(function.get_trigger().auth_level) == "ANONYMOUS"
        assert (operation.get("security") == []) == anonymous, path


def test_every_query_parameter_a_handler_accepts_is_documented():
    from shared.api import handlers

    doc = document()

    def names(path: str) -> set[str]:
        found = set()
        for p in doc["paths"][path]["get"].get("parameters", []):
            p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
            if p["in"] == "query":
                found.add(p["name"])
        return found

    from shared.api import changes

    assert names("/customers") == handlers.CUSTOMERS_PARAMETERS
    assert names("/snapshots") == handlers.SNAPSHOTS_PARAMETERS
    assert names("/changes") == changes.CHANGES_PARAMETERS
    for path in (
        "/customers/{customerId}",
        "/customers/{customerId}/history",
        "/snapshots/{date}",
        "/health",
        "/openapi.json",
    ):
        assert names(path) == set(), path


def test_every_error_code_the_api_can_answer_is_in_the_document():
    sources = [*(ROOT / "shared" / "api").glob("*.py"), ROOT / "devstack" / "host.py"]
    text = "\n".join(path.read_text(encoding="utf-8") for path in sources)
    used = set(re.findall(r'(?:ApiError|error_response)\(\s*\d{3},\s*"(\w+)"', text))
    used |= set(re.findall(r'"error":\s*"(\w+)"', text))
    assert {"invalid_parameter", "snapshot_unavailable", "not_found"} <= used  # the patterns still find them
    enum = document()["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert used == set(enum)


# -- against the running API ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(azurite) -> Iterator[dict[str, Any]]:
    """make serve in small: stand-ins, one job run, function_app.py behind the local host on a free port."""
    patch = pytest.MonkeyPatch()
    for name in foreign_settings():
        patch.delenv(name, raising=False)
    stack = DevStack(
        azurite=azurite, customers=make_customers(120, seed=2) + SPECIAL + HOSTILE, system_cas=False
    ).start()
    for name, value in {**stack.env, "SNAPSHOT_CONTAINER": f"openapi-{os.getpid()}"}.items():
        patch.setenv(name, value)
    run_timer()
    with FunctionsHost() as host:
        yield {"stack": stack, "host": host}
    patch.undo()
    stack.close()


def test_the_document_is_served_anonymously_with_the_apps_own_server(served):
    host: FunctionsHost = served["host"]
    response = requests.get(f"{host.url}/api/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    served_doc = response.json()
    assert served_doc["servers"][0]["url"] == f"{host.url}/api"
    assert {k: v for k, v in served_doc.items() if k != "servers"} == {
        k: v for k, v in document().items() if k != "servers"
    }
    text = response.text
    assert not any(c["id"] in text for c in served["stack"].partner_center.customers)  # no customer data
    again = requests.get(
        f"{host.url}/api/openapi.json", headers={"If-None-Match": response.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304


def test_schemathesis_finds_the_running_api_true_to_its_document(served, tmp_path):
    """No 5xx, every status code, content type and body as documented, with the function key."""
    host: FunctionsHost = served["host"]
    command = [
        str(SCHEMATHESIS),
        "run",
        str(DOCUMENT),  # the file: loaded from its own URL, schemathesis leaves /openapi.json untested
        "--url",
        f"{host.url}/api",
        "--checks",
        CHECKS,
        "--header",
        f"x-functions-key: {host.function_key}",
        "--max-examples",
        "25",
        "--seed",
        "12",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--max-redirects",
        "0",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(output[-3000:])  # shown with -s: what was tried
    assert re.search(r"Operations:\s+8 selected / 8 total", output), output[:2000]


# -- answers across a step whose changes are unknown (issue: the change history gap) --------------------


def test_answers_across_an_unknown_step_are_as_documented(make_stack):
    from tests.support.api import body, call
    from tests.support.changes import DAMAGED, GapNights, history_call, since

    nights = GapNights(make_stack, DAMAGED)
    changes = body(call("changes", {"since": since(10)}))
    history = body(history_call(nights.early["id"]))

    assert changes["incomplete"] and changes["changes"]
    assert_documented(changes, "ChangeList")
    assert history["incomplete"] and history["events"]
    assert_documented(history, "CustomerHistory")
    with pytest.raises(ValueError, match="incomplete"):  # the check sees an undocumented field
        assert_documented(history | {"incomplete": [{"unknown": 1}]}, "CustomerHistory")
