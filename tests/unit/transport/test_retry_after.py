"""Retry-After, read once for every client that honours it (Partner Center paging, webhook and Teams
delivery): RFC 9110 delta-seconds or an HTTP date; anything else leaves the caller's backoff in charge."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from shared.transport.retry_after import retry_after_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), (" 120 ", 120.0), ("0", 0.0)],
    ids=["seconds", "spaces", "zero"],
)
def test_delta_seconds_are_honoured(value, seconds):
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "1.5", "+3", "1e3", "\u00b2", "\u0663", "31 Feb 2026 10:00:00 GMT"],
    ids=["absent", "empty", "word", "negative", "fraction", "plus", "exponent", "superscript",
         "arabic-digit", "impossible-date"],
)  # fmt: skip
def test_anything_else_leaves_the_backoff_in_charge(value):
    assert retry_after_seconds(value) is None


def test_an_http_date_is_the_time_until_it_and_a_past_date_is_now():
    ahead = retry_after_seconds(formatdate(time.time() + 60, usegmt=True))
    assert ahead is not None and 55 <= ahead <= 61
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0


def test_a_date_without_a_zone_is_read_as_gmt_as_http_requires():
    when = time.gmtime(time.time() + 120)
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", when)  # asctime form: no zone
    seconds = retry_after_seconds(asctime)
    assert seconds is not None and 110 <= seconds <= 121
