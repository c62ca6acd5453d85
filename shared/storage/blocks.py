"""The one way a blob is written in blocks: staged one at a time, committed whole (or not at all).

Used for every blob too large to hold (a snapshot, its lookup index, a change record). Nothing is visible
until the commit, which only succeeds when no blob of that name exists (If-None-Match: *): staged blocks of
a run that fails are never committed and expire on their own.

Block ids are `<run>-<lane>-<n>`: a random id drawn for each blob a run writes (16 hex digits), a lane of one
character (a section of the index; "0" for a blob written front to back) and a six-digit number, base64-
encoded as the service wants them. Two runs staging the same blob name at once (a timer occurrence and a
manual run in the same second) never overwrite each other's blocks, and every id of a blob has the same
length, as Blob Storage requires. Ids are never read back but by the check after a commit: blobs are read
by their bytes, whatever ids built them.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared.errors import StorageError
from shared.storage.problems import storage_problem

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

Step = str | Callable[[], str]  # what the stager does, for its errors (a callable: named when it fails)
MAIN_LANE = "0"


class BlockIds:
    """Run-unique block ids of one blob, numbered in each lane."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(8)
        self._next: dict[str, int] = {}

    def next(self, lane: str = MAIN_LANE) -> str:
        assert len(lane) == 1  # every id of a blob equally long
        number = self._next.get(lane, 0)
        self._next[lane] = number + 1
        return f"{self.run}-{lane}-{number:06d}"


def _encoded(block_id: str) -> str:
    return base64.b64encode(block_id.encode()).decode()


def _plain(block_id: str) -> str:
    # The SDK decodes block ids it can decode; some services send them encoded twice.
    if "-" not in block_id:
        with contextlib.suppress(ValueError):
            block_id = base64.b64decode(block_id, validate=True).decode()
    return block_id


class BlockStager:
    """Stages the blocks of one blob and commits them in the order given. `staged` keeps each block's size
    by id, for the check after the commit (`committed_as_staged`)."""

    def __init__(self, blob: BlobClient, step: Step) -> None:
        self._blob = blob
        self._step = step
        self.ids = BlockIds()
        self.staged: dict[str, int] = {}
        self.stored_bytes = 0
        self.failed_step: str | None = None  # what it was doing when Blob Storage failed it

    @property
    def name(self) -> str:
        return str(self._blob.blob_name)

    def step(self) -> str:
        return self._step if isinstance(self._step, str) else self._step()

    def stage(self, block_id: str, data: bytes) -> None:
        """Stages one block. Raises the SDK's error as it is, after remembering the step (`failure`)."""
        from azure.core.exceptions import AzureError

        try:
            self._blob.stage_block(_encoded(block_id), data, length=len(data))
        except AzureError:
            self.failed_step = self.step()
            raise
        self.staged[block_id] = len(data)
        self.stored_bytes += len(data)

    def append(self, data: bytes) -> str:
        """Stages the next block of the main lane (`stage`); its id."""
        block_id = self.ids.next()
        self.stage(block_id, data)
        return block_id

    def stage_named(self, block_id: str, data: bytes) -> None:
        """Stages one block; StorageError naming the step when Blob Storage refuses."""
        from azure.core.exceptions import AzureError

        try:
            self.stage(block_id, data)
        except AzureError as exc:
            raise self.failure(exc) from None

    def failure(self, exc: BaseException) -> StorageError:
        """The StorageError of a failed request of this stager: the step, Blob Storage's status and code."""
        return StorageError(f"{self.failed_step or self.step()}: {storage_problem(exc)}")

    def commit(
        self, order: Sequence[str], *, content: Any = None, metadata: dict[str, str] | None = None
    ) -> str:
        """Commits the staged blocks `order` as the blob, only when it does not exist yet; its ETag.
        `content`: blobs.Content. The SDK's errors as they are (ResourceExistsError or
        ResourceModifiedError: the name is taken)."""
        from azure.core import MatchConditions
        from azure.storage.blob import BlobBlock

        options: dict[str, Any] = {} if metadata is None else {"metadata": metadata}
        if content is not None:
            options["content_settings"] = content.settings()
        result = self._blob.commit_block_list(
            [BlobBlock(_encoded(block_id)) for block_id in order],
            match_condition=MatchConditions.IfMissing,  # never replace a blob written in blocks
            **options,
        )
        return str(result["etag"])

    def committed_as_staged(self, order: Sequence[str]) -> bool:
        """Whether the committed blob is made of exactly the blocks `order`, as this stager staged them (a
        run that lost a race must not take another run's blob for its own). The SDK's errors as they are."""
        committed = [(_plain(block.id), block.size) for block in self._blob.get_block_list("committed")[0]]
        return committed == [(block_id, self.staged[block_id]) for block_id in order]
