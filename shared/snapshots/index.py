"""The lookup index written beside each snapshot, so an API instance loads a small index, not the data.

writer.py makes a full flush point every MEMBER_CUSTOMERS customers (the blob stays one gzip member of the
same JSON document, byte for byte), and builds this index as it writes:

    members        uint64 offsets in the stored blob: customer member m (customers m*K .. m*K+K-1) is
                   stored[members[m]:members[m+1]], raw deflate that inflates on its own
    ids            uint64 hash of each customer's lower-cased id, by position
    id_table       open-addressing table (linear probing) of position + 1, slot = hash & (size - 1)
    domains        uint64 hash of each customer's domain_key (0: no domain), by position
    domain_table   the same kind of table for domains
    search_offsets uint64 start of each customer's folded "companyName\\ndomain" in `search`, then its end
    search         those texts back to back, UTF-8, zlib-compressed in the blob

A hash only finds candidates: every match is confirmed against the customer's stored line before it is
answered, so a collision costs a probe, never a wrong answer. The blob starts with MAGIC and a JSON header
naming the snapshot's name, ETag, sha256 and count (an index of another snapshot is refused), the format
and fold versions (one built with another fold is refused) and where each section lies; latest.json names
the index and its sha256. Only built when every customer is one the API's indexes can use.
"""

from __future__ import annotations

import json
import mmap
import struct
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.api.text import domain_key, fold

MAGIC = b"CSPINDEX"
FORMAT = 1
FOLD_VERSION = 1  # bump when shared/api/text.py folds differently: older indexes are then refused
MEMBER_CUSTOMERS = 64  # about 40 KB of JSON per member: one lookup inflates that much
SECTIONS = ("members", "ids", "id_table", "domains", "domain_table", "search_offsets", "search")


class UnusableIndex(ValueError):
    """An index blob that is not one this code can trust for the snapshot it is asked about."""


def key_hash(text: str) -> int:
    """64-bit hash of a lookup key, never 0 (0 marks "no domain")."""
    data = text.encode("utf-8", "surrogatepass")
    # Two C checksums: a tenth of a cryptographic hash's cost. A collision costs a probe, never an answer
    # (every candidate is confirmed against its stored line).
    # The table slot comes from the low bits: crc32's, which spread; adler32's low half is a byte sum.
    return (zlib.adler32(data) << 32 | zlib.crc32(data)) or 1


def search_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a substring of UTF-8 is a substring of the text


def index_name(snapshot: str) -> str:
    """snapshots/Y/M/D/customers-T.json → snapshots/Y/M/D/customers-T.index (aged with its snapshot)."""
    return snapshot.removesuffix(".json") + ".index"


def fields_of(customer: Any) -> tuple[str, str, str] | None:
    """(id, domain, companyName) of a parsed customer; None when the API's indexes could not use it."""
    if type(customer) is not dict or type(customer.get("id")) is not str or not customer["id"]:
        return None
    relationship = customer.get("relationshipToPartner")
    profile = customer.get("companyProfile")
    if relationship is not None and type(relationship) is not str:
        return None
    if profile is None:
        return customer["id"], "", ""
    if type(profile) is not dict:
        return None
    domain, name, tenant = profile.get("domain"), profile.get("companyName"), profile.get("tenantId")
    if any(value is not None and type(value) is not str for value in (domain, name, tenant)):
        return None
    return customer["id"], domain or "", name or ""


def _table_size(count: int) -> int:
    return 1 << max(4, (2 * count).bit_length())  # at most half full: short probes


def _table(hashes: array[int]) -> array[int]:
    size = _table_size(len(hashes))
    mask = size - 1
    table = array("I", bytes(4 * size))
    for position, value in enumerate(hashes):
        if value:
            slot = value & mask
            while table[slot]:
                slot = (slot + 1) & mask
            table[slot] = position + 1
    return table


