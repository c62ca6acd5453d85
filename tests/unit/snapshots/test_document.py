"""Reading a stored snapshot back: the one-customer-per-line layout, or a clear SnapshotFormatError."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from shared.errors import SnapshotFormatError
from shared.snapshots.document import customer_ids, iter_customer_lines

CUSTOMERS = [
    '{"id":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","companyProfile":{"companyName":"Contoso"}}',
    '{"companyProfile":{"companyName":"Fabrikam, \\"the\\" one"},"id":"fabrikam"}',
    '{"id":"x"}',
]
HEAD = b'{"schemaVersion":1,"generatedAt":"2026-11-23T02:00:00Z","customers":['
TRAILER = b'],"customerCount":3,"source":{}}'


def document(customers: list[str] = CUSTOMERS, *, trailer: bytes = TRAILER + b"\n") -> bytes:
    """A document as writer.py lays it out."""
    body = b",\n".join(c.encode() for c in customers)
    return HEAD + (b"\n" + body if customers else b"") + b"\n" + trailer


def lines(stored: bytes, *, gzipped: bool = False, chunk_bytes: int = 7) -> list[bytes]:
    return list(iter_customer_lines(stored, gzipped, chunk_bytes=chunk_bytes))


@pytest.mark.parametrize("gzipped", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize(
    "chunk_bytes", [1, 7, 1024 * 1024], ids=["byte-by-byte", "small-chunks", "one-chunk"]
)
def test_every_customer_comes_back_byte_for_byte(gzipped, chunk_bytes):
    stored = gzip.compress(document()) if gzipped else document()
    assert lines(stored, gzipped=gzipped, chunk_bytes=chunk_bytes) == [c.encode() for c in CUSTOMERS]


def test_the_stored_document_is_valid_json_too():
    assert json.loads(document())["customers"] == [json.loads(c) for c in CUSTOMERS]


@pytest.mark.parametrize(
    "stored",
    [document(trailer=TRAILER), document([]), document([], trailer=TRAILER)],
    ids=["trailer-without-final-newline", "no-customers", "no-customers-no-final-newline"],
)
def test_complete_documents_in_other_shapes(stored):
    assert len(lines(stored)) == len(json.loads(stored)["customers"])


def test_the_digest_sees_the_whole_document():
    digest = hashlib.sha256()
    list(iter_customer_lines(gzip.compress(document()), True, digest=digest, chunk_bytes=5))
    assert digest.hexdigest() == hashlib.sha256(document()).hexdigest()


@pytest.mark.parametrize(
    ("stored", "gzipped", "message"),
    [
        (json.dumps({"customers": [json.loads(c) for c in CUSTOMERS]}, indent=2).encode(), False, "layout"),
        (json.dumps({"customers": [json.loads(c) for c in CUSTOMERS]}).encode(), False, "not a complete"),
        (b"", False, "not a complete"),
        (document()[: len(document()) // 2], False, "not a complete"),
        (document(trailer=b""), False, "not a complete"),
        (document() + b"\n", False, "data after the customers array"),
        (document() + b'{"more":1}', False, "not a complete"),
        (gzip.compress(document())[:-12], True, "truncated gzip stream"),
        (b"\x1f\x8b\x08\x00garbage-that-is-not-deflate", True, "damaged gzip stream"),
        (document(), True, "damaged gzip stream"),
    ],
    ids=[
        "pretty-printed-json",
        "json-on-one-line",
        "empty-blob",
        "cut-in-the-middle",
        "no-trailer",
        "a-line-after-the-trailer",
        "bytes-after-the-trailer",
        "truncated-gzip",
        "damaged-gzip",
        "gzip-declared-but-plain",
    ],
)
def test_anything_else_is_refused(stored, gzipped, message):
    with pytest.raises(SnapshotFormatError, match=message):
        lines(stored, gzipped=gzipped)


def test_customer_ids_with_or_without_the_id_first():
    chunks = [document()[at : at + 11] for at in range(0, len(document()), 11)]
    assert list(customer_ids(chunks)) == ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "fabrikam", "x"]


@pytest.mark.parametrize(
    "customer",
    ['{"companyProfile":{}}', '{"id":7}', "not json", "[1]"],
    ids=["no-id", "id-not-a-string", "not-json", "not-an-object"],
)
def test_a_customer_without_an_id_is_refused(customer):
    with pytest.raises(SnapshotFormatError, match="a customer line has no id"):
        list(customer_ids([document([CUSTOMERS[0], customer])]))


def _members(data: bytes, size: int) -> bytes:
    """`data` as a sequence of gzip members of `size` bytes each (writer.py starts one every 64 customers)."""
    return b"".join(gzip.compress(data[i : i + size]) for i in range(0, len(data), size))


@pytest.mark.parametrize(
    "chunk_bytes", [1, 7, 1024 * 1024], ids=["byte-by-byte", "small-chunks", "one-chunk"]
)
@pytest.mark.parametrize("member_bytes", [1, 40, 10_000], ids=["a-byte-each", "some", "one-member"])
def test_a_gzip_stream_of_many_members_reads_as_one(member_bytes, chunk_bytes):
    stored = _members(document(), member_bytes)
    assert gzip.decompress(stored) == document()  # what any gzip reader makes of it
    assert lines(stored, gzipped=True, chunk_bytes=chunk_bytes) == [c.encode() for c in CUSTOMERS]


@pytest.mark.parametrize(
    ("tail", "message"),
    [(b"garbage", "damaged gzip stream"), (gzip.compress(b"more")[:-3], "truncated gzip stream")],
    ids=["garbage-after-a-member", "a-truncated-last-member"],
)
def test_what_follows_a_member_must_be_a_whole_member(tail, message):
    with pytest.raises(SnapshotFormatError, match=message):
        lines(_members(document(), 40) + tail, gzipped=True)
