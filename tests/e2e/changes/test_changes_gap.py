"""A run that cannot read the previous snapshot must not cut the change history (end to end: the timer
function, the stand-ins, Azurite, then /api/changes and /api/customers/{id}/history).

Four nights, the second snapshot made unreadable before the third night:
    A  baseline
    B  `early` added, `left_early` removed                      (compared: a normal record)
    C  `late` added, `left_late` removed, `renamed` renamed      (B unreadable: comparison unavailable)
    D  `last` added                                             (compared with C again: a normal record)
"""

from __future__ import annotations

import gzip
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared import events
from tests.support.api import body, call
from tests.support.changes import (
    DAMAGED,
    FORMAT_REASON,
    GROWN,
    MISSING,
    MISSING_REASON,
    NOT_THE_LAYOUT,
    REASONS,
    GapNights,
    history_call,
    since,
)


@pytest.fixture(params=[DAMAGED, NOT_THE_LAYOUT, MISSING])
def gap(request, make_stack) -> tuple[GapNights, str]:
    return GapNights(make_stack, request.param), request.param


# -- 1: the record ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [DAMAGED, NOT_THE_LAYOUT, GROWN, MISSING])
def test_a_run_that_cannot_compare_still_writes_a_record_saying_so(make_stack, caplog, how):
    nights = GapNights(make_stack, how, caplog)
    b, c, d = nights.runs[1:]
    record_c = nights.snapshots.record(c["changes"])

    assert record_c == {
        "schemaVersion": 2,
        "snapshot": c["snapshot"],
        "previousSnapshot": b["snapshot"],
        "generatedAt": c["generatedAt"],
        "previousGeneratedAt": b["generatedAt"],
        "counts": None,
        "comparison": {"available": False, "reason": REASONS[how]},
        "added": [],
        "removed": [],
        "changed": [],
    }
    _data, properties = nights.snapshots.raw(c["changes"])
    assert properties.content_settings.content_encoding == "gzip"
    assert properties.metadata["previoussnapshot"] == b["snapshot"]
    assert properties.metadata["comparison"] == "unavailable"
    assert properties.metadata["comparisonreason"] == REASONS[how]
    assert not {"added", "removed", "changed"} & set(properties.metadata)
    # latest.json named it while C was the latest: its manifest is kept in C's .published marker
    marker = json.loads(nights.snapshots.raw(c["snapshot"].replace(".json", ".published"))[0])
    assert marker["changes"] == {
        "name": c["changes"],
        "counts": None,
        "comparison": {"available": False, "reason": REASONS[how]},
    }
    assert c["previousSnapshot"] == b["snapshot"]
    assert (c["added"], c["removed"], c["changed"]) == (None, None, None)
    unavailable = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith(events.SNAPSHOT_DIFF_UNAVAILABLE)
    ]
    assert len(unavailable) == 1

    # the next clean run compares with C again
    latest = nights.snapshots.latest()
    assert latest["snapshot"] == d["snapshot"]
    assert latest["changes"] == {"name": d["changes"], "counts": {"added": 1, "removed": 0, "changed": 0}}
    record_d = nights.snapshots.record(d["changes"])
    assert "comparison" not in record_d
    assert record_d["previousSnapshot"] == c["snapshot"]
    assert [e["id"] for e in record_d["added"]] == [nights.last["id"]]
    assert (d["added"], d["removed"], d["changed"]) == (1, 0, 0)


def test_latest_json_names_a_record_without_comparison_and_the_api_reads_it(make_stack):
    nights = GapNights(make_stack, DAMAGED)
    c = nights.runs[2]
    # C as the latest again (what latest.json said between nights C and D): the API still reads it
    marker = nights.snapshots.raw(c["snapshot"].replace(".json", ".published"))[0]
    nights.container.upload_blob("latest.json", marker, overwrite=True)

    payload = body(call("changes", {"since": since(10)}))

    assert payload["incomplete"] == [nights.step(DAMAGED)]
    assert [x["generatedAt"] for x in payload["changes"]] == [nights.generated[1]] * 2
    assert call("customers").status_code == 200


# -- 2: /api/changes -----------------------------------------------------------------------------------
def test_changes_over_a_range_spanning_the_gap_list_both_sides_and_the_unknown_step(gap):
    nights, how = gap
    g = nights.generated

    payload = body(call("changes", {"since": since(10)}))

    assert [(x["type"], x["id"], x["generatedAt"]) for x in payload["changes"]] == [
        ("added", nights.early["id"], g[1]),
        ("removed", nights.left_early["id"], g[1]),
        ("added", nights.last["id"], g[3]),
    ]
    assert payload["incomplete"] == [nights.step(how)]
    assert payload["nextLink"] is None
    assert payload["query"] == {"since": since(10), "until": since(0)}


def test_the_unknown_step_is_listed_only_in_ranges_that_hold_it(gap):
    nights, how = gap
    only_c = body(call("changes", {"since": since(2), "until": since(2)}))
    assert (only_c["changes"], only_c["incomplete"]) == ([], [nights.step(how)])
    only_d = body(call("changes", {"since": since(1)}))
    assert only_d["incomplete"] == []
    assert [x["id"] for x in only_d["changes"]] == [nights.last["id"]]
    removed = body(call("changes", {"since": since(10), "type": "removed"}))
    assert [x["id"] for x in removed["changes"]] == [nights.left_early["id"]]
    assert removed["incomplete"] == [nights.step(how)]  # a removal may be missing there too


