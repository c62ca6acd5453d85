"""The latest snapshot answered from its lookup index (shared/snapshots/index.py), not a whole load.

An instance downloads the index (a tenth of the JSON at most: hashes, offsets and the folded search text)
and answers at once; a lookup inflates the one deflate block that holds its customer. The stored blob
(gzip, about a ninth of the JSON) is fetched once in the background; until it is there, a member is read
from Blob Storage with a ranged GET pinned to the snapshot's ETag. Answers are the stored lines, byte for
byte, as in the whole load: every candidate the index's hashes give is confirmed against its line (an id,
a domain) before it is answered.

Memory at 1,000,000 customers: the index (about 50 MB: tables and offsets 40, the search text kept
compressed about 9), the stored blob (about 80 MB) and a few inflated members; nothing per customer as a
Python object.
"""

from __future__ import annotations

import json
import logging
import mmap
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared import events
from shared.api.errors import snapshot_unavailable
from shared.errors import SnapshotAppError, SnapshotFormatError
from shared.events import log_event
from shared.snapshots.document import MAX_LINE_BYTES, line_id
from shared.snapshots.index import Expected, SnapshotIndex, UnusableIndex, header_sha256
from shared.text import domain_key, fold

if TYPE_CHECKING:
    from shared.snapshots.store import Manifest, SnapshotStore

log = logging.getLogger("shared.api")
MEMBERS_KEPT = 64  # inflated members kept (about 3 MB of JSON): paging reads a few in a row
# On an instance's first load, a stored blob up to this size is fetched before the first answer (a fraction
# of a second), so the instance answers from memory through a storage outage from then on; a larger one, or
# the next snapshot's, is fetched in the background while members are read from storage.
FETCH_FIRST_BYTES = 16 * 1024 * 1024
INDEX_STREAMS = 2  # connections a large index is read over (each holds a range in flight: about 9 MiB)
INDEX_STREAMS_FROM = 250_000  # customers: an index of about 12 MB
# The next snapshot's stored blob waits this long at most for the previous snapshot to be let go: should
# something keep it longer, lookups are served from memory again all the same.
LET_GO_SECONDS = 10.0


class StoredUnreadable(SnapshotAppError):
    """The snapshot's stored bytes are not what its index says (replaced, missing or damaged)."""


