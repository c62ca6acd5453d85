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
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

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


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SnapshotWriter:
    def __init__(self, blob: BlobClient, generated_at: str, *, queue_pages: int = 4) -> None:
        self._blob = blob
        self.generated_at = generated_at
        self._sha = hashlib.sha256()
        self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip container
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._blocks: list[str] = []
        self.count = 0
        self.json_bytes = 0
        self.stored_bytes = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_pages)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._worker.start()
        self._queue.put(
            dumps({"schemaVersion": SCHEMA_VERSION, "generatedAt": generated_at})[:-1] + ',"customers":['
        )

    # -- producer side (the job's thread) ------------------------------------------------------
    def add(self, customers: list[str]) -> None:
        """Appends customers, each given as its JSON text on one line (as Partner Center sent it).
        Raises the worker thread's error (a storage error, usually) once it has failed."""
        self._raise_worker_error()
        if customers:
            self._queue.put(customers)

    def commit(self, trailer: dict[str, Any], metadata: dict[str, str]) -> CommittedSnapshot:
        """Writes the trailer, waits for every block and commits the blob if it does not exist yet.
        Raises the worker thread's error, or the SDK's when the commit fails (the blob appeared meanwhile,
        storage out of reach): then nothing is committed."""
        from azure.core import MatchConditions
        from azure.storage.blob import BlobBlock, ContentSettings

        self._queue.put("\n]," + dumps(trailer)[1:] + "\n")
        self._queue.put(_STOP)
        self._worker.join()
        self._raise_worker_error()
        self._stage(self._gzip.flush())
        digest = self._sha.hexdigest()
        result = self._blob.commit_block_list(
            [BlobBlock(block_id) for block_id in self._blocks],
            content_settings=ContentSettings(content_type="application/json", content_encoding="gzip"),
            metadata={**metadata, "sha256": digest, "customercount": str(self.count)},
            match_condition=MatchConditions.IfMissing,  # never replace a snapshot
        )
        return CommittedSnapshot(
            name=self._blob.blob_name,
            etag=str(result["etag"]),
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
                    self._write(work.encode())
                else:
                    self._write_items(work)
        except BaseException as exc:  # re-raised on the job's thread
            self._error = exc
            while self._queue.get() is not _STOP:
                pass

    def _write_items(self, customers: list[str]) -> None:
        first = "\n" if self.count == 0 else ",\n"
        self.count += len(customers)
        self._write((first + ",\n".join(customers)).encode())

    def _write(self, data: bytes) -> None:
        self._sha.update(data)
        self.json_bytes += len(data)
        self._stage(self._gzip.compress(data), final=False)

    def _stage(self, data: bytes, *, final: bool = True) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes and (final or self._pending_bytes >= BLOCK_BYTES):
            block_id = base64.b64encode(f"{len(self._blocks):08d}".encode()).decode()
            chunk = b"".join(self._pending)
            self._blob.stage_block(block_id, chunk, length=len(chunk))
            self._blocks.append(block_id)
            self.stored_bytes += len(chunk)
            self._pending, self._pending_bytes = [], 0
