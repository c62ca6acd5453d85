"""The lookup index beside each snapshot, and the API answering from it.

The snapshot stays one standard gzip stream of the same document; the API answers from the index byte for
byte what the whole load answers; an index that is missing or does not verify falls back to the whole
load; a newer snapshot's index loads while the previous snapshot keeps answering.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import shared.api.indexed as indexed
from devstack.population import make_customers
from shared.api.context import api_context
from shared.api.indexed import IndexedSnapshot
from shared.api.loaded import LoadedSnapshot
from shared.snapshots.index import MEMBER_CUSTOMERS, SnapshotIndex, UnusableIndex, header_sha256
from shared.snapshots.store import Manifest, SnapshotStore
from shared.storage.layout import index_name
from tests.support.api import SPECIAL, body, call, customer_call, follow, ids, write_snapshot
from tests.support.functions import run_timer
from tests.support.index import (
    as_one_stream,
    built,
    fill_every_slot,
    with_byte_changed,
    with_header,
    with_section,
)

COUNT = 3 * MEMBER_CUSTOMERS + 5  # several gzip members, the last one short


def _customers() -> list[dict[str, Any]]:
    return [*SPECIAL, *make_customers(COUNT - len(SPECIAL), seed=5)]


def _container(stack: Any, snapshots: Any) -> Any:
    return stack.blob_service_client().get_container_client(snapshots.container)


def _published(container: Any) -> Manifest:
    return Manifest.parse(container.get_blob_client("latest.json").download_blob().readall())


def test_the_job_writes_a_standard_gzip_snapshot_and_its_index_before_latest_json(make_stack):
    stack, snapshots = make_stack(customers=COUNT)
    run_timer()
    container = _container(stack, snapshots)
    manifest = _published(container)
    stored = container.get_blob_client(manifest.snapshot).download_blob(decompress=False).readall()
    document = gzip.decompress(stored)  # every member: any gzip reader takes it whole
    assert hashlib.sha256(document).hexdigest() == manifest.sha256
    lines = document.split(b"\n")
    assert lines[0].endswith(b'"customers":[') and len(lines) == COUNT + 3  # one customer per line
    assert manifest.index == index_name(manifest.snapshot)
    index_blob = container.get_blob_client(manifest.index).download_blob().readall()
    assert header_sha256(index_blob) == manifest.index_sha256  # the header holds each section's sha256
    index = SnapshotIndex(
        index_blob, indexed.Expected(manifest.snapshot, manifest.etag, manifest.sha256, COUNT)
    )
    assert len(index.members) == -(-COUNT // MEMBER_CUSTOMERS) + 1
    assert stored.count(b"\x1f\x8b\x08") >= 1 and len(
        gzip.GzipFile(fileobj=__import__("io").BytesIO(stored)).read()
    ) == len(document)
    for member in range(len(index.members) - 1):  # each block inflates on its own (raw deflate)
        start, end = index.members[member], index.members[member + 1]
        block = zlib.decompressobj(-15).decompress(stored[start:end])
        assert block.count(b"\n") == min(MEMBER_CUSTOMERS, COUNT - member * 64)
    # The index is refused for any other snapshot version.
    for other in (
        indexed.Expected(manifest.snapshot, '"0x0"', manifest.sha256, COUNT),
        indexed.Expected(manifest.snapshot, manifest.etag, "0" * 64, COUNT),
        indexed.Expected(manifest.snapshot, manifest.etag, manifest.sha256, COUNT + 1),
    ):
        with pytest.raises(UnusableIndex):
            SnapshotIndex(index_blob, other)


def test_answers_from_the_index_are_byte_for_byte_those_of_the_whole_load(make_stack):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    customers = _customers()
    committed = write_snapshot(container, customers, datetime.now(UTC))
    store = SnapshotStore(container)
    manifest = Manifest.of(committed)
    whole = LoadedSnapshot.load(store, manifest)
    fast = IndexedSnapshot.load(store, manifest)
    assert fast.count == whole.count == COUNT
    assert fast.lines_at(range(COUNT)) == whole.lines_at(range(COUNT))
    for customer in customers:
        for asked in (customer["id"], customer["id"].upper()):
            assert fast.customer(asked) == whole.customer(asked)
        domain = (customer.get("companyProfile") or {}).get("domain")
        if domain:
            assert fast.with_domain(domain.upper()) == whole.with_domain(domain.upper())
    for absent in ("00000000-0000-4000-8000-000000000000", "not-a-guid", ""):
        assert fast.customer(absent) is whole.customer(absent) is None
    for text in ("contoso", "MULLER", "société", "onmicrosoft", "ltd\ncontoso", "zzz-nothing", "o"):
        assert fast.matching(text) == whole.matching(text), text
    assert fast.with_domain("nothing.example") == whole.with_domain("nothing.example") == []


def test_the_registered_functions_answer_the_same_with_and_without_an_index(make_stack):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    customers = _customers()
    answers = []
    for offset, with_index in ((1, False), (2, True)):
        write_snapshot(container, customers, datetime.now(UTC) + timedelta(minutes=offset), index=with_index)
        assert isinstance(
            api_context().latest.snapshot(api_context().latest.manifest()), IndexedSnapshot
        ) == (with_index)
        pages = follow(body(call("customers", {"top": "50"})))
        answers.append(
            (
                [ids(page) for page in pages],
                [customer_call(c["id"]).get_body() for c in customers[::7]],
                body(call("customers", {"q": "contoso"}))["customers"],
                body(call("customers", {"domain": customers[9]["companyProfile"]["domain"]}))["customers"],
                # the whole document, but for its generatedAt
                gzip.decompress(call("customers", headers={"Accept-Encoding": "gzip"}).get_body())[70:],
            )
        )
    assert answers[0] == answers[1]


def test_an_index_of_the_previous_format_still_answers_from_the_index_and_the_same(make_stack):
    """An index written before the search text was chunked (format 3) is read until the next run replaces
    it: a whole load instead would hold the snapshot parsed, too much for a small instance."""
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    customers = _customers()
    write_snapshot(container, customers, datetime.now(UTC))
    manifest = _published(container)
    asked = [
        ("customers", {"q": "contoso"}),
        ("customers", {"q": "société"}),
        ("customers", {"domain": customers[9]["companyProfile"]["domain"]}),
        ("customers", {"top": "20"}),
    ]
    answers = [body(call(route, params)) for route, params in asked]
    by_id = [customer_call(c["id"]).get_body() for c in customers[::11]]
    assert manifest.index is not None
    blob = container.get_blob_client(manifest.index).download_blob().readall()
    old = as_one_stream(blob)
    container.get_blob_client(manifest.index).upload_blob(old, overwrite=True)
    latest = json.loads(container.get_blob_client("latest.json").download_blob().readall())
    latest["indexSha256"] = header_sha256(old)
    container.get_blob_client("latest.json").upload_blob(json.dumps(latest).encode(), overwrite=True)
    cache = api_context().latest
    cache.check_interval = 0
    for _ in range(100):  # taken up once its index is loaded (in the background: the previous one answers)
        call("customers", {"top": "1"})
        loaded = cache.snapshot(cache.manifest())
        if loaded.manifest.index_sha256 == header_sha256(old):
            break
        time.sleep(0.02)
    assert isinstance(loaded, IndexedSnapshot) and loaded.manifest.index_sha256 == header_sha256(old)
    assert [body(call(route, params)) for route, params in asked] == answers and answers[0]["count"] > 0
    assert [customer_call(c["id"]).get_body() for c in customers[::11]] == by_id


@pytest.mark.parametrize("damage", ["missing", "another-sha256", "another-snapshot"])
def test_an_index_that_is_missing_or_does_not_verify_falls_back_to_the_whole_load(make_stack, caplog, damage):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    customers = _customers()
    earlier = write_snapshot(container, customers[:10], datetime.now(UTC) - timedelta(minutes=5))
    committed = write_snapshot(container, customers, datetime.now(UTC), publish=False)
    if damage == "missing":
        container.get_blob_client(committed.index).delete_blob()
    elif damage == "another-sha256":
        committed = replace(committed, index_sha256="0" * 64)
    else:  # the earlier snapshot's index, under this one's name and with its true sha256
        data = container.get_blob_client(earlier.index).download_blob().readall()
        container.get_blob_client(committed.index).upload_blob(data, overwrite=True)
        committed = replace(committed, index_sha256=header_sha256(data))
    store = SnapshotStore(container)
    store.mark_published(store.publish(committed))
    caplog.set_level(logging.INFO, logger="shared.api")
    for customer in customers[::9]:
        response = customer_call(customer["id"])
        assert response.status_code == 200 and json.loads(response.get_body()) == customer
    latest = api_context().latest
    assert isinstance(latest.snapshot(latest.manifest()), LoadedSnapshot)
    unusable = [r for r in caplog.records if r.getMessage().startswith("api.index_unusable ")]
    assert len(unusable) == 1  # logged once, not once per request


def test_a_snapshot_too_large_to_load_whole_without_its_index_is_refused_not_loaded(make_stack, caplog):
    """An instance sized for snapshots with an index never loads a large one whole (that would take about
    2.2 times its JSON and end the instance): 503, logged once, until one with an index is published."""
    stack, snapshots = make_stack(customers=0, env_overrides={"API_WHOLE_LOAD_MAX_MB": "1"})
    container = _container(stack, snapshots)
    customers = make_customers(3000, seed=31)  # about 1.8 MB of JSON
    write_snapshot(container, customers, datetime.now(UTC) - timedelta(minutes=5), index=False)
    assert _published(container).json_bytes > 1024 * 1024
    caplog.set_level(logging.INFO, logger="shared.api")
    for customer in customers[:3]:
        answer = customer_call(customer["id"])
        assert answer.status_code == 503 and json.loads(answer.get_body())["error"] == "snapshot_unavailable"
    unreadable = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("api.snapshot_unreadable ")
    ]
    assert len(unreadable) == 1 and "API_WHOLE_LOAD_MAX_MB" in unreadable[0]
    assert api_context().latest.loads == 0  # nothing was loaded
    write_snapshot(container, customers, datetime.now(UTC))  # the same customers, with the index
    answer = customer_call(customers[5]["id"])
    assert answer.status_code == 200 and json.loads(answer.get_body()) == customers[5]


def test_no_index_is_written_when_a_customer_is_one_the_indexes_cannot_use(make_stack):
    stack, snapshots = make_stack(customers=0)
    store = SnapshotStore(_container(stack, snapshots))
    store.ensure_container()
    when = datetime.now(UTC)
    writer = store.new_snapshot(f"snapshots/{when:%Y/%m/%d}/customers-{when:%Y%m%dT%H%M%S}Z.json", "x")
    writer.add([json.dumps(SPECIAL[0]), '{"id":"a","score":NaN}'])
    committed = store.commit_index(writer.commit({"customerCount": 2}, {}), writer.index)
    assert committed.index is None and committed.index_sha256 is None
    assert "index" not in Manifest.of(committed).to_json()  # latest.json as before indexes


def test_a_manifest_without_an_index_or_with_one_elsewhere_parses_as_before():
    base = {
        "schemaVersion": 1,
        "snapshot": "snapshots/2024/03/07/customers-20240307T020000Z.json",
        "etag": '"0x1"',
        "generatedAt": "2024-03-07T02:00:00Z",
        "customerCount": 1,
        "sha256": "a" * 64,
        "storedBytes": 10,
        "jsonBytes": 20,
    }
    assert Manifest.parse(json.dumps(base).encode()).index is None
    elsewhere = base | {"index": "../other/x.index", "indexSha256": "b" * 64}
    assert Manifest.parse(json.dumps(elsewhere).encode()).index is None
    beside = base | {
        "index": "snapshots/2024/03/07/customers-20240307T020000Z.index",
        "indexSha256": "b" * 64,
    }
    parsed = Manifest.parse(json.dumps(beside).encode())
    assert parsed.index == beside["index"] and parsed.to_json() == beside | {"contentEncoding": "gzip"}


def test_the_previous_snapshot_answers_while_the_next_index_loads(make_stack, monkeypatch):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    old, new = make_customers(100, seed=8), make_customers(100, seed=9)
    write_snapshot(container, old, datetime.now(UTC) - timedelta(minutes=5))
    assert customer_call(old[0]["id"]).status_code == 200
    release = threading.Event()
    load = IndexedSnapshot.load.__func__  # type: ignore[attr-defined]

    def slow_load(cls: Any, store: Any, manifest: Manifest) -> IndexedSnapshot:
        release.wait(30)
        return load(cls, store, manifest)

    monkeypatch.setattr(IndexedSnapshot, "load", classmethod(slow_load))
    write_snapshot(container, new, datetime.now(UTC))
    started = time.perf_counter()
    assert customer_call(old[1]["id"]).status_code == 200  # the one that found it waited SWAP_WAIT at most
    assert time.perf_counter() - started < 5
    for customer in old[2:10]:  # the others answer at once from the previous snapshot
        started = time.perf_counter()
        assert customer_call(customer["id"]).status_code == 200
        assert time.perf_counter() - started < 0.5
    assert customer_call(new[0]["id"]).status_code == 404
    release.set()
    for _ in range(200):  # taken up by the first request after it is ready
        if customer_call(new[0]["id"]).status_code == 200:
            break
        time.sleep(0.02)
    assert customer_call(new[0]["id"]).status_code == 200
    assert customer_call(old[0]["id"]).status_code == 404


def test_the_previous_snapshot_is_let_go_before_the_next_stored_blob_is_fetched(make_stack, monkeypatch):
    """Across a publish an instance holds one stored blob at most: the previous snapshot (its index and
    members) is gone, without waiting for the cyclic GC, before the next one's blob is fetched."""
    import gc
    import weakref

    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    old, new = make_customers(300, seed=8), make_customers(300, seed=9)
    write_snapshot(container, old, datetime.now(UTC) - timedelta(minutes=5))
    assert customer_call(old[0]["id"]).status_code == 200
    cache = api_context().latest
    previous = weakref.ref(cache.snapshot(cache.manifest()))
    fetched: list[tuple[str, bool]] = []
    read = SnapshotStore.read_into_buffer

    def watched(store: SnapshotStore, name: str, *args: Any, **kwargs: Any) -> Any:
        fetched.append((name, previous() is not None))
        return read(store, name, *args, **kwargs)

    monkeypatch.setattr(SnapshotStore, "read_into_buffer", watched)
    gc.disable()  # what is let go must go by its references alone
    try:
        committed = write_snapshot(container, new, datetime.now(UTC))
        for _ in range(500):
            answered = [customer_call(c["id"]).status_code for c in (new[7], old[7])]
            if answered == [200, 404] and (committed.name, False) in fetched:
                break
            time.sleep(0.01)
        assert answered == [200, 404]
        assert (committed.name, False) in fetched and (committed.name, True) not in fetched
        assert previous() is None
    finally:
        gc.enable()


