"""Streams customers into one gzip-encoded block blob, committed only after the last page.

The document is written so that it is valid JSON and yet readable one customer per line:

    {"schemaVersion":1,"generatedAt":"...","customers":[
    {...customer 1...},
    {...customer 2...}
    ],"customerCount":2,"source":{...}}

Customers arrive as their JSON text exactly as Partner Center sent it (nothing is re-serialised). Encoding,
hashing, compressing and uploading run on one worker thread, so the next page request is already on the
wire while the previous page is being stored; the queue between them is short, so memory
stays flat whatever the number of customers. Nothing is visible until `commit()`: staged blocks of a run
that fails are never committed and expire on their own.

Every MEMBER_CUSTOMERS customers the gzip stream has a full flush point (header and trailer have their own):
the blob is still one gzip member of the same document, and index.py's index, built here as the customers
pass and staged to its own blob as its sections fill, says where each block between flush points lies so
the API can inflate one customer's block alone.

Both blobs are staged through shared/storage/blocks.py, whose block ids are unique to the run: two runs
staging the same blob name at once (a timer occurrence and a manual run in the same second) never overwrite
each other's blocks, the first commit wins whole, the other run fails naming the snapshot, and the committed
block list is checked against what this run staged.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import SnapshotExistsError, StorageError
from shared.jsonenc import compact
from shared.snapshots.index import MEMBER_CUSTOMERS
from shared.snapshots.index_builder import IndexBuilder
from shared.storage.blobs import GZIP_JSON
from shared.storage.layout import index_name
from shared.storage.problems import storage_problem

if TYPE_CHECKING:
    from shared.storage.blobs import Blobs

SCHEMA_VERSION = 1
BLOCK_BYTES = 1024 * 1024  # compressed bytes per staged block (about 10 MB of JSON); 50,000 max
GZIP_LEVEL = 6
_STOP = object()


@dataclass(frozen=True)
class CommittedSnapshot:
    name: str
    etag: str
    generated_at: str
    customer_count: int
    sha256: str  # of the JSON document, before gzip
    json_bytes: int
    stored_bytes: int
    index: str | None = None  # the lookup index blob beside it (index.py), once committed
    index_sha256: str | None = None


def _parsed(customers: list[str]) -> Iterator[Any]:
    """Each customer parsed by the storable rule, None for one that breaks it (then no index is built)."""
    from shared.customer_rule import NotStorable, check_storable

    for text in customers:
        try:
            yield check_storable(text)
        except NotStorable:
            yield None


class SnapshotWriter:
    def __init__(
        self,
        blobs: Blobs,
        name: str,
        generated_at: str,
        *,
        with_index: bool = False,  # the lookup index beside it (index.py)
        queue_pages: int = 4,
    ) -> None:
        self.name = name
        self._stager = blobs.stager(name, self._step)
        index = blobs.stager(index_name(name), f"storing index {index_name(name)}")
        self.generated_at = generated_at
        self._sha = hashlib.sha256()
        self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._blocks: list[str] = []  # block ids in order: what is committed and checked after
        self._page = 0  # the page the worker is storing, for messages
        self.count = 0
        self.json_bytes = 0
        self._produced = 0  # compressed bytes so far: where the next block starts
        self._in_member = 0  # customers in the current block
        self._header_done = False
        self.index = IndexBuilder(index.stage_named, index.ids) if with_index else None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_pages)
        self._error: BaseException | None = None
        self._written = threading.Event()  # every block of the snapshot staged, or the worker failed
        self._worker = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._worker.start()
        self._queue.put(
            compact({"schemaVersion": SCHEMA_VERSION, "generatedAt": generated_at})[:-1] + ',"customers":['
        )

    # -- producer side (the job's thread) ------------------------------------------------------
    def add(self, customers: list[str], parsed: Sequence[Any] | None = None) -> None:
        """Appends customers, each given as its JSON text on one line (as Partner Center sent it), and
        `parsed`, the same customers parsed (the job has them; parsed here otherwise) for the index.
        Raises the worker thread's error (a storage error, usually) once it has failed."""
        self._raise_worker_error()
        if customers:
            self._queue.put((customers, parsed))

    def commit(self, trailer: dict[str, Any], metadata: dict[str, str]) -> CommittedSnapshot:
        """Writes the trailer, waits for every block and commits the blob if it does not exist yet, then
        checks that the committed blob is made of exactly the blocks this run staged. Raises the worker
        thread's error, SnapshotExistsError when another run committed the name first, StorageError when
        Blob Storage refuses or the check fails: then nothing of this run is committed."""
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError

        self._queue.put("\n]," + compact(trailer)[1:] + "\n")
        self._queue.put(_STOP)
        self._written.wait()  # the worker goes on to seal the index meanwhile (see _run)
        self._raise_worker_error()
        name = self.name
        step = f"committing snapshot {name}"
        try:
            self._stage(self._gzip.flush())
            digest = self._sha.hexdigest()
            etag = self._stager.commit(  # only if no snapshot of this name exists: never replaced
                self._blocks,
                content=GZIP_JSON,
                metadata={**metadata, "sha256": digest, "customercount": str(self.count)},
            )
            whole = self._stager.committed_as_staged(self._blocks)
        except (ResourceExistsError, ResourceModifiedError):
            raise SnapshotExistsError(
                f"{step}: another run committed snapshot {name} first (a run started in the same second); "
                "this run's copy is dropped, a snapshot is never overwritten"
            ) from None
        except AzureError as exc:
            raise StorageError(f"{step}: {storage_problem(exc)}") from None
        if not whole:
            raise StorageError(f"{step}: the committed blob is not made of the blocks this run staged")
        return CommittedSnapshot(
            name=name,
            etag=etag,
            generated_at=self.generated_at,
            customer_count=self.count,
            sha256=digest,
            json_bytes=self.json_bytes,
            stored_bytes=self.stored_bytes,
        )

    def abort(self) -> None:
        """Stops the worker; staged blocks stay uncommitted and expire (Blob Storage drops them)."""
        if self._worker.is_alive():
            self._error = self._error or RuntimeError("snapshot aborted")
            self._queue.put(_STOP)  # the worker drains everything before it without writing
            self._worker.join(timeout=60)

    def named_failure(self, exc: BaseException) -> BaseException:
        """`exc` as the job reports it: the worker's Blob Storage error becomes a StorageError naming the
        step (storing page N of the snapshot); anything else is returned as it is."""
        if exc is self._error and self._stager.failed_step is not None:
            return self._stager.failure(exc)
        return exc

    @property
    def stored_bytes(self) -> int:
        return self._stager.stored_bytes

    def _step(self) -> str:
        """What the worker is doing, for an error of Blob Storage: which page of the snapshot it stores."""
        return {
            0: f"storing the start of snapshot {self.name}",
            -1: f"committing snapshot {self.name}",
        }.get(self._page, f"storing page {self._page} of snapshot {self.name}")

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            raise self._error

    # -- worker side ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (work := self._queue.get()) is not _STOP:
                if self._error is not None:
                    continue  # aborted or failed: drain without writing
                if isinstance(work, str):
                    self._page = -1 if self._page else 0  # the trailer comes after the last page
                    if self._in_member:
                        self._end_member()
                    self._write(work.encode())
                    if not self._header_done:  # customers start in a member of their own
                        self._header_done = True
                        self._end_member()
                else:
                    self._page += 1
                    self._write_items(*work)
        except BaseException as exc:  # re-raised on the job's thread
            self._error = exc
            while self._queue.get() is not _STOP:
                pass
        finally:
            self._written.set()
        if self._error is None and self.index is not None:
            # The index's tables and last blocks are staged while the job commits the snapshot and writes
            # its change record; a failure here is raised where the index is committed (IndexBuilder.finish).
            with contextlib.suppress(Exception):
                self.index.seal()

    def _write_items(self, customers: list[str], parsed: Sequence[Any] | None) -> None:
        if self.index is not None:
            self.index.add(_parsed(customers) if parsed is None else parsed)
        done = 0
        while done < len(customers):
            run = customers[done : done + MEMBER_CUSTOMERS - self._in_member]
            first = "\n" if self.count == 0 else ",\n"
            self.count += len(run)
            self._write((first + ",\n".join(run)).encode())
            done += len(run)
            self._in_member += len(run)
            if self._in_member == MEMBER_CUSTOMERS:
                self._end_member()

    def _end_member(self) -> None:
        """A full flush point: the deflate stream starts afresh on a byte boundary (no back-references
        across it), so the raw deflate data up to the next one inflates on its own; the blob stays one
        gzip member (curl --compressed, like some other readers, takes only one)."""
        self._stage(self._gzip.flush(zlib.Z_FULL_FLUSH), final=False)
        self._in_member = 0
        if self.index is not None:
            self.index.members.append(self._produced)

    def _write(self, data: bytes) -> None:
        self._sha.update(data)
        self.json_bytes += len(data)
        self._stage(self._gzip.compress(data), final=False)

    def _stage(self, data: bytes, *, final: bool = True) -> None:
        self._produced += len(data)
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes and (final or self._pending_bytes >= BLOCK_BYTES):
            # Blob Storage's error is raised as it is; the stager remembers the step (named_failure).
            self._blocks.append(self._stager.append(b"".join(self._pending)))
            self._pending, self._pending_bytes = [], 0