class IndexBuilder:
    """Fed each customer in stored order by the snapshot writer's worker thread."""

    def __init__(self) -> None:
        self.usable = True
        self.ids = array("Q")
        self.domains = array("Q")
        self.search_offsets = array("Q", [0])
        self.members = array("Q")
        self._search = zlib.compressobj(1)
        self._search_parts: list[bytes] = []
        self._search_bytes = 0

    def add(self, customers: Iterable[Any]) -> None:
        """One page of customers, in stored order (one compress call per page: this runs for every
        customer of every run, beside the job's paging)."""
        texts: list[bytes] = []
        offsets, total = self.search_offsets, self._search_bytes
        for customer in customers:
            fields = fields_of(customer)
            if fields is None:
                self.usable = False  # the API falls back to its whole load, which leaves this one out
                return
            customer_id, domain, name = fields
            self.ids.append(key_hash(customer_id.lower()))
            self.domains.append(key_hash(domain_key(domain)) if domain else 0)
            text = search_bytes(f"{fold(name)}\n{fold(domain)}")
            total += len(text)
            offsets.append(total)
            texts.append(text)
        self._search_bytes = total
        if part := self._search.compress(b"".join(texts)):
            self._search_parts.append(part)

    def sections(self, *, snapshot: str, etag: str, sha256: str, customer_count: int) -> Iterator[bytes]:
        """The index blob, as the pieces to store one after the other; each made only when it is asked
        for, so the job holds one section's copy at a time."""
        self._search_parts.append(self._search.flush())
        bodies: dict[str, Callable[[], bytes]] = {
            "members": self.members.tobytes,
            "ids": self.ids.tobytes,
            "id_table": lambda: _table(self.ids).tobytes(),
            "domains": self.domains.tobytes,
            "domain_table": lambda: _table(self.domains).tobytes(),
            "search_offsets": self.search_offsets.tobytes,
        }
        sizes = {
            "members": 8 * len(self.members),
            "ids": 8 * len(self.ids),
            "id_table": 4 * _table_size(len(self.ids)),
            "domains": 8 * len(self.domains),
            "domain_table": 4 * _table_size(len(self.domains)),
            "search_offsets": 8 * len(self.search_offsets),
            "search": sum(map(len, self._search_parts)),
        }
        placed: dict[str, list[int]] = {}
        offset = 0
        for name in SECTIONS:
            placed[name] = [offset, sizes[name]]
            offset += sizes[name]
        header = json.dumps(
            {
                "format": FORMAT,
                "foldVersion": FOLD_VERSION,
                "memberCustomers": MEMBER_CUSTOMERS,
                "snapshot": snapshot,
                "etag": etag,
                "sha256": sha256,
                "customerCount": customer_count,
                "sections": placed,
            }
        ).encode()
        yield MAGIC + struct.pack("<I", len(header)) + header
        for name in SECTIONS[:-1]:
            yield bodies[name]()
        yield from self._search_parts


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
        if blob[: len(MAGIC)] != MAGIC or len(blob) < len(MAGIC) + 4:
            raise UnusableIndex("not an index blob")
        (length,) = struct.unpack_from("<I", blob, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = json.loads(blob[start : start + length])
            sections = {name: header["sections"][name] for name in SECTIONS}
        except (ValueError, KeyError, TypeError):
            raise UnusableIndex("index header unreadable") from None
        self._check(header, expected)
        self.count = expected.customer_count
        self.member_customers = int(header["memberCustomers"])
        base = start + length
        view = memoryview(blob)

        def section(name: str, wide: bool) -> memoryview[int]:  # a view of the blob: no copy
            offset, size = sections[name]
            if base + offset + size > len(blob) or size % (8 if wide else 4):
                raise UnusableIndex(f"index section {name} cut short")
            part = view[base + offset : base + offset + size]
            return part.cast("Q") if wide else part.cast("I")

        self.members = section("members", True)
        self.ids = section("ids", True)
        self.id_table = section("id_table", False)
        self.domains = section("domains", True)
        self.domain_table = section("domain_table", False)
        self.search_offsets = section("search_offsets", True)
        offset, size = sections["search"]
        declared = max(self.search_offsets[-1:], default=0)  # none: the shapes check refuses it
        self.search = _inflate_into(view[base + offset : base + offset + size], declared)
        self._check_shapes()

    def _check(self, header: dict[str, Any], expected: Expected) -> None:
        said = (header.get("snapshot"), header.get("etag"), header.get("sha256"), header.get("customerCount"))
        if said != (expected.snapshot, expected.etag, expected.sha256, expected.customer_count):
            raise UnusableIndex("index of another snapshot")
        if header.get("format") != FORMAT or header.get("foldVersion") != FOLD_VERSION:
            raise UnusableIndex("index of another format or fold")
        if type(header.get("memberCustomers")) is not int or header["memberCustomers"] < 1:
            raise UnusableIndex("index header unreadable")

    def _check_shapes(self) -> None:
        n, k = self.count, self.member_customers
        shapes = (
            len(self.ids) == n == len(self.domains),
            len(self.search_offsets) == n + 1 and self.search_offsets[-1] == len(self.search),
            len(self.members) == -(-n // k) + 1,
            all(size and size & (size - 1) == 0 for size in (len(self.id_table), len(self.domain_table))),
        )
        if not all(shapes):
            raise UnusableIndex("index sections do not fit together")

    # -- lookups: candidates, to be confirmed against the stored line --------------------------------
    def id_candidates(self, customer_id: str) -> Iterator[int]:
        return _probe(self.id_table, self.ids, key_hash(customer_id.lower()))

    def domain_candidates(self, key: str) -> list[int]:
        return sorted(_probe(self.domain_table, self.domains, key_hash(key)))

    def matching(self, needle: str) -> list[int]:
        """Positions whose folded text holds `needle` (already folded), in stored order."""
        wanted, text, offsets = search_bytes(needle), self.search, self.search_offsets
        found: list[int] = []
        if not wanted:
            return list(range(self.count))
        from bisect import bisect_right

        at = text.find(wanted)
        while at >= 0:
            position = bisect_right(offsets, at) - 1
            end = offsets[position + 1]
            if at + len(wanted) <= end:
                found.append(position)
                at = text.find(wanted, end)
            else:  # spans two customers' texts: not a match of either
                at = text.find(wanted, at + 1)
        return found

    def member_of(self, position: int) -> tuple[int, int, int]:
        """(member number, its start and end in the stored blob) of a customer position."""
        member = position // self.member_customers
        return member, self.members[member], self.members[member + 1]


def _inflate_into(data: bytes | memoryview, size: int) -> bytearray:
    """zlib data inflated into one buffer of the `size` its offsets declare: no second copy of the text
    (zlib's own output would be joined from blocks, twice the size at the peak), never past `size`."""
    text = bytearray(size)
    target = memoryview(text)
    inflate = zlib.decompressobj()
    filled = 0
    try:
        while True:
            piece = inflate.decompress(data, min(1 << 20, size - filled) or 1)
            if filled + len(piece) > size:
                raise UnusableIndex("index search text longer than its offsets say")
            target[filled : filled + len(piece)] = piece
            filled += len(piece)
            data = inflate.unconsumed_tail
            if inflate.eof or not (piece or data):
                break
    except zlib.error:
        raise UnusableIndex("index search text damaged") from None
    if not inflate.eof or filled != size:
        raise UnusableIndex("index search text damaged")
    return text


def _probe(table: memoryview[int], hashes: memoryview[int], value: int) -> Iterator[int]:
    mask = len(table) - 1
    slot = value & mask
    while entry := table[slot]:
        if hashes[entry - 1] == value:
            yield entry - 1
        slot = (slot + 1) & mask