class IndexedSnapshot:
    gzipped = True  # an index is only written with the gzip blob the writer stored
    skipped = 0  # an index is only written when every customer is one the indexes can use

    def __init__(self, manifest: Manifest, store: SnapshotStore, index: SnapshotIndex) -> None:
        self.manifest = manifest
        self.index = index
        self._store = store
        self._stored: mmap.mmap | None = None
        self._members: OrderedDict[int, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._fetcher: threading.Thread | None = None
        self._released = False
        self._whole: bytes | None = None

    @classmethod
    def load(cls, store: SnapshotStore, manifest: Manifest) -> IndexedSnapshot:
        """The index latest.json names, verified (its sha256, and it names this snapshot's ETag, sha256 and
        count). Raises UnusableIndex for one that does not verify, StoredUnreadable when the snapshot itself
        is missing or replaced, AzureError when storage fails."""
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        assert manifest.index is not None
        started = time.monotonic()
        try:
            # Hashes, tables and offsets take about 40 bytes a customer; the search text less than the JSON.
            # A request waits for it: a large one comes over two connections (a quarter less time at a
            # million customers; a small one would wait for the second connection's handshake instead).
            large = manifest.customer_count >= INDEX_STREAMS_FROM
            blob = store.read_into_buffer(
                manifest.index,
                max_bytes=64 * manifest.customer_count + manifest.json_bytes,
                streams=INDEX_STREAMS if large else 1,
            )
        except (ResourceNotFoundError, SnapshotFormatError):
            raise UnusableIndex("index missing or too large") from None
        if header_sha256(blob) != manifest.index_sha256:  # the header holds each section's sha256
            raise UnusableIndex("index sha256 differs from latest.json")
        expected = Expected(manifest.snapshot, manifest.etag, manifest.sha256, manifest.customer_count)
        index = SnapshotIndex(blob, expected)
        del blob
        try:
            size = store.stored_size(manifest.snapshot, etag=manifest.etag)
        except (ResourceNotFoundError, ResourceModifiedError):
            raise StoredUnreadable("missing, or replaced since it was published") from None
        if size != manifest.stored_bytes or index.members[-1] > size:
            raise StoredUnreadable("stored size differs from latest.json")
        log_event(
            log,
            logging.INFO,
            events.API_SNAPSHOT_LOADED,
            snapshot=manifest.snapshot,
            customers=index.count,
            skipped=0,
            storedBytes=size,
            index=True,
            elapsedSeconds=round(time.monotonic() - started, 3),
        )
        return cls(manifest, store, index)

    # -- the stored blob, fetched once in the background ------------------------------------------
    def fetch_in_background(
        self, *, small_first: bool = False, after: Callable[[], object | None] | None = None
    ) -> None:
        """Fetches the stored blob on a thread of its own; with `small_first`, a small one at once. `after`:
        a weak reference to the snapshot this one replaced, fetched only once that one is gone (requests
        still answering from it let go of it in moments), so an instance holds one stored blob at a time."""
        if small_first and self.manifest.stored_bytes <= FETCH_FIRST_BYTES:
            self._fetch()
            return
        with self._lock:
            if self._fetcher is None:
                self._fetcher = threading.Thread(
                    target=self._fetch, args=(after,), name="snapshot-fetch", daemon=True
                )
                self._fetcher.start()

    def _fetch(self, after: Callable[[], object | None] | None = None) -> None:
        from azure.core.exceptions import AzureError

        waited_until = time.monotonic() + LET_GO_SECONDS
        while after is not None and after() is not None and time.monotonic() < waited_until:
            time.sleep(0.02)  # members are read from storage meanwhile
        try:
            stored = self._store.read_into_buffer(self.manifest.snapshot, self.manifest.etag)
        except (AzureError, SnapshotFormatError):  # members keep being read one at a time
            return
        if len(stored) == self.manifest.stored_bytes and not self._released:
            self._stored = stored

    def release_stored(self) -> None:
        """Lets the stored blob go (a newer snapshot is loading): members are read from storage again."""
        self._released = True
        self._stored = None

    @property
    def stored(self) -> bytes:
        """The whole blob as stored (the whole-document answer, small snapshots only), its sha256 checked."""
        from shared.snapshots.document import verify_document

        if self._whole is not None:
            return self._whole
        stored = self._stored
        data = bytes(stored) if stored is not None else self._read_range(0, self.manifest.stored_bytes)
        if not verify_document(data, True, self.manifest.sha256, self.manifest.json_bytes):
            raise snapshot_unavailable("the latest snapshot cannot be read; the next publish fixes it")
        self._whole = data  # verified once; the handler answers it inline only while it is small
        return data

    # -- members ------------------------------------------------------------------------------
    def _member(self, member: int) -> list[bytes]:
        with self._lock:
            lines = self._members.get(member)
            if lines is not None:
                self._members.move_to_end(member)
                return lines
        _, start, end = self.index.member_of(member * self.index.member_customers)
        stored = self._stored
        try:
            data = stored[start:end] if stored is not None else self._read_range(start, end)
            lines = _member_lines(data, self._customers_in(member))
        except StoredUnreadable as exc:  # the blob latest.json names is not what its index says
            log_event(
                log,
                logging.ERROR,
                events.API_SNAPSHOT_UNREADABLE,
                snapshot=self.manifest.snapshot,
                reason=str(exc),
            )
            raise snapshot_unavailable(
                "the latest snapshot cannot be read; the next publish fixes it"
            ) from None
        with self._lock:
            self._members[member] = lines
            while len(self._members) > MEMBERS_KEPT:
                self._members.popitem(last=False)
        return lines

    def _customers_in(self, member: int) -> int:
        k = self.index.member_customers
        return min(k, self.index.count - member * k)

    def _read_range(self, start: int, end: int) -> bytes:
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            return self._store.read_range(self.manifest.snapshot, self.manifest.etag, start, end - start)
        except (ResourceNotFoundError, ResourceModifiedError):
            raise StoredUnreadable("missing, or replaced since it was published") from None

    def line(self, position: int) -> bytes:
        k = self.index.member_customers
        return self._member(position // k)[position % k]

    # -- the lookups latest.LoadedSnapshot answers ---------------------------------------------------------
    @property
    def count(self) -> int:
        return self.index.count

    def lines_at(self, positions: Sequence[int]) -> list[bytes]:
        return [self.line(position) for position in positions]

    def customer(self, customer_id: str) -> bytes | None:
        wanted = customer_id.lower()
        for position in self.index.id_candidates(customer_id):
            line = self.line(position)
            if line_id(line).lower() == wanted:
                return line
        return None

    def unusable(self, customer_id: str) -> bool:
        return False

    def with_domain(self, domain: str) -> list[int]:
        key = domain_key(domain)
        return [p for p in self.index.domain_candidates(key) if _domain_key_of(self.line(p)) == key]

    def matching(self, text: str) -> list[int]:
        return self.index.matching(fold(text))


def _member_lines(data: bytes | bytearray, customers: int) -> list[bytes]:
    """The customer lines of one block (raw deflate between two full flush points of the gzip stream) as
    the whole document reads them (trailing comma cut)."""
    inflate = zlib.decompressobj(-15)
    try:
        text = inflate.decompress(data, customers * MAX_LINE_BYTES)
    except zlib.error:
        raise StoredUnreadable("a damaged deflate block") from None
    if inflate.unconsumed_tail or inflate.eof:
        raise StoredUnreadable("a deflate block is not where the index says")
    lines = text.split(b"\n")
    if len(lines) != customers + 1 or lines[0] not in (b"", b","):
        raise StoredUnreadable("a deflate block does not hold the customers the index says")
    return [line[:-1] if line.endswith(b",") else line for line in lines[1:]]


def _domain_key_of(line: bytes) -> str | None:
    # The writer indexed this line after checking it by the storable rule: JSON, a dict, a dict profile.
    profile: Any = json.loads(line).get("companyProfile") or {}
    domain = profile.get("domain")
    return domain_key(domain) if isinstance(domain, str) and domain else None
