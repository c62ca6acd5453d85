"""The lookup index written beside each snapshot, so an API instance loads a small index, not the data.

writer.py makes a full flush point every MEMBER_CUSTOMERS customers (the blob stays one gzip member of the
same JSON document, byte for byte), and builds this index as it writes:

    members        uint64 offsets in the stored blob: customer member m (customers m*K .. m*K+K-1) is
                   stored[members[m]:members[m+1]], raw deflate that inflates on its own
    ids            uint32 keyed hash of each customer's lower-cased id, by position
    id_table       open-addressing table (linear probing), one slot per distinct hash, slot = hash &
                   (size - 1): the first position with that hash + 1
    id_next        uint32 by position: the next position with the same hash + 1 (0: the last), so a key
                   shared by many customers is one table slot and a run of positions in stored order
    domains        uint32 keyed hash of each customer's domain_key (0: no domain), by position
    domain_table   the same kind of table for domains, and domain_next the same runs
    search_offsets uint64 start of each customer's folded "companyName\\ndomain" in the search text, then
                   its end
    search         those texts back to back, UTF-8, raw deflate with a full flush point every megabyte
                   or so of text: chunks that inflate on their own (shared/snapshots/search.py)
    search_chunks  uint64 pairs: each chunk's first customer and start in `search`; then (count, length)

A hash only finds candidates: every match is confirmed against the customer's stored line before it is
answered, so a collision costs a probe, never a wrong answer. Ids and domains come from Partner Center, so
whoever controls them could choose keys that collide under a fixed hash (with CRC-32, 20,000 such ids made
the build quadratic: over 20 s instead of 0.1 s). The hash is keyed (BLAKE2b, 32 bits) with a random key
drawn for each index and stored in its header: nobody can tell which keys will share a slot. A key many
customers share (one domain for all of them) takes one slot, whatever the number. Build and lookups stay
linear, and a lookup walks each slot once at most: a table with no empty slot is refused at load.

The blob starts with MAGIC and a JSON header naming the snapshot's name, ETag, sha256 and count (an index of
another snapshot is refused), the format and fold versions (one built with another fold is refused), the
hash key, where each section lies and each section's sha256; latest.json names the index and the sha256 of
that header, so the header pins every byte.

The job never holds the index: ids, domains, offsets and the search text are staged to the index blob in
blocks as they fill (the blob is committed in layout order at the end, whatever order the blocks were staged
in), which is why each section has its own digest rather than one over the whole blob. What stays in memory
until the end is each hash (all the tables need: a slot is a hash's low bits), 8 bytes a customer, and
then one table (and its runs) at a time. Only built when every customer is one the API's
indexes can use.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import UnusableIndex
from shared.snapshots.search import SearchText, search_bytes

__all__ = ["Expected", "KeyHash", "SnapshotIndex", "UnusableIndex", "header_sha256", "search_bytes"]

MAGIC = b"CSPINDEX"
_HEADER_START = len(MAGIC) + 4  # MAGIC, then the header's length (uint32, little-endian), then the header
# 1: one sha256 over the whole blob (before the job staged sections as they filled); 2: CRC-32 slots any
# caller could make collide, one slot per customer (no runs). Both are refused: the API loads the whole.
# 3: the search text one zlib stream, which an instance held inflated; still read (cut into chunks at load).
FORMAT = 4
FORMAT_ONE_STREAM = 3
FOLD_VERSION = 1  # bump when shared/text.py folds differently: older indexes are then refused
MEMBER_CUSTOMERS = 64  # about 40 KB of JSON per member: one lookup inflates that much
SECTIONS = (
    "members",
    *("ids", "id_table", "id_next"),
    *("domains", "domain_table", "domain_next"),
    *("search_offsets", "search", "search_chunks"),
)
SECTIONS_ONE_STREAM = SECTIONS[:-1]  # format 3
HASH_KEY_BYTES = 16


class KeyHash:
    """The keyed 32-bit hash of lookup keys of one index (BLAKE2b with the index's key, half a microsecond a
    key), never 0 (0 marks "no domain"). 32 bits are plenty: a hash only finds candidates, and keys that share
    one by chance (about a hundred pairs among a million) cost one confirmation each, never an answer."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hashlib.blake2b(key=key, digest_size=4)

    def __call__(self, text: str) -> int:
        keyed = self._keyed.copy()  # the key's block is hashed once, not once per key
        keyed.update(text.encode("utf-8", "surrogatepass"))
        return int.from_bytes(keyed.digest(), "little") or 1


def header_sha256(blob: bytes | bytearray | mmap.mmap) -> str | None:
    """sha256 of an index blob's header (MAGIC, its length and the JSON), as latest.json names it; None
    when the blob is too short to hold the header it announces."""
    end = _header_end(blob)
    if end is None or end > len(blob):
        return None
    return hashlib.sha256(memoryview(blob)[:end]).hexdigest()


def _header_end(blob: bytes | bytearray | mmap.mmap) -> int | None:
    """Where the header (and so the sections) ends, as the blob announces it; None when the blob is too
    short to announce it."""
    if len(blob) < _HEADER_START:
        return None
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    return _HEADER_START + int(length)


@dataclass(frozen=True)
class Expected:
    """What the index must say about its snapshot (from latest.json)."""

    snapshot: str
    etag: str
    sha256: str
    customer_count: int


