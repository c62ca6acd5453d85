"""The search text of an index, held compressed in chunks: what `?q=` finds, what memory it holds, and
the chunk tables and texts it refuses."""

from __future__ import annotations

import itertools
import mmap
import tracemalloc
from array import array
from typing import Any

import pytest

import shared.snapshots.search as search
from devstack.population import make_customers
from shared.snapshots.index import SnapshotIndex, UnusableIndex
from shared.snapshots.search import SearchText
from shared.text import fold
from tests.support.api import SPECIAL
from tests.support.index import as_one_stream, built, header_of, section_of, with_section

SMALL_CHUNK = 2048


def _texts(customers: list[dict[str, Any]]) -> list[str]:
    texts = []
    for customer in customers:
        profile = customer.get("companyProfile") or {}
        texts.append(f"{fold(profile.get('companyName') or '')}\n{fold(profile.get('domain') or '')}")
    return texts


def _mapped(blob: bytes) -> mmap.mmap:
    mapped = mmap.mmap(-1, len(blob), flags=mmap.MAP_PRIVATE)  # as store.read_into_buffer makes it
    mapped[:] = blob
    return mapped


NEEDLES = (
    "contoso",
    ".onmicrosoft.com",
    "\n",
    "societe",
    "a",
    "zzzz-nowhere",
)


@pytest.mark.parametrize("held", [0, search.HELD_INFLATED_BYTES], ids=["inflated-per-query", "kept-inflated"])
def test_a_query_finds_what_the_whole_text_holds_across_chunk_boundaries_in_either_format(monkeypatch, held):
    monkeypatch.setattr(search, "CHUNK_BYTES", SMALL_CHUNK)
    monkeypatch.setattr(search, "HELD_INFLATED_BYTES", held)
    customers = [*SPECIAL, *make_customers(1500, seed=21)]
    texts = _texts(customers)
    blob, expected = built(customers)
    spanning = texts[40][-3:] + texts[41][:3]  # the end of one customer's text and the start of the next
    for index in (SnapshotIndex(blob, expected), SnapshotIndex(as_one_stream(blob), expected)):
        assert index.search.chunk_count > 20
        for needle in (*NEEDLES, texts[700], texts[-1], spanning):
            wanted = fold(needle)
            assert index.matching(wanted) == [p for p, text in enumerate(texts) if wanted in text], needle
        assert index.matching("") == list(range(len(customers)))


def test_each_chunk_is_cut_after_the_customer_that_fills_it(monkeypatch):
    monkeypatch.setattr(search, "CHUNK_BYTES", SMALL_CHUNK)
    customers = make_customers(800, seed=22)
    sizes = [len(text.encode()) for text in _texts(customers)]
    index = SnapshotIndex(*built(customers))
    chunks = array("Q", section_of(built(customers)[0], "search_chunks"))
    firsts = chunks[0::2]
    assert firsts[-1] == len(customers)
    for first, last in itertools.pairwise(firsts[:-1]):  # every chunk but the last
        assert sum(sizes[first : last - 1]) < SMALL_CHUNK <= sum(sizes[first:last])
    assert [len(index.search.inflated(chunk)) for chunk in range(index.search.chunk_count)] == [
        sum(sizes[first:last]) for first, last in itertools.pairwise(firsts)
    ]


