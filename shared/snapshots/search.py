"""The folded search text of a lookup index, held compressed and searched one chunk at a time.

Customer p's folded "companyName\\ndomain" is text[offsets[p]:offsets[p + 1]]. Held inflated, the text of a
million customers took about 50 MB in every API instance, twice across a publish; compressed it is about 9.
So the writer compresses it as raw deflate with a full flush point after the customer that brings a chunk to
CHUNK_BYTES of text, and lists the chunks in the index's `search_chunks` section: (first customer, start in
the compressed text) pairs, then (customer count, compressed length). Each chunk inflates on its own into
exactly its customers' text, so an instance keeps only the compressed text, and a `?q=` inflates one chunk
at a time (about 1 MB), searching each as it comes. A small text (HELD_INFLATED_BYTES) is kept inflated
once searched.

A chunk holds at most CHUNK_BYTES plus one customer's text, so the reader refuses a larger one (what one
query inflates at once stays bounded whoever wrote the index). Every chunk is inflated once when the index
is loaded: a chunk that does not inflate to its customers' text refuses the index then, not a query later.

An index of format 3 holds the text as one zlib stream: it is cut into chunks once at load, so an instance
holds the same as with format 4.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from shared.errors import UnusableIndex
from shared.snapshots.document import MAX_LINE_BYTES

CHUNK_BYTES = 1 << 20  # of folded text: one query inflates this much at a time
# A text this small (100,000 customers take about 5 MB) is kept inflated once searched: the memory is
# small, and `?q=` answers without inflating anything.
HELD_INFLATED_BYTES = 8 << 20
INFLATE_THREADS = 2  # inflating beside the scan: a query at a million customers takes half the time
INFLATE_AHEAD = 3
MAX_CHUNK_BYTES = CHUNK_BYTES + MAX_LINE_BYTES  # the last customer of a chunk may take it past CHUNK_BYTES
RAW_DEFLATE = -15  # window bits of a raw deflate stream (no zlib header: each chunk inflates on its own)

Buffer = bytes | bytearray | memoryview


def search_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a substring of UTF-8 is a substring of the text


class SearchChunker:
    """The writer's side: fed each customer's folded text in stored order, gives the compressed bytes to
    append to the `search` section, and at the end the `search_chunks` section."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(1, zlib.DEFLATED, RAW_DEFLATE)
        self._chunks = array("Q", [0, 0])
        self._written = 0  # compressed bytes handed out
        self._chunk_text = 0  # text bytes in the chunk being written
        self._count = 0

    def add(self, texts: Sequence[bytes]) -> bytes:
        """Compresses one page of texts; the full flush points fall after the customer that fills a chunk."""
        out: list[bytes] = []
        start, filled = 0, self._chunk_text
        for number, text in enumerate(texts, 1):
            filled += len(text)
            if filled >= CHUNK_BYTES:
                out.append(self._deflate.compress(b"".join(texts[start:number])))
                out.append(self._deflate.flush(zlib.Z_FULL_FLUSH))
                self._written += len(out[-2]) + len(out[-1])
                self._chunks.extend((self._count + number, self._written))
                start, filled = number, 0
        out.append(self._deflate.compress(b"".join(texts[start:])))
        self._written += len(out[-1])
        self._chunk_text = filled
        self._count += len(texts)
        return b"".join(out)

    def finish(self) -> tuple[bytes, bytes]:
        """(the last compressed bytes, the `search_chunks` section)."""
        tail = self._deflate.flush()
        self._written += len(tail)
        self._chunks.extend((self._count, self._written))
        return tail, self._chunks.tobytes()


