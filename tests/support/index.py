"""Index blobs for tests: built as the job commits them, and changed the ways a test needs (a header field,
one byte of a section, a section rewritten with its digest updated so that the index still verifies, the
search text as format 3 stored it)."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from typing import Any

from shared.snapshots.index import MAGIC, MEMBER_CUSTOMERS, Expected


def built(customers: list[Any], members: int | None = None) -> tuple[bytes, Expected]:
    """An index blob as the job commits it: its blocks in the order of the block list."""
    from shared.snapshots.index_builder import IndexBuilder

    staged: dict[str, bytes] = {}
    builder = IndexBuilder(staged.__setitem__)
    builder.add(customers)
    count = len(customers)
    builder.members.extend(range(members if members is not None else -(-count // MEMBER_CUSTOMERS) + 1))
    expected = Expected("snapshots/x.json", '"0x1"', "a" * 64, count)
    builder.finish(snapshot="snapshots/x.json", etag='"0x1"', sha256="a" * 64, customer_count=count)
    return b"".join(staged[block_id] for block_id in builder.block_ids()), expected


def with_header(blob: bytes, **changes: Any) -> bytes:
    """The blob with header fields changed, the header padded to its length (section digests unchanged)."""
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + length]) | changes
    packed = json.dumps(header).encode().ljust(length)  # the sections' offsets follow the header
    assert len(packed) == length
    return blob[:start] + packed + blob[start + length :]


def with_byte_changed(blob: bytes, section: str) -> bytes:
    """The blob with the first byte of `section` flipped (its digest in the header unchanged)."""
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    offset, _size = json.loads(blob[start : start + length])["sections"][section]
    at = start + length + offset
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :]


def with_section(blob: bytes, name: str, change: Callable[[bytearray], None]) -> bytes:
    """The index blob with section `name` changed in place and its sha256 in the header updated: an index
    that verifies (the header keeps its length: a sha256 is 64 hex digits either way)."""
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + length])
    offset, size = header["sections"][name]
    at = start + length + offset
    data = bytearray(blob[at : at + size])
    change(data)
    header["sectionSha256"][name] = hashlib.sha256(data).hexdigest()
    packed = json.dumps(header).encode().ljust(length)
    assert len(packed) == length
    return blob[:start] + packed + blob[start + length : at] + bytes(data) + blob[at + size :]


def fill_every_slot(table: bytearray) -> None:
    from array import array

    slots = array("I", bytes(table))
    for slot, entry in enumerate(slots):
        slots[slot] = entry or 1  # every empty slot points at the first customer
    table[:] = slots.tobytes()


def header_of(blob: bytes) -> tuple[dict[str, Any], int]:
    """(the header, where the sections start)."""
    (length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(blob[start : start + length]), start + length


def section_of(blob: bytes, name: str) -> bytes:
    header, base = header_of(blob)
    offset, size = header["sections"][name]
    return blob[base + offset : base + offset + size]


def as_one_stream(blob: bytes) -> bytes:
    """The index as format 3 stored it: the search text one zlib stream, no chunk table."""
    header, _ = header_of(blob)
    text = zlib.decompressobj(-15).decompress(section_of(blob, "search"))
    sections = {name: section_of(blob, name) for name in header["sections"] if name != "search_chunks"}
    sections["search"] = zlib.compress(text, 1)
    placed, offset = {}, 0
    for name, data in sections.items():
        placed[name] = [offset, len(data)]
        offset += len(data)
    header |= {
        "format": 3,
        "sections": placed,
        "sectionSha256": {name: hashlib.sha256(data).hexdigest() for name, data in sections.items()},
    }
    packed = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(packed)) + packed + b"".join(sections.values())