def test_the_unknown_step_is_on_every_page_and_etag_and_gzip_hold(make_stack):
    nights = GapNights(make_stack, DAMAGED)
    whole = body(call("changes", {"since": since(10)}))
    seen, pages, query = [], 0, {"since": since(10), "top": "1"}
    for _ in range(10):
        response = call("changes", query)
        payload = body(response)
        pages += 1
        assert payload["incomplete"] == whole["incomplete"] == [nights.step(DAMAGED)]
        again = call("changes", query, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status_code == 304
        seen += payload["changes"]
        if payload["nextLink"] is None:
            break
        query = dict(parse_qsl(urlsplit(payload["nextLink"]).query))
    assert (seen, pages) == (whole["changes"], 3)
    zipped = call("changes", {"since": since(10)}, headers={"Accept-Encoding": "gzip"})
    assert json.loads(gzip.decompress(zipped.get_body())) == whole


# -- 3: history ------------------------------------------------------------------------------------------
def test_history_across_the_gap_keeps_the_events_before_it_and_says_a_step_is_unknown(gap):
    nights, how = gap
    g = nights.generated
    early = body(history_call(nights.early["id"]))

    assert (early["firstSeen"], early["lastSeen"], early["present"], early["retainedSince"]) == (
        g[1],
        g[3],
        True,
        g[0],
    )
    assert [(x["type"], x["generatedAt"]) for x in early["events"]] == [("added", g[1])]
    assert early["incomplete"] == [nights.step(how)]
    gone_before = body(history_call(nights.left_early["id"]))
    assert (gone_before["firstSeen"], gone_before["lastSeen"], gone_before["present"]) == (g[0], g[0], False)
    assert [(x["type"], x["generatedAt"]) for x in gone_before["events"]] == [("removed", g[1])]


def test_history_of_customers_that_came_or_went_in_the_gap_is_right_about_when_they_were_seen(gap):
    nights, how = gap
    g = nights.generated
    late = body(history_call(nights.late["id"]))
    assert (late["firstSeen"], late["lastSeen"], late["present"], late["events"]) == (g[2], g[3], True, [])
    assert late["incomplete"] == [nights.step(how)]  # its `added` event is what is unknown
    left = body(history_call(nights.left_late["id"]))
    assert (left["firstSeen"], left["lastSeen"], left["present"], left["events"]) == (g[0], g[1], False, [])
    assert left["incomplete"] == [nights.step(how)]
    renamed = body(history_call(nights.renamed["id"]))
    assert (renamed["firstSeen"], renamed["lastSeen"], renamed["present"]) == (g[0], g[3], True)
    assert renamed["events"] == []  # the rename happened in the unknown step
    assert renamed["incomplete"] == [nights.step(how)]
    last = body(history_call(nights.last["id"]))
    assert (last["firstSeen"], last["present"]) == (g[3], True)
    assert [x["type"] for x in last["events"]] == ["added"]


def test_history_when_the_unknown_steps_own_snapshot_is_gone_too(make_stack):
    nights = GapNights(make_stack, MISSING)
    g = nights.generated
    nights.container.delete_blob(nights.runs[2]["snapshot"])

    early = body(history_call(nights.early["id"]))
    assert (early["firstSeen"], early["lastSeen"], early["present"]) == (g[1], g[3], True)
    assert [x["type"] for x in early["events"]] == ["added"]
    assert early["incomplete"] == [nights.step(MISSING)]  # C's snapshot unread: presence carried over


def test_history_when_the_oldest_retained_step_is_the_unknown_one(make_stack):
    nights = GapNights(make_stack, DAMAGED)
    g = nights.generated
    for run in nights.runs[:2]:  # retention took A and B's records; B's damaged snapshot is still there
        nights.container.delete_blob(run["changes"])

    early = body(history_call(nights.early["id"]))

    assert (early["retainedSince"], early["firstSeen"], early["lastSeen"]) == (g[2], g[2], g[3])
    assert (early["events"], early["incomplete"]) == ([], [])
    changes = body(call("changes", {"since": since(10)}))
    assert changes["incomplete"] == [nights.step(DAMAGED)]
    assert [x["id"] for x in changes["changes"]] == [nights.last["id"]]


# -- the reason: one line, never what the error says -------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("missing", MISSING_REASON),
        ("format", FORMAT_REASON),
        ("storage", "storage failed while the previous snapshot was read (ServiceResponseError)"),
        ("other", "the previous snapshot could not be read (UnicodeDecodeError)"),
    ],
    ids=["missing", "damaged", "storage-error-while-streaming", "anything-else"],
)
def test_the_reason_names_the_kind_of_failure_and_quotes_nothing(error, reason):
    from azure.core.exceptions import ResourceNotFoundError, ServiceResponseError

    from shared.changes.store import unreadable_reason
    from shared.errors import SnapshotFormatError

    quoted = '{"id":"0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0","companyName":"Contoso"} sig=SECRET'
    errors = {
        "missing": ResourceNotFoundError(quoted),
        "format": SnapshotFormatError(quoted),
        "storage": ServiceResponseError(quoted),
        "other": UnicodeDecodeError("utf-8", quoted.encode(), 0, 1, quoted),
    }
    assert unreadable_reason(errors[error]) == reason