class SnapshotIndex:
    """A parsed index: candidates by id and domain, positions by search text, where each member lies."""

    def __init__(self, blob: bytes | bytearray | mmap.mmap, expected: Expected) -> None:
        base = _header_end(blob)
        if blob[: len(MAGIC)] != MAGIC or base is None:
            raise UnusableIndex("not an index blob")
        try:
            header = json.loads(blob[_HEADER_START:base])
            names = SECTIONS_ONE_STREAM if header["format"] == FORMAT_ONE_STREAM else SECTIONS
            sections = {name: header["sections"][name] for name in names}
            digests = {name: str(header["sectionSha256"][name]) for name in names}
        except (ValueError, KeyError, TypeError):
            raise UnusableIndex("index header unreadable") from None
        self._check(header, expected)
        self.count = expected.customer_count
        self.member_customers = int(header["memberCustomers"])
        view = memoryview(blob)

        def section(name: str, width: int) -> memoryview[int]:  # a view of the blob: no copy
            offset, size = sections[name]
            if base + offset + size > len(blob) or size % width:
                raise UnusableIndex(f"index section {name} cut short")
            part = view[base + offset : base + offset + size]
            if hashlib.sha256(part).hexdigest() != digests[name]:
                raise UnusableIndex(f"index section {name} differs from its sha256")
            return part.cast("Q") if width == 8 else part.cast("I") if width == 4 else part

        self.members = section("members", 8)
        self.ids = section("ids", 4)
        self.id_table = section("id_table", 4)
        self.id_next = section("id_next", 4)
        self.domains = section("domains", 4)
        self.domain_table = section("domain_table", 4)
        self.domain_next = section("domain_next", 4)
        self.search_offsets = section("search_offsets", 8)
        self._check_shapes()
        if header["format"] == FORMAT:
            self.search = SearchText.verified(
                section("search", 1), section("search_chunks", 8), self.search_offsets
            )
        else:  # format 3: cut into chunks (a copy), and the stream's pages given back
            self.search = SearchText.rechunked(section("search", 1), self.search_offsets)
            start = base + sections["search"][0]
            _release(blob, start, start + sections["search"][1])

    def _check(self, header: dict[str, Any], expected: Expected) -> None:
        said = (header.get("snapshot"), header.get("etag"), header.get("sha256"), header.get("customerCount"))
        if said != (expected.snapshot, expected.etag, expected.sha256, expected.customer_count):
            raise UnusableIndex("index of another snapshot")
        readable = header.get("format") in (FORMAT, FORMAT_ONE_STREAM)
        if not readable or header.get("foldVersion") != FOLD_VERSION:
            raise UnusableIndex("index of another format or fold")
        if type(header.get("memberCustomers")) is not int or header["memberCustomers"] < 1:
            raise UnusableIndex("index header unreadable")
        key = header.get("hashKey")
        if type(key) is not str or len(key) != 2 * HASH_KEY_BYTES:
            raise UnusableIndex("index header unreadable")
        try:
            self._key_hash = KeyHash(bytes.fromhex(key))
        except ValueError:
            raise UnusableIndex("index header unreadable") from None

    def _check_shapes(self) -> None:
        n, k = self.count, self.member_customers
        tables = (self.id_table, self.domain_table)
        shapes = (
            len(self.ids) == n == len(self.domains) == len(self.id_next) == len(self.domain_next),
            len(self.search_offsets) == n + 1 and self.search_offsets[0] == 0,
            len(self.members) == -(-n // k) + 1,
            all(len(table) and len(table) & (len(table) - 1) == 0 for table in tables),
        )
        if not all(shapes):
            raise UnusableIndex("index sections do not fit together")
        # An absent key's lookup ends at an empty slot: a table without one (it verifies all the same,
        # when whoever wrote the blob also wrote its digests) would only end at the walk's bound.
        if not all(0 in table for table in tables):
            raise UnusableIndex("index table has no empty slot")

    # -- lookups: candidates, to be confirmed against the stored line --------------------------------
    def id_candidates(self, customer_id: str) -> Iterator[int]:
        """Positions whose id may be `customer_id` (any case), in stored order."""
        return _run(self.id_table, self.id_next, self.ids, self._key_hash(customer_id.lower()))

    def domain_candidates(self, key: str) -> list[int]:
        """Positions whose domain_key may be `key`, in stored order."""
        return list(_run(self.domain_table, self.domain_next, self.domains, self._key_hash(key)))

    def matching(self, needle: str) -> list[int]:
        """Positions whose folded text holds `needle` (already folded), in stored order."""
        return self.search.matching(search_bytes(needle))

    def member_of(self, position: int) -> tuple[int, int, int]:
        """(member number, its start and end in the stored blob) of a customer position."""
        member = position // self.member_customers
        return member, self.members[member], self.members[member + 1]


def _release(blob: bytes | bytearray | mmap.mmap, start: int, end: int) -> None:
    """Gives the whole pages of blob[start:end] back to the OS when the blob is an anonymous private mapping
    (store.read_into_buffer): a format-3 search text, once cut into chunks, is never read again (at a million
    customers about 10 MB an index)."""
    if isinstance(blob, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        if end > first:
            blob.madvise(mmap.MADV_DONTNEED, first, end - first)


def _run(
    table: memoryview[int], following: memoryview[int], hashes: memoryview[int], value: int
) -> Iterator[int]:
    """The positions whose hash is `value`: its table slot, then the run of positions from there. Each slot
    is walked once at most, and a run only goes forward, so a lookup ends whatever the blob holds; an entry
    past the last customer ends it too."""
    mask, count = len(table) - 1, len(hashes)
    slot = value & mask
    for _ in range(len(table)):
        entry = table[slot]
        if not entry or entry > count:
            return
        if hashes[entry - 1] == value:  # this hash's run
            position = entry - 1
            while True:
                if hashes[position] == value:
                    yield position
                after = following[position]
                if not position + 1 < after <= count:
                    return
                position = after - 1
        slot = (slot + 1) & mask
