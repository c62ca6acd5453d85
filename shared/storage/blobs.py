"""The snapshot container, and every request the app makes of Blob Storage (but leases: lease.py).

    container_client(settings, ...)   the container, retries and timeouts bounded by settings
    Blobs(container)                  reads (through reader.py's bounds), conditional writes, listings and
                                      deletes by blob name; `stager(name)` for a blob staged in blocks

Conditions are said in the app's words: `etag` (that version only: If-Match), `if_absent` (If-None-Match: *),
`if_modified` (a conditional GET: the SDK raises a 304 as an HttpResponseError). The SDK's errors pass
through as they are (ResourceNotFoundError when absent, ResourceModifiedError for another version): what
one means is the caller's to say.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from shared.errors import SnapshotFormatError, StorageError
from shared.storage import reader
from shared.storage.blocks import BlockStager, Step
from shared.storage.problems import storage_problem

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobClient, ContainerClient

    from shared.settings import Settings

# The SDK joins each range's body with b"".join(list(body)), and list() sizes itself by the body's len(),
# which is its length in bytes: a list of that many pointers (8 bytes each) is allocated for a moment. A
# range of 1 MiB costs 8 MiB at that moment; the SDK's 4 MiB ranges cost 32 MiB (measured: azure-storage-blob
# 12.x, azure-core's StreamDownloadGenerator.__len__).
DOWNLOAD_RANGE_BYTES = 1024 * 1024


def container_client(
    settings: Settings, credential_factory: Callable[[], TokenCredential], *, api: bool = False
) -> ContainerClient:
    """The snapshot container, with retries bounded by settings (the SDK default waits minutes).

    `api`: for the HTTP API, which answers people waiting: at most 2 retries about a second apart and a
    5 s connect timeout, whatever SNAPSHOT_STORAGE_RETRIES says (the job may retry longer)."""
    from azure.storage.blob import BlobServiceClient

    from shared.events import quiet_azure_sdk_logs

    quiet_azure_sdk_logs()
    options: dict[str, Any] = {
        "retry_total": min(settings.storage_retries, 2) if api else settings.storage_retries,
        "initial_backoff": 0.5 if api else 1,
        "increment_base": 1 if api else 2,
        "random_jitter_range": 0.5 if api else 3,
        "connection_timeout": 5 if api else 20,
        "read_timeout": 30 if api else 120,
        # Downloads come in ranges of DOWNLOAD_RANGE_BYTES (the SDK's first range is 32 MiB): reading a
        # snapshot streams.
        "max_single_get_size": DOWNLOAD_RANGE_BYTES,
        "max_chunk_get_size": DOWNLOAD_RANGE_BYTES,
    }
    target = settings.storage
    if target.connection_string:
        service = BlobServiceClient.from_connection_string(target.connection_string, **options)
    else:
        service = BlobServiceClient(target.account_url or "", credential=credential_factory(), **options)
    return service.get_container_client(settings.container)


@dataclass(frozen=True)
class Content:
    """A blob's content headers, as Blob Storage serves them back."""

    type: str | None = None
    encoding: str | None = None
    cache_control: str | None = None
    disposition: str | None = None

    def settings(self) -> Any:
        from azure.storage.blob import ContentSettings

        return ContentSettings(
            content_type=self.type,
            content_encoding=self.encoding,
            cache_control=self.cache_control,
            content_disposition=self.disposition,
        )


JSON = Content("application/json")
GZIP_JSON = Content("application/json", encoding="gzip")


def _version(etag: str | None) -> dict[str, Any]:
    """The SDK's options for "that version only" (none without an ETag)."""
    from azure.core import MatchConditions

    return {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}


