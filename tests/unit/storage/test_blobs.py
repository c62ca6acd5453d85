"""Reading a blob whole into one mapping (Azurite, the real SDK): over one connection or several, the
bytes as stored, of the version asked for, and never more than the blob announced."""

from __future__ import annotations

import os
from typing import Any

import pytest
from azure.core.exceptions import ResourceModifiedError

from shared.errors import SnapshotFormatError
from shared.storage.blobs import Blobs


@pytest.fixture
def blobs(container: Any) -> Blobs:
    return Blobs(container)


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_a_blob_of_many_ranges_is_read_whole_and_in_order(blobs: Blobs, streams: int) -> None:
    data = os.urandom(5 * 1024 * 1024 + 12345)  # six ranges, the last one short
    etag = blobs.put("big.bin", data)
    assert bytes(blobs.read_into_buffer("big.bin", streams=streams)) == data
    assert bytes(blobs.read_into_buffer("big.bin", etag, streams=streams)) == data
    with pytest.raises(SnapshotFormatError):
        blobs.read_into_buffer("big.bin", max_bytes=len(data) - 1, streams=streams)


@pytest.mark.parametrize("streams", [1, 2])
def test_another_version_of_the_blob_is_refused(blobs: Blobs, streams: int) -> None:
    etag = blobs.put("big.bin", os.urandom(3 * 1024 * 1024))
    blobs.put("big.bin", os.urandom(3 * 1024 * 1024))
    with pytest.raises(ResourceModifiedError):
        blobs.read_into_buffer("big.bin", etag, streams=streams)