# -- what the index refuses, and the stored bytes it does not match ------------------------------------
def test_an_index_blob_that_does_not_hold_together_is_refused():
    blob, expected = built(_customers())
    SnapshotIndex(blob, expected)  # as built: accepted
    search_start = len(blob) - 40
    damaged = {
        "not an index": b"PK\x03\x04" + blob[4:],
        "header not JSON": blob[:12] + b"[" + blob[13:],
        "cut short": blob[:-10],
        "sections cut short": blob[: len(blob) // 2],
        "search damaged": blob[:search_start] + bytes(40),
        "search not deflate": blob[:search_start] + b"\xff" * 40,
        "the format before sections had digests": with_header(blob, format=1),
        "the format before keyed hashes (CRC-32 slots)": with_header(blob, format=2),
        "a hash key that is not hex": with_header(blob, hashKey="zz" * 16),
        "a hash key of another length": with_header(blob, hashKey="ab"),
        "an id table without an empty slot": with_section(blob, "id_table", fill_every_slot),
        "a domain table without an empty slot": with_section(blob, "domain_table", fill_every_slot),
        "a section changed": with_byte_changed(blob, "ids"),
        "the search text changed": with_byte_changed(blob, "search"),
        "a section's digest missing": with_header(blob, sectionSha256={}),
        "another fold": with_header(blob, foldVersion=9),
        "no member size": with_header(blob, memberCustomers=0),
        "members missing": built(_customers(), members=2)[0],
    }
    for what, data in damaged.items():
        with pytest.raises(UnusableIndex):
            SnapshotIndex(data, expected)
            pytest.fail(what)


def test_no_customer_the_indexes_cannot_use_gets_an_index():
    from shared.snapshots.index_builder import IndexBuilder

    for odd in (
        ["not", "a", "dict"],
        {"id": ""},
        {"id": "x", "relationshipToPartner": 1},
        {"id": "x", "companyProfile": "p"},
        {"id": "x", "companyProfile": {"domain": 4}},
    ):
        builder = IndexBuilder(lambda block_id, data: None)
        builder.add([{"id": "fine"}, odd])
        assert not builder.usable, odd


def test_the_job_stages_index_sections_as_they_fill_and_keeps_only_the_hashes_low_halves(monkeypatch):
    import shared.snapshots.index_builder as builder_module
    from shared.snapshots.index_builder import IndexBuilder

    monkeypatch.setattr(builder_module, "BLOCK_BYTES", 4096)
    staged: dict[str, bytes] = {}
    builder = IndexBuilder(staged.__setitem__)
    customers = make_customers(2000, seed=12)
    for start in range(0, len(customers), 500):  # pages, as the writer hands them over
        builder.add(customers[start : start + 500])
    # 8,000 bytes of id hashes so far (16,000 of search offsets): staged in blocks already, not held until
    # the end (format 2's hashes took 8 bytes: then 3 * 16,000 bytes less the same 3 blocks held)
    assert sum(len(data) for data in staged.values()) >= 8_000 + 8_000 + 16_000 - 3 * 4096
    held = sum(section._pending_bytes for section in builder._sections.values())
    assert held < 4 * 4096
    assert sum(len(data) for data in staged.values()) + held == sum(
        s.size for s in builder._sections.values()
    )
    assert builder._id_low.itemsize * len(builder._id_low) == 4 * len(customers)  # what the tables need
    builder.members.extend(range(-(-len(customers) // MEMBER_CUSTOMERS) + 1))
    digest = builder.finish(snapshot="snapshots/x.json", etag='"0x1"', sha256="a" * 64, customer_count=2000)
    blob = b"".join(staged[block_id] for block_id in builder.block_ids())
    assert header_sha256(blob) == digest
    index = SnapshotIndex(blob, indexed.Expected("snapshots/x.json", '"0x1"', "a" * 64, 2000))
    for position in (0, 777, 1999):
        assert position in index.id_candidates(customers[position]["id"].upper())


def position_of(index: SnapshotIndex, customer_id: str) -> int:
    return next(iter(index.id_candidates(customer_id)))


def test_search_never_matches_across_two_customers_texts():
    customers = [
        {"id": "a", "companyProfile": {"companyName": "Alpha", "domain": "one.example"}},
        {"id": "b", "companyProfile": {"companyName": "Exampleco", "domain": "two.example"}},
        {"id": "c"},  # no profile: no domain in the domain table
    ]
    index = SnapshotIndex(*built(customers))
    assert index.matching("exampleexampleco") == []  # "one.example" + "exampleco" only back to back
    assert index.matching("example") == [0, 1]
    assert index.matching("") == [0, 1, 2]
    assert index.domain_candidates("") == []


def test_gzip_members_that_are_not_what_the_index_says_are_refused():
    from shared.api.indexed import StoredUnreadable, _member_lines

    def raw(text: bytes) -> bytes:  # a block as the writer leaves it: raw deflate up to a full flush
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        return deflate.compress(text) + deflate.flush(zlib.Z_FULL_FLUSH)

    assert _member_lines(raw(b'\n{"id":"a"},\n{"id":"b"}'), 2) == [b'{"id":"a"}', b'{"id":"b"}']
    for data, customers in (
        (b"\xff\xff\xff\xff", 1),
        (zlib.compress(b'\n{"id":"a"}', 6)[2:-4] + b"", 1),  # the final block: past the customers
        (raw(b'\n{"id":"a"},\n{"id":"b"}'), 3),
        (raw(b'x{"id":"a"}'), 0),
    ):
        with pytest.raises(StoredUnreadable):
            _member_lines(data, customers)


def test_a_snapshot_replaced_after_its_index_was_written_is_503(make_stack, caplog):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    customers = _customers()
    committed = write_snapshot(container, customers, datetime.now(UTC))
    store = SnapshotStore(container)
    loaded = IndexedSnapshot.load(store, Manifest.of(committed))  # members read from storage: none fetched
    data = container.get_blob_client(committed.name).download_blob(decompress=False).readall()
    container.get_blob_client(committed.name).upload_blob(data, overwrite=True)  # same bytes, a new ETag
    from shared.api.errors import ApiError

    with pytest.raises(ApiError) as raised:
        loaded.customer(customers[0]["id"])
    assert raised.value.code == "snapshot_unavailable"
    response = customer_call(customers[0]["id"])  # a fresh load sees it at once: 503, as without an index
    assert response.status_code == 503 and json.loads(response.get_body())["error"] == "snapshot_unavailable"


def test_a_large_stored_blob_is_fetched_in_the_background_and_members_are_kept_few(make_stack, monkeypatch):
    monkeypatch.setattr(indexed, "FETCH_FIRST_BYTES", 0)
    monkeypatch.setattr(indexed, "MEMBERS_KEPT", 2)
    stack, snapshots = make_stack(customers=0)
    customers = _customers()
    write_snapshot(_container(stack, snapshots), customers, datetime.now(UTC))
    for customer in customers[::5]:
        assert json.loads(customer_call(customer["id"]).get_body()) == customer
    latest = api_context().latest
    loaded = latest.snapshot(latest.manifest())
    assert isinstance(loaded, IndexedSnapshot)
    for _ in range(200):
        if loaded._stored is not None:
            break
        time.sleep(0.02)
    assert loaded._stored is not None and len(loaded._members) <= 2
    assert json.loads(customer_call(customers[-1]["id"]).get_body()) == customers[-1]


@pytest.mark.parametrize("trouble", ["unusable-index", "replaced-snapshot", "storage-error"])
def test_a_next_snapshot_that_cannot_load_in_the_background_is_handled_as_without_an_index(
    make_stack, monkeypatch, trouble
):
    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    old, new = make_customers(80, seed=8), make_customers(80, seed=9)
    write_snapshot(container, old, datetime.now(UTC) - timedelta(minutes=5))
    assert customer_call(old[0]["id"]).status_code == 200
    committed = write_snapshot(container, new, datetime.now(UTC), publish=False)
    original = IndexedSnapshot.__dict__["load"]
    if trouble == "unusable-index":
        container.get_blob_client(committed.index).delete_blob()
    elif trouble == "replaced-snapshot":
        data = container.get_blob_client(committed.name).download_blob(decompress=False).readall()
        container.get_blob_client(committed.name).upload_blob(data, overwrite=True)
    else:
        from azure.core.exceptions import ServiceRequestError

        def failing(cls: Any, store: Any, manifest: Manifest) -> IndexedSnapshot:
            raise ServiceRequestError("storage went away")

        monkeypatch.setattr(IndexedSnapshot, "load", classmethod(failing))
    store = SnapshotStore(container)
    if trouble == "replaced-snapshot":  # published as the job would have, before it was replaced
        _point_latest(container, Manifest.of(committed))
    else:
        store.mark_published(store.publish(committed))
    for _ in range(100):
        response = customer_call(new[0]["id"])
        if response.status_code != 404:
            break
        time.sleep(0.02)
    if trouble == "replaced-snapshot":
        assert response.status_code == 503
    elif trouble == "unusable-index":
        assert response.status_code == 200  # loaded whole
        assert isinstance(api_context().latest._loaded, LoadedSnapshot)
    else:  # the request loads it itself and says what failed; once storage answers, it is served
        assert (
            response.status_code == 503 and json.loads(response.get_body())["error"] == "storage_unavailable"
        )
        monkeypatch.setattr(IndexedSnapshot, "load", original)
        assert customer_call(new[0]["id"]).status_code == 200
        assert isinstance(api_context().latest._loaded, IndexedSnapshot)


def _point_latest(container: Any, manifest: Manifest) -> None:
    container.get_blob_client("latest.json").upload_blob(
        json.dumps(manifest.to_json()).encode(), overwrite=True
    )


def test_the_stored_blob_must_be_the_size_published_and_the_whole_answer_its_sha256(make_stack):
    from shared.api.errors import ApiError
    from shared.api.indexed import StoredUnreadable

    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    committed = write_snapshot(container, _customers(), datetime.now(UTC))
    store, manifest = SnapshotStore(container), Manifest.of(committed)
    with pytest.raises(StoredUnreadable):
        IndexedSnapshot.load(store, replace(manifest, stored_bytes=manifest.stored_bytes + 1))
    loaded = IndexedSnapshot.load(store, manifest)
    assert (
        loaded.stored
        == loaded.stored
        == container.get_blob_client(committed.name).download_blob(decompress=False).readall()
    )  # read (a range of it all) and checked once, then kept
    other = IndexedSnapshot.load(store, manifest)
    other.manifest = replace(manifest, sha256="0" * 64)  # as if the bytes were not the ones published
    with pytest.raises(ApiError):
        other.stored  # noqa: B018 - the property reads and checks


def test_a_request_that_read_latest_json_before_a_newer_snapshot_was_taken_up_answers_from_the_newer(
    make_stack, monkeypatch
):
    from shared.api.latest import LatestCache, SnapshotReplaced

    stack, snapshots = make_stack(customers=0)
    container = _container(stack, snapshots)
    old, new = make_customers(70, seed=8), make_customers(70, seed=9)
    write_snapshot(container, old, datetime.now(UTC) - timedelta(minutes=5))
    latest = api_context().latest
    stale = latest.manifest()
    assert customer_call(old[0]["id"]).status_code == 200
    write_snapshot(container, new, datetime.now(UTC))
    assert customer_call(new[0]["id"]).status_code == 200  # taken up
    with pytest.raises(SnapshotReplaced):
        latest.snapshot(stale)  # never loaded back: that would evict the newer one
    fresh = LatestCache.manifest
    calls = []

    def racing(self: LatestCache) -> Manifest | None:  # the first read of latest.json is from before
        calls.append(1)
        return stale if len(calls) == 1 else fresh(self)

    monkeypatch.setattr(LatestCache, "manifest", racing)
    response = customer_call(new[1]["id"])
    assert response.status_code == 200 and len(calls) == 2
    assert response.headers["X-Snapshot-Name"] == latest.manifest().snapshot


# -- keys an attacker chooses, and an index that verifies but would never let a lookup end ---------------
def _longest_and_total_probes(table: Any, hashes: Any) -> tuple[int, int]:
    """From a stored table alone: the longest distance of an entry from its home slot (what a lookup of its
    key walks), and the slots the build walked to place every entry (linear probing: distance + 1)."""
    mask = len(table) - 1
    longest = total = 0
    for slot, entry in enumerate(table):
        if entry:
            distance = (slot - hashes[entry - 1]) & mask
            longest = max(longest, distance)
            total += distance + 1
    return longest, total


def test_ids_crafted_to_collide_and_one_shared_domain_keep_the_index_build_and_lookups_linear(make_stack):
    """Ids whose CRC-32 is the same, and one domain every customer shares: the job's index build stays
    linear (a bounded walk per key, read from the tables it stored) and every lookup answers."""
    from devstack.population import crc32_colliding_ids

    count = 2000
    crafted = crc32_colliding_ids(count + 3, seed=16)
    customers = make_customers(count, seed=16)
    for customer, customer_id in zip(customers, crafted, strict=False):
        customer["id"] = customer["companyProfile"]["tenantId"] = customer_id
        customer["companyProfile"]["domain"] = "everyone.example"
    stack, snapshots = make_stack(customers=customers)
    run_timer()
    container = _container(stack, snapshots)
    manifest = _published(container)
    assert manifest.index is not None
    blob = container.get_blob_client(manifest.index).download_blob().readall()
    index = SnapshotIndex(blob, indexed.Expected(manifest.snapshot, manifest.etag, manifest.sha256, count))
    for name, table, hashes in (
        ("id", index.id_table, index.ids),
        ("domain", index.domain_table, index.domains),
    ):
        longest, total = _longest_and_total_probes(table, hashes)
        # Random keys in a table at most half full: 1.5 slots per key on average, the longest walk 40 in
        # 300 builds (one of 200 has odds below 1 in 10**12). The CRC-32 slots made them count - 1 and
        # count * count / 2 (2,000,000 here, 200,000,000 at 20,000 customers).
        assert longest <= 200 and total <= 3 * count, (name, longest, total)
    for customer in customers[::97]:
        response = customer_call(customer["id"].upper())
        assert response.status_code == 200 and json.loads(response.get_body()) == customer
    for absent in crafted[count:]:  # the same CRC-32 as every stored id, and not one of them
        assert customer_call(absent).status_code == 404
    shared = body(call("customers", {"domain": "EVERYONE.example", "top": "1000"}))
    assert shared["count"] == count and ids(shared) == [c["id"] for c in customers[:1000]]
    latest = api_context().latest
    assert isinstance(latest.snapshot(latest.manifest()), IndexedSnapshot)  # answered from the index


def _in_a_thread(call_it: Callable[[], Any], seconds: float = 30) -> Any:
    """What `call_it` returns; fails the test (instead of hanging it) when it has not returned in time."""
    answered: list[Any] = []
    worker = threading.Thread(target=lambda: answered.append(call_it()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "still running: the lookup never ended"
    return answered[0]


def test_a_lookup_of_an_absent_id_ends_even_when_an_index_that_verifies_has_a_full_id_table(make_stack):
    stack, snapshots = make_stack(customers=100)
    run_timer()
    container = _container(stack, snapshots)
    manifest = _published(container)
    assert manifest.index is not None
    blob = container.get_blob_client(manifest.index).download_blob().readall()
    full = with_section(blob, "id_table", fill_every_slot)
    container.get_blob_client(manifest.index).upload_blob(full, overwrite=True)
    latest = json.loads(container.get_blob_client("latest.json").download_blob().readall())
    latest["indexSha256"] = header_sha256(full)  # latest.json names it: it verifies
    container.get_blob_client("latest.json").upload_blob(json.dumps(latest).encode(), overwrite=True)
    absent = "00000000-0000-4000-8000-000000000000"
    assert _in_a_thread(lambda: customer_call(absent)).status_code == 404
    present = stack.partner_center.customers[37]
    answered = _in_a_thread(lambda: customer_call(present["id"]))
    assert answered.status_code == 200 and json.loads(answered.get_body()) == present
    cache = api_context().latest
    assert isinstance(cache.snapshot(cache.manifest()), LoadedSnapshot)  # refused: loaded whole


def test_probing_is_bounded_by_the_table_size():
    """Even past the load's checks (a table with no empty slot), a lookup walks each slot once at most."""
    customers = make_customers(300, seed=14)
    index = SnapshotIndex(*built(customers))
    index.id_table = memoryview(bytearray(b"\x01\x00\x00\x00" * len(index.id_table))).cast("I")
    assert _in_a_thread(lambda: list(index.id_candidates("00000000-0000-4000-8000-000000000000")), 10) == []
