"""The one bounded reader of stored documents, tried with what a hostile store could hold (Azurite, the
real SDK): every bad document ends in StoredDocumentError naming the blob, within bounded memory."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings

from shared.errors import SnapshotFormatError
from shared.storage.reader import (
    SMALL_DOCUMENT_BYTES,
    StoredDocumentError,
    inflated,
    lines,
    read_json,
    stream,
)


def _put(container: Any, name: str, data: bytes, *, gzipped: bool = False) -> Any:
    blob = container.get_blob_client(name)
    encoding = ContentSettings(content_encoding="gzip") if gzipped else None
    blob.upload_blob(data, content_settings=encoding)
    return blob


def _bomb(size: int, byte: bytes = b"a") -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [compressor.compress(byte * (1024 * 1024)) for _ in range(size // (1024 * 1024))]
    return b"".join(out) + compressor.flush()


def test_a_small_json_document_is_read_with_its_etag(container: Any) -> None:
    blob = _put(container, "plain.json", b'\xef\xbb\xbf{"a": [1, {"b": "c"}]}')
    value, etag = read_json(blob)
    assert value == {"a": [1, {"b": "c"}]}
    assert etag == blob.get_blob_properties().etag
    gz = _put(container, "gz.json", gzip.compress(b'{"x": 1}'), gzipped=True)
    assert read_json(gz)[0] == {"x": 1}


def test_absence_is_the_sdks_not_found_not_damage(container: Any) -> None:
    with pytest.raises(ResourceNotFoundError):
        read_json(container.get_blob_client("missing.json"))
    with pytest.raises(StoredDocumentError, match=r"empty\.json: empty"):
        read_json(_put(container, "empty.json", b""))


@pytest.mark.parametrize(
    ("data", "gzipped", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, False, "not UTF-8 JSON"),  # deeper than the parser goes
        (b"[" * 100 + b"]" * 100, False, "nested deeper than 64"),
        (b'{"a": "\xff"}', False, "not UTF-8 JSON"),
        (b"{not json", False, "not UTF-8 JSON"),
        (b"not gzip at all", True, "damaged gzip stream"),
        (gzip.compress(b'{"a": 1}')[:-6], True, "truncated gzip stream"),
        (b'{"a": "' + b"x" * SMALL_DOCUMENT_BYTES + b'"}', False, "more than 262144 bytes stored"),
    ],
    ids=["nested-100000", "nested-100", "not-utf8", "not-json", "not-gzip", "cut-gzip", "too-large"],
)
def test_a_document_that_cannot_be_read_names_the_blob_and_the_problem(
    container: Any, data: bytes, gzipped: bool, problem: str
) -> None:
    blob = _put(container, "bad/withheld.json", data, gzipped=gzipped)
    with pytest.raises(StoredDocumentError) as caught:
        read_json(blob)
    assert str(caught.value).startswith("bad/withheld.json: ")
    assert problem in str(caught.value)
    assert caught.value.etag == blob.get_blob_properties().etag  # can be remembered by version
    assert "xxxx" not in str(caught.value)  # never the content


def test_a_gzip_bomb_stops_at_the_bound_in_bounded_memory(container: Any) -> None:
    bomb = _bomb(200 * 1024 * 1024, b"0")  # 200 MB of digits in about 200 KB
    blob = _put(container, "withheld.json", bomb, gzipped=True)
    tracemalloc.start()
    try:
        with pytest.raises(StoredDocumentError, match="grows past 262144 bytes"):
            read_json(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_blob_larger_than_the_bound_is_refused_before_it_is_downloaded(container: Any) -> None:
    blob = _put(container, "big.json", b"[" + b"1," * (4 * 1024 * 1024) + b"1]")  # 8 MB
    tracemalloc.start()
    try:
        with pytest.raises(StoredDocumentError, match="more than 262144 bytes stored"):
            read_json(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # the bound's range and the SDK's bookkeeping, not 8 MB


def test_a_line_without_end_is_refused_at_the_line_bound(container: Any) -> None:
    blob = _put(container, "record.json", _bomb(96 * 1024 * 1024), gzipped=True)  # 96 MB, no newline
    chunks, gzipped, _ = stream(blob)
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotFormatError, match="a line longer than 1048576 bytes"):
            for _ in lines(inflated(chunks, gzipped), max_line_bytes=1024 * 1024):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024


def test_lines_are_given_whole_and_the_last_without_a_newline_too() -> None:
    document = [b'{"a":', b"1}\n", b"[2]\n[3", b"]"]
    assert list(lines(document)) == [b'{"a":1}', b"[2]", b"[3]"]
    assert [json.loads(line) for line in lines(document)] == [{"a": 1}, [2], [3]]
