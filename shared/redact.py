"""Secrets and tokens the process holds, scrubbed from every message built from a service's answer.

Services echo requests in their errors (a token endpoint's error description quoting the form body, a front
end quoting the Authorization header). Whoever holds a secret or a token registers it with `remember()`;
whoever builds a message from an answer passes it through `scrub()` before truncating it, so a cut never
leaves a prefix that no longer matches the whole value.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
_MIN_LENGTH = 8  # shorter values would mask ordinary words
_MAX_VALUES = 512  # a warm host runs many times; the oldest values go first
_values: dict[str, None] = {}
_lock = threading.Lock()


def remember(*values: str | None) -> None:
    """Registers secret values, with the forms they take in a URL, a form body or a JSON string."""
    with _lock:
        for value in values:
            if not value or len(value) < _MIN_LENGTH:
                continue
            for form in (value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]):
                _values.pop(form, None)
                _values[form] = None
        while len(_values) > _MAX_VALUES:
            del _values[next(iter(_values))]


def scrub(text: str) -> str:
    """`text` with every remembered value masked (longest first, so no part of one survives)."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrubbed(text: str, limit: int) -> str:
    """One line of at most `limit` characters of `text`, scrubbed before it is cut."""
    lines = scrub(text).splitlines()
    return (lines[0] if lines else "")[:limit]