class SearchText:
    """The reader's side: the compressed text and its chunk table, searched one chunk at a time."""

    def __init__(self, compressed: Buffer, chunks: Sequence[int], offsets: Sequence[int]) -> None:
        self._compressed = compressed
        self._chunks = chunks  # flat: first customer, start; ...; customer count, compressed length
        self._offsets = offsets
        self.chunk_count = len(chunks) // 2 - 1
        self._held: list[bytes] | None = None  # every chunk inflated, for a small text

    @classmethod
    def verified(cls, compressed: Buffer, chunks: Sequence[int], offsets: Sequence[int]) -> SearchText:
        """Format 4: the chunk table checked against the text's offsets, and every chunk inflated once."""
        count = len(offsets) - 1
        pairs = len(chunks) // 2
        if len(chunks) % 2 or pairs < 2 or tuple(chunks[:2]) != (0, 0):
            raise UnusableIndex("index search chunks unreadable")
        if tuple(chunks[-2:]) != (count, len(compressed)):
            raise UnusableIndex("index search chunks do not cover the search text")
        for pair in range(pairs - 1):
            first, start, last, end = chunks[2 * pair : 2 * pair + 4]
            if not (first <= last and start < end):
                raise UnusableIndex("index search chunks out of order")
        text = cls(compressed, chunks, offsets)
        for chunk in range(text.chunk_count):
            text.inflated(chunk)
        return text

    @classmethod
    def rechunked(cls, stream: Buffer, offsets: Sequence[int]) -> SearchText:
        """Format 3: its one zlib stream cut into the chunks of format 4 (a copy: the stream can go)."""
        count = len(offsets) - 1
        inflate, deflate = zlib.decompressobj(), zlib.compressobj(1, zlib.DEFLATED, RAW_DEFLATE)
        compressed, chunks, first = bytearray(), array("Q", [0, 0]), 0
        pending: Buffer = stream
        while first < count:
            last = bisect_left(offsets, offsets[first] + CHUNK_BYTES, first + 1, count)
            size = _chunk_size(offsets, first, last)
            try:
                text = inflate.decompress(pending, size)
            except zlib.error:
                raise UnusableIndex("index search text damaged") from None
            pending = inflate.unconsumed_tail
            if len(text) != size:
                raise UnusableIndex("index search text shorter than its offsets say")
            compressed += deflate.compress(text)
            if last < count:
                compressed += deflate.flush(zlib.Z_FULL_FLUSH)
                chunks.extend((last, len(compressed)))
            first = last
        try:
            rest = inflate.decompress(pending, 1)
        except zlib.error:
            raise UnusableIndex("index search text damaged") from None
        if rest or not inflate.eof:
            raise UnusableIndex("index search text longer than its offsets say")
        compressed += deflate.flush()
        chunks.extend((count, len(compressed)))
        return cls(bytes(compressed), chunks, offsets)

    def inflated(self, chunk: int) -> bytes:
        """The text of one chunk's customers, exactly (UnusableIndex when it is not)."""
        first, start, last, end = self._chunks[2 * chunk : 2 * chunk + 4]
        size = _chunk_size(self._offsets, first, last)
        inflate = zlib.decompressobj(RAW_DEFLATE)
        try:
            text = inflate.decompress(self._compressed[start:end], size)
            rest = inflate.decompress(inflate.unconsumed_tail, 1)  # a full flush point yields nothing
        except zlib.error:
            raise UnusableIndex("index search text damaged") from None
        if len(text) != size or rest or inflate.unconsumed_tail:
            raise UnusableIndex("index search chunk does not hold its customers' text")
        return text

    def matching(self, needle: bytes) -> list[int]:
        """Positions whose text holds `needle` (already folded), in stored order."""
        offsets = self._offsets
        if not needle:
            return list(range(len(offsets) - 1))
        found: list[int] = []
        held = self._held
        if held is None and offsets[-1] <= HELD_INFLATED_BYTES:
            held = self._held = [self.inflated(chunk) for chunk in range(self.chunk_count)]
        for chunk, text in enumerate(held if held is not None else self._inflating()):
            first, last = self._chunks[2 * chunk], self._chunks[2 * chunk + 2]
            base = offsets[first]
            at = text.find(needle)
            while at >= 0:
                position = bisect_right(offsets, base + at, first, last) - 1
                end = offsets[position + 1] - base
                if at + len(needle) <= end:
                    found.append(position)
                    at = text.find(needle, end)
                else:  # spans two customers' texts: not a match of either
                    at = text.find(needle, at + 1)
        return found

    def _inflating(self) -> Iterator[bytes]:
        """Each chunk's text in order, the next ones inflating on other threads meanwhile (zlib lets go of
        the GIL while it inflates): INFLATE_AHEAD chunks in memory at most."""
        pool, ahead, coming = _inflater(), deque[Future[bytes]](), iter(range(self.chunk_count))
        for chunk in itertools.islice(coming, INFLATE_AHEAD):
            ahead.append(pool.submit(self.inflated, chunk))
        while ahead:
            text = ahead.popleft().result()
            for chunk in itertools.islice(coming, 1):
                ahead.append(pool.submit(self.inflated, chunk))
            yield text


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _inflater() -> ThreadPoolExecutor:
    """The threads that inflate search chunks, shared by every query, started on the first."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(INFLATE_THREADS, thread_name_prefix="search-inflate")
        return _pool


def _chunk_size(offsets: Sequence[int], first: int, last: int) -> int:
    size = offsets[last] - offsets[first]
    if not 0 <= size <= MAX_CHUNK_BYTES:
        raise UnusableIndex("index search chunk larger than the writer makes them")
    return size
