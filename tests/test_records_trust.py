"""Change records, the completeness guard and /api/health under a hostile store (issue 16, items 7-12).

End to end: the timer function and the registered HTTP functions, the stand-ins, Azurite; what a hostile
store holds is written straight into the container (and a storage proxy counts what the API reads).

Four nights (tests/test_changes_api.py's Nights), g0..g3:
    A  baseline
    B  `leaver` removed, `renamed` renamed
    C  `leaver` back, `newcomer` added, `gone` removed
    D  nothing changed
"""

from __future__ import annotations

import copy
import gzip
from typing import Any

import pytest
from azure.storage.blob import ContentSettings

from tests.functions import run_timer
from tests.test_api import body, call
from tests.test_changes_api import Nights, history_call, since, snapshot_at
from tests.test_snapshot_job import next_second

RECORD_UNREADABLE = "the change record of this step cannot be read"
BASE_UNREADABLE = "the snapshot before this step, the oldest retained, cannot be read"
GZIP = ContentSettings(content_type="application/json", content_encoding="gzip")


def _container(nights_or_stack: Any, snapshots: Any = None) -> Any:
    if snapshots is None:
        stack, snapshots = nights_or_stack.stack, nights_or_stack.snapshots
    else:
        stack = nights_or_stack
    return stack.blob_service_client().get_container_client(snapshots.container)


def record_at(nights: Nights, n: int) -> str:
    return snapshot_at(nights, nights.generated[n]).replace("/customers-", "/changes-")


def replace_blob(container: Any, name: str, data: bytes, settings: ContentSettings | None = GZIP) -> None:
    """Writes `data` over a blob, keeping its metadata (a record's metadata is the chain's link)."""
    blob = container.get_blob_client(name)
    metadata = blob.get_blob_properties().metadata
    blob.upload_blob(data, overwrite=True, metadata=metadata, content_settings=settings)


def step(nights: Nights, n: int, reason: str) -> dict[str, Any]:
    g = nights.generated
    return {
        "snapshot": snapshot_at(nights, g[n]),
        "generatedAt": g[n],
        "previousSnapshot": snapshot_at(nights, g[n - 1]),
        "previousGeneratedAt": g[n - 1],
        "reason": reason,
    }


@pytest.fixture
def nights(make_stack) -> Nights:
    return Nights(make_stack)


# -- 12: field paths in change records are unambiguous ---------------------------------------------------
def test_field_paths_are_json_pointers_and_never_collide(make_stack):
    stack, snapshots = make_stack(customers=20)
    run_timer()
    customers = copy.deepcopy(stack.partner_center.customers)
    target = customers[4]
    old_name = target["companyProfile"]["companyName"]
    target["companyProfile"]["companyName"] = "Real Rename Ltd"
    target["companyProfile.companyName"] = "Impostor"  # a top-level field with a dot in its name
    target["a/b~c"] = 1
    stack.partner_center.customers = customers
    next_second()

    run_timer()

    record = snapshots.record(snapshots.latest()["changes"]["name"])
    assert record["schemaVersion"] == 2
    assert record["changed"] == [
        {
            "id": target["id"],
            "fields": {
                "/companyProfile/companyName": {"before": old_name, "after": "Real Rename Ltd"},
                "/companyProfile.companyName": {"before": None, "after": "Impostor"},
                "/a~1b~0c": {"before": None, "after": 1},
            },
        }
    ]
    served = body(call("changes", {"since": since(0)}))["changes"]
    assert [c["fields"] for c in served] == [record["changed"][0]["fields"]]


def test_records_with_dotted_paths_are_still_read_and_served_as_pointers(nights):
    """A record written before JSON Pointer paths (schemaVersion 1, dotted paths) reads as before."""
    g = nights.generated
    name = record_at(nights, 1)
    document = nights.snapshots.document_bytes(name)
    before = nights.renamed["companyProfile"]["companyName"]
    version_1 = (
        document.replace(b'"schemaVersion":2', b'"schemaVersion":1', 1)
        .replace(b'"/companyProfile/companyName"', b'"companyProfile.companyName"')
        .replace(b'"fields":{', b'"fields":{"relationshipToPartner":{"before":"a","after":"b"},', 1)
    )
    assert b'"companyProfile.companyName"' in version_1
    replace_blob(_container(nights), name, gzip.compress(version_1))

    fields = {
        "/relationshipToPartner": {"before": "a", "after": "b"},
        "/companyProfile/companyName": {"before": before, "after": "Renamed Ltd"},
    }
    payload = body(call("changes", {"since": since(10), "type": "changed"}))
    assert [(c["id"], c["generatedAt"], c["fields"]) for c in payload["changes"]] == [
        (nights.renamed["id"], g[1], fields)
    ]
    assert payload["incomplete"] == []
    history = body(history_call(nights.renamed["id"]))
    assert [e["fields"] for e in history["events"]] == [fields]
