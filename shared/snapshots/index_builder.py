"""Builds the lookup index as the writer stores the snapshot (the format: shared/snapshots/index.py).

The job never holds the index: ids, domains, offsets and the search text are staged to the index blob in
blocks as they fill (one lane of the one block stager each, committed in layout order at the end), and what
stays in memory until the end is each hash, 8 bytes a customer, then one table (and its runs) at a time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
import threading
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from shared.customer_rule import indexed_fields
from shared.snapshots.index import (
    FOLD_VERSION,
    FORMAT,
    HASH_KEY_BYTES,
    MAGIC,
    MEMBER_CUSTOMERS,
    SECTIONS,
    KeyHash,
    search_bytes,
)
from shared.snapshots.search import SearchChunker
from shared.storage.blocks import BlockIds
from shared.text import domain_key, fold

# A section is staged in blocks of about BLOCK_BYTES as it fills: small enough that most of the index is
# staged while the run pages (at 100,000 customers each section is under a megabyte), large enough that a
# million customers take about 130 blocks. The tables, built at the end, go in fewer, larger blocks.
BLOCK_BYTES = 256 * 1024
TABLE_BLOCK_BYTES = 1024 * 1024  # each block is copied out of the table: one megabyte at a time


def _table_size(count: int) -> int:
    return 1 << max(4, (2 * count).bit_length())  # at most half full: short probes


def _table(hashes: array[int]) -> tuple[array[int], array[int], int]:
    """(table, next, probes): the open-addressing table of each distinct hash (`hashes` by position; 0:
    nothing to find, a customer without a domain), its slot holding the first position with that hash + 1,
    and `next` linking each position to the next one with the same hash. Built from the last position back,
    so each run comes out in stored order. `probes`: the slots walked past a hash's home slot, all of them
    together (random hashes in a table at most half full: well under one a hash)."""
    count = len(hashes)
    mask = _table_size(count) - 1
    table = array("I", bytes(4 * (mask + 1)))
    following = array("I", bytes(4 * count))
    probes = 0
    for position in range(count - 1, -1, -1):
        value = hashes[position]
        if value:
            slot = value & mask
            while (entry := table[slot]) and hashes[entry - 1] != value:
                slot = (slot + 1) & mask
                probes += 1
            following[position] = entry  # 0: the first of its key met so far is the last of its run
            table[slot] = position + 1
    return table, following, probes


Stage = Callable[[str, bytes], None]  # (block id, data): stages one block of the index blob


class _Section:
    """One section of the index blob, staged in blocks of about BLOCK_BYTES as it fills (its own lane of
    block ids: shared/storage/blocks.py)."""

    def __init__(self, lane: str, ids: BlockIds, stage: Stage) -> None:
        self._lane = lane
        self._ids = ids
        self._stage = stage
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.block_ids: list[str] = []
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._pending_bytes >= BLOCK_BYTES:
                self.flush()

    def flush(self) -> None:
        if self._pending:
            block_id = self._ids.next(self._lane)
            self._stage(block_id, b"".join(self._pending))
            self.block_ids.append(block_id)
            self._pending, self._pending_bytes = [], 0


class IndexBuilder:
    """Fed each customer in stored order by the snapshot writer's worker thread; stages the index blob's
    blocks through `stage` as sections fill, and the header last (`finish`). `ids`: the block ids of the
    blob's stager (unique to the run, so two runs staging the same name never mix their blocks)."""

    def __init__(self, stage: Stage, ids: BlockIds | None = None) -> None:
        ids = ids or BlockIds()
        self._header_id = ids.next("h")
        self._sections = {name: _Section(str(number), ids, stage) for number, name in enumerate(SECTIONS)}
        self._stage = stage
        self._hash_key = secrets.token_bytes(HASH_KEY_BYTES)  # this index's own: see the module's docstring
        self._key_hash = KeyHash(self._hash_key)
        self.probes: dict[str, int] = {}  # table name → slots its build walked past home slots (`_table`)
        self.usable = True
        self.count = 0
        self.members = array("Q")
        self._id_low = array("I")  # the hashes, kept for the tables (the sections are staged as they fill)
        self._domain_low = array("I")
        self._search = SearchChunker()
        self._search_bytes = 0
        self._sections["search_offsets"].write(bytes(8))  # the first text starts at 0
        self._seal_lock = threading.Lock()
        self._sealed = False
        self._seal_error: Exception | None = None

    def add(self, customers: Iterable[Any]) -> None:
        """One page of customers, in stored order (each section written once per page: this runs for every
        customer of every run, beside the job's paging)."""
        if not self.usable:
            return
        ids, domains, offsets = array("I"), array("I"), array("Q")
        texts: list[bytes] = []
        total = self._search_bytes
        key_hash = self._key_hash
        for customer in customers:
            fields = indexed_fields(customer)
            if fields is None:
                self.usable = False  # the API falls back to its whole load, which leaves this one out
                return
            customer_id, domain, name = fields
            ids.append(key_hash(customer_id.lower()))
            domains.append(key_hash(domain_key(domain)) if domain else 0)
            text = search_bytes(f"{fold(name)}\n{fold(domain)}")
            total += len(text)
            offsets.append(total)
            texts.append(text)
        self._search_bytes = total
        self.count += len(ids)
        self._id_low.extend(ids)
        self._domain_low.extend(domains)
        sections = self._sections
        sections["ids"].write(ids.tobytes())
        sections["domains"].write(domains.tobytes())
        sections["search_offsets"].write(offsets.tobytes())
        sections["search"].write(self._search.add(texts))

    def seal(self) -> None:
        """Stages what is left but the header: the members, the two tables, the last block of each section.
        Once: the writer's worker calls it after the last customer, `finish` waits for it (or does it).
        Raises what staging raised (StorageError), every time it is called after that."""
        with self._seal_lock:
            if self._seal_error is not None:
                raise self._seal_error
            if not self._sealed:
                try:
                    self._seal()
                except Exception as exc:
                    self._seal_error = exc
                    raise
                self._sealed = True

    def _seal(self) -> None:
        if not self.usable:
            return  # no index is committed for this snapshot: nothing more to stage
        sections = self._sections
        tail, chunks = self._search.finish()
        sections["search"].write(tail)
        sections["search_chunks"].write(chunks)
        sections["members"].write(self.members.tobytes())
        for name, low in (("id", "_id_low"), ("domain", "_domain_low")):
            table, following, self.probes[f"{name}_table"] = _table(getattr(self, low))
            setattr(self, low, array("I"))  # its job is done: freed before the next table is built
            for part, data in ((f"{name}_table", table), (f"{name}_next", following)):
                view = memoryview(data).cast("B")
                for start in range(0, len(view), TABLE_BLOCK_BYTES):  # copies of one block at a time
                    sections[part].write(view[start : start + TABLE_BLOCK_BYTES].tobytes())
                del view
            del table, following
        for section in sections.values():
            section.flush()

    def finish(self, *, snapshot: str, etag: str, sha256: str, customer_count: int) -> str:
        """Seals the index (see `seal`), stages its header and returns the sha256 of the header, which
        latest.json names. Raises StorageError when staging failed."""
        self.seal()
        sections = self._sections
        placed: dict[str, list[int]] = {}
        offset = 0
        for name, section in sections.items():
            placed[name] = [offset, section.size]
            offset += section.size
        header = json.dumps(
            {
                "format": FORMAT,
                "foldVersion": FOLD_VERSION,
                "memberCustomers": MEMBER_CUSTOMERS,
                "snapshot": snapshot,
                "etag": etag,
                "sha256": sha256,
                "customerCount": customer_count,
                "hashKey": self._hash_key.hex(),
                "sections": placed,
                "sectionSha256": {name: section.digest.hexdigest() for name, section in sections.items()},
            }
        ).encode()
        head = MAGIC + struct.pack("<I", len(header)) + header
        self._stage(self._header_id, head)
        return hashlib.sha256(head).hexdigest()

    def block_ids(self) -> list[str]:
        """Every block of the blob in layout order (header first): the block list to commit."""
        return [self._header_id, *(i for section in self._sections.values() for i in section.block_ids)]