def _traced(call: Any) -> tuple[Any, int, int]:
    """(what `call` returned, bytes it left allocated, its peak above where it started)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = call()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, current - before, peak - before


def test_an_instance_holds_the_search_text_compressed_and_a_query_inflates_one_chunk_at_a_time(monkeypatch):
    chunk = 16 * 1024
    monkeypatch.setattr(search, "CHUNK_BYTES", chunk)
    customers = make_customers(20_000, seed=23)
    text_bytes = sum(len(text.encode()) for text in _texts(customers))
    monkeypatch.setattr(search, "HELD_INFLATED_BYTES", text_bytes - 1)  # a text too large to keep inflated
    blob, expected = built(customers)
    index, held, _ = _traced(lambda: SnapshotIndex(_mapped(blob), expected))
    assert index.search.chunk_count > 10
    assert held < text_bytes / 10  # none of the text is held inflated (the compressed text is in the blob)
    for _ in range(2):
        found, held, peak = _traced(lambda: index.matching("contoso"))
        # The chunks inflating ahead of the scan, each grown by zlib in blocks and joined: a few chunks'
        # worth at the peak, not the whole text.
        in_memory = (search.INFLATE_AHEAD + 1) * 3 * chunk
        assert found and peak < min(in_memory, text_bytes / 4) and held < text_bytes / 10


def test_a_small_search_text_is_kept_inflated_once_searched(monkeypatch):
    monkeypatch.setattr(search, "CHUNK_BYTES", 16 * 1024)
    customers = make_customers(3000, seed=23)
    text_bytes = sum(len(text.encode()) for text in _texts(customers))
    monkeypatch.setattr(search, "HELD_INFLATED_BYTES", text_bytes)
    index = SnapshotIndex(*built(customers))
    found, held, _ = _traced(lambda: index.matching("contoso"))
    assert text_bytes <= held < 2 * text_bytes
    again, _, peak = _traced(lambda: index.matching("contoso"))
    assert again == found and peak < 16 * 1024  # the answer's list: not one chunk inflated


def test_an_index_of_the_one_stream_format_is_cut_into_chunks_and_its_stream_given_back():
    customers = make_customers(3000, seed=13)
    blob, expected = built(customers)
    old = as_one_stream(blob)
    mapped = _mapped(old)
    index, held, _ = _traced(lambda: SnapshotIndex(mapped, expected))
    header, base = header_of(old)
    assert header["format"] == 3 and "search_chunks" not in header["sections"]
    offset, size = header["sections"]["search"]
    start = base + offset
    released = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    assert size > 2 * mmap.PAGESIZE and mapped[released : start + size] == bytes(start + size - released)
    assert held < 2 * size  # the chunks, compressed: not the text inflated (about five times that)
    assert 7 in index.matching(fold(customers[7]["companyProfile"]["companyName"]))


def _chunks_changed(change: Any) -> Any:
    def rewrite(data: bytearray) -> None:
        chunks = array("Q", bytes(data))
        change(chunks)
        data[:] = chunks.tobytes()

    return rewrite


def _swap_starts(chunks: array[int]) -> None:
    chunks[3], chunks[5] = chunks[5], chunks[3]


def _set(at: int, value: Any) -> Any:
    return _chunks_changed(lambda chunks: chunks.__setitem__(at, value(chunks)))


def test_a_chunk_table_or_search_text_that_does_not_hold_together_is_refused(monkeypatch):
    monkeypatch.setattr(search, "CHUNK_BYTES", SMALL_CHUNK)
    customers = make_customers(500, seed=24)
    blob, expected = built(customers)
    SnapshotIndex(blob, expected)  # as built: accepted

    def huge_offsets(data: bytearray) -> None:
        offsets = array("Q", bytes(data))
        for position in range(1, len(offsets)):
            offsets[position] = position << 40  # a chunk of terabytes: refused before anything inflates
        data[:] = offsets.tobytes()

    damaged = {
        "the first chunk not at the start": with_section(blob, "search_chunks", _set(1, lambda c: 1)),
        "a chunk starting after the next one": with_section(
            blob, "search_chunks", _chunks_changed(_swap_starts)
        ),
        "the last pair short of the text's end": with_section(
            blob, "search_chunks", _set(-1, lambda c: c[-1] - 1)
        ),
        "the last pair short of the customers": with_section(
            blob, "search_chunks", _set(-2, lambda c: c[-2] - 1)
        ),
        "customers out of order": with_section(blob, "search_chunks", _set(2, lambda c: c[4] + 1)),
        "a chunk boundary off by one customer": with_section(
            blob, "search_chunks", _set(2, lambda c: c[2] + 1)
        ),
        "a chunk boundary off by one byte": with_section(blob, "search_chunks", _set(3, lambda c: c[3] - 1)),
        "a search text that is not deflate": with_section(
            blob, "search", lambda d: d.__setitem__(slice(None), b"\xff" * len(d))
        ),
        "offsets declaring chunks of terabytes": with_section(blob, "search_offsets", huge_offsets),
    }
    for what, data in damaged.items():
        with pytest.raises(UnusableIndex):
            SnapshotIndex(data, expected)
            pytest.fail(what)
    offsets = array("Q", [0, 3])
    for chunks in ([0, 0, 1], [0, 0], [], [0, 0, 1, 5, 1, 5]):
        with pytest.raises(UnusableIndex):
            SearchText.verified(b"\x03\x00", chunks, offsets)
