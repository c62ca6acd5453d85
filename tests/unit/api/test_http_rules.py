"""The HTTP rules every data answer follows, case by case: content negotiation, conditional requests,
the text folding lookups use."""

from __future__ import annotations

import azure.functions as func
import pytest

from shared.api.http import accepts_gzip, not_modified
from shared.text import domain_key, fold

ETAG = '"abc"'


def request(**headers: str) -> func.HttpRequest:
    return func.HttpRequest("GET", "https://app.example/api/customers", headers=headers, body=b"")


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("deflate, br", False),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.5", True),
        ("*, gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("identity, *;q=0", False),
        ("gzip;q=nonsense", False),
        (" , gzip", True),
    ],
    ids=[
        "no-header",
        "empty",
        "gzip",
        "case-insensitive",
        "x-gzip",
        "other-codings-only",
        "star",
        "gzip-refused",
        "gzip-weighted",
        "gzip-refused-over-star",
        "gzip-refused-before-star",
        "star-refused",
        "unreadable-weight-is-refusal",
        "empty-item-ignored",
    ],
)
def test_accepts_gzip(accept_encoding, expected):
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    assert accepts_gzip(request(**headers)) is expected


@pytest.mark.parametrize(
    ("if_none_match", "expected"),
    [
        (None, False),
        ("", False),
        (ETAG, True),
        ("*", True),
        (" * ", True),
        ('"other"', False),
        (f'"other", {ETAG}', True),
        (f"W/{ETAG}", True),
        ('"ABC"', False),
        ("abc", False),
    ],
    ids=[
        "no-header",
        "empty",
        "same-etag",
        "star",
        "star-with-spaces",
        "another-etag",
        "in-a-list",
        "weak-comparison",
        "etags-are-case-sensitive",
        "unquoted-is-not-the-etag",
    ],
)
def test_not_modified(if_none_match, expected):
    headers = {} if if_none_match is None else {"If-None-Match": if_none_match}
    assert not_modified(request(**headers), ETAG) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Contoso Ltd", "contoso ltd"),
        ("Müller", "muller"),
        ("Société Générale", "societe generale"),
        ("Straße", "strasse"),
        ("Łódź", "lodz"),
        ("Ørsted", "orsted"),
        ("ÆRØ", "aero"),
        ("\uff26\uff55\uff4c\uff4c", "full"),  # fullwidth letters
        ("İstanbul", "istanbul"),
        ("", ""),
    ],
    ids=[
        "ascii-lowercased",
        "umlaut",
        "accents",
        "sharp-s",
        "stroke-letters",
        "o-slash",
        "ligature-upper",
        "fullwidth-compatibility",
        "dotted-capital-i",
        "empty",
    ],
)
def test_fold(text, expected):
    assert fold(text) == expected


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Contoso.OnMicrosoft.com", "contoso.onmicrosoft.com"),
        ("contoso.com.", "contoso.com"),
        (" contoso.com ", "contoso.com"),
        ("xn--mller-kva.de", "müller.de"),
        ("MÜLLER.de", "müller.de"),
        ("xn--9999999999.de", "xn--9999999999.de"),
    ],
    ids=["case", "trailing-dot", "spaces", "punycode-label", "unicode-label", "broken-punycode-as-written"],
)
def test_domain_key(domain, expected):
    assert domain_key(domain) == expected