class Blobs:
    """The blobs of one container, by name."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    def client(self, name: str) -> BlobClient:
        """The SDK's client of one blob: for the storage package's own modules (leases, SAS, blocks)."""
        return self._container.get_blob_client(name)

    def url(self, name: str) -> str:
        return str(self.client(name).url)

    def ensure_container(self) -> None:
        """Creates the container when it does not exist. Raises StorageError when Blob Storage refuses."""
        from azure.core.exceptions import AzureError, ResourceExistsError

        # Infra creates the container in Azure (where the identity may not create containers);
        # local runs create it here.
        try:
            if not self._container.exists():
                with contextlib.suppress(ResourceExistsError):  # created by a concurrent run
                    self._container.create_container()
        except AzureError as exc:
            raise StorageError(f"opening container {self.container_name}: {storage_problem(exc)}") from None

    def stager(self, name: str, step: Step) -> BlockStager:
        """A block stager of blob `name`; `step` names what it does in its errors."""
        return BlockStager(self.client(name), step)

    # -- reads -------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return bool(self.client(name).exists())

    def properties(self, name: str, *, etag: str | None = None) -> Any:
        """The blob's properties (size, etag, metadata, last_modified); with `etag`, that version only."""
        return self.client(name).get_blob_properties(**_version(etag))

    def listing(self, prefix: str, *, metadata: bool = False) -> Iterator[Any]:
        """The properties of every blob under `prefix`, lazily, page by page (name order)."""
        include = ["metadata"] if metadata else None
        return iter(self._container.list_blobs(name_starts_with=prefix, include=include))

    def read_json(
        self, name: str, *, if_modified: str | None = None, **request_options: Any
    ) -> tuple[Any, str]:
        """reader.read_json of the blob; with `if_modified`, a conditional GET (HttpResponseError 304 when
        it still has that ETag)."""
        from azure.core import MatchConditions

        if if_modified:
            request_options |= {"etag": if_modified, "match_condition": MatchConditions.IfModified}
        return reader.read_json(self.client(name), **request_options)

    def read_head(self, name: str, length: int, *, etag: str | None = None) -> bytes:
        """At most the first `length` bytes of the blob as stored (that version, with `etag`)."""
        return reader.read_head(self.client(name), length, **_version(etag))[0]

    def stream(self, name: str, *, etag: str | None = None) -> tuple[Iterator[bytes], bool, Any]:
        """reader.stream of the blob (that version, with `etag`): (chunks as stored, gzip?, properties)."""
        return reader.stream(self.client(name), **_version(etag))

    def read_stored(
        self, name: str, etag: str | None = None, *, max_bytes: int | None = None
    ) -> tuple[bytes, bool]:
        """(bytes as stored, gzip-encoded?) of a blob; with `etag`, only that version of it
        (ResourceModifiedError otherwise); with `max_bytes`, SnapshotFormatError for a larger blob, before
        the rest of it is downloaded."""
        download = self.client(name).download_blob(decompress=False, max_concurrency=4, **_version(etag))
        if max_bytes is not None and download.size > max_bytes:
            raise SnapshotFormatError(f"{download.size} bytes stored where {max_bytes} were published")
        data = download.readall()
        return data, reader.is_gzip(download.properties)

    def stored_size(self, name: str, *, etag: str) -> int:
        """The stored size of that version of a blob (ResourceModifiedError for another version)."""
        return int(self.properties(name, etag=etag).size)

    def read_range(self, name: str, etag: str, offset: int, length: int) -> bytes:
        """`length` stored bytes of that version of a blob from `offset` (one deflate block of a snapshot)."""
        download = self.client(name).download_blob(
            offset=offset, length=length, decompress=False, **_version(etag)
        )
        return bytes(download.readall())

    def read_into_buffer(
        self, name: str, etag: str | None = None, *, max_bytes: int | None = None, streams: int = 1
    ) -> mmap.mmap:
        """A blob as stored (with `etag`, that version only), in one anonymous mapping of its size: memory
        is taken as the bytes arrive (readall() would hold them twice at the end, a zeroed bytearray all at
        once). SnapshotFormatError when it is larger than `max_bytes`, or ends early. `streams` > 1: its
        ranges come over that many connections at once (each pinned to the first answer's ETag), for a
        blob someone is waiting for; each in flight holds DOWNLOAD_RANGE_BYTES' worth (see above)."""
        client = self.client(name)
        download = client.download_blob(decompress=False, max_concurrency=streams, **_version(etag))
        if max_bytes is not None and download.size > max_bytes:
            raise SnapshotFormatError(f"{download.size} bytes stored where at most {max_bytes} were expected")
        # Private: pages a reader is done with can be given back (index.py releases the compressed search).
        private = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
        buffer = mmap.mmap(-1, max(download.size, 1), **private)
        if streams > 1:
            try:  # the mapping refuses a write past its size
                filled = download.readinto(cast("IO[bytes]", _Seekable(buffer)))
            except ValueError:
                filled = -1
        else:
            filled = 0
            for chunk in download.chunks():
                if filled + len(chunk) > download.size:
                    break
                buffer[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
        if filled != download.size:
            raise SnapshotFormatError(f"{filled} bytes read where {download.size} were announced")
        return buffer

    # -- writes ------------------------------------------------------------------------------------------
    def put(
        self,
        name: str,
        data: bytes | Iterable[bytes],
        *,
        etag: str | None = None,
        if_absent: bool = False,
        metadata: dict[str, str] | None = None,
        content: Content | None = None,
    ) -> str:
        """Writes the blob whole (`data` may come in pieces: uploaded one block at a time) and returns its
        new ETag. `etag`: only over that version (ResourceModifiedError, or ResourceNotFoundError when it is
        gone); `if_absent`: only when there is none (ResourceExistsError)."""
        conditions: dict[str, Any] = {"overwrite": not if_absent, **_version(etag)}
        if metadata is not None:
            conditions["metadata"] = metadata
        if content is not None:
            conditions["content_settings"] = content.settings()
        answer = self.client(name).upload_blob(data, blob_type="BlockBlob", max_concurrency=1, **conditions)
        return str(answer["etag"])

    def delete(self, name: str, *, etag: str | None = None) -> None:
        """Deletes the blob (with `etag`, only that version: ResourceModifiedError otherwise)."""
        self.client(name).delete_blob(**_version(etag))


class _Seekable:
    """An anonymous mapping as the writable, seekable stream the SDK's parallel download writes to (its
    ranges land where they belong; mmap has no seekable() before Python 3.13)."""

    def __init__(self, buffer: mmap.mmap) -> None:
        self._buffer = buffer

    def seekable(self) -> bool:
        return True

    def seek(self, position: int, whence: int = 0) -> int:
        if whence != 0:
            raise ValueError("only absolute positions")  # all the SDK asks for
        self._buffer.seek(position)
        return self._buffer.tell()

    def tell(self) -> int:
        return self._buffer.tell()

    def write(self, data: bytes) -> int:
        return self._buffer.write(data)
