"""The container the storage tests read and write: Azurite through the real SDK, with the app's ranges."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

_count = iter(range(1_000_000))


@pytest.fixture
def container(azurite: Any) -> Iterator[Any]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        azurite.connection_string,
        connection_verify=str(azurite.tls.bundle),
        retry_total=0,
        max_single_get_size=1024 * 1024,  # as the app's clients: a first range of a megabyte
        max_chunk_get_size=1024 * 1024,
    )
    client = service.get_container_client(f"storage-{next(_count)}")
    client.create_container()
    yield client
    client.delete_container()
