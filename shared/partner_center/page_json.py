"""A Partner Center page parsed once, keeping each item's own JSON text next to its value.

The snapshot stores customers exactly as received. Re-serialising every item with json.dumps cost more CPU
than parsing the page and held the GIL while the next page was being read; walking the top-level object with
json's own C scanner gives each item's source text for free. Items come out on one line each: a raw newline
can only be whitespace in JSON (inside strings it must be escaped), so it is folded into a space.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from shared.customer_rule import reject_constant
from shared.errors import SnapshotAppError

_Scanner = Callable[[str, int], tuple[Any, int]]
# (text, index) -> (value, end index): the C scanner json.loads uses, an instance attribute the stubs omit.
# Strict (the default): NaN and Infinity are not JSON (customer_rule.NotStorable).
_SCANNERS: dict[bool, _Scanner] = {
    True: vars(json.JSONDecoder(parse_constant=reject_constant))["scan_once"],
    False: vars(json.JSONDecoder())["scan_once"],
}
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class PageSyntaxError(SnapshotAppError, ValueError):
    pass


def parse_page(text: str, *, strict: bool = True) -> tuple[dict[str, Any], list[str] | None]:
    """(the page object, the source text of each element of its top-level `items` array, if an array).

    Same values as json.loads(text): duplicate keys keep the last, anything else is a PageSyntaxError;
    `strict` (the default) also refuses NaN and Infinity literals with customer_rule.NotStorable."""
    try:
        return _parse(text, _SCANNERS[strict])
    except (StopIteration, IndexError) as exc:
        raise PageSyntaxError(f"invalid JSON near character {_position(exc)}") from None


def _parse(text: str, _scan: _Scanner) -> tuple[dict[str, Any], list[str] | None]:
    page: dict[str, Any] = {}
    texts: list[str] | None = None
    at = _skip(text, 0)
    if text[at] != "{":
        raise PageSyntaxError("the page is not a JSON object")
    at = _skip(text, at + 1)
    if text[at] == "}":
        return page, texts
    while True:
        if text[at] != '"':
            raise PageSyntaxError(f"expected a key at character {at}")
        key, at = _scan(text, at)
        at = _skip(text, at)
        if text[at] != ":":
            raise PageSyntaxError(f"expected ':' at character {at}")
        at = _skip(text, at + 1)
        if key == "items" and text[at] == "[":
            page[key], texts, at = _array(text, at, _scan)
        else:
            page[key], at = _scan(text, at)
        at = _skip(text, at)
        if text[at] == "}":
            break
        if text[at] != ",":
            raise PageSyntaxError(f"expected ',' or '}}' at character {at}")
        at = _skip(text, at + 1)
    if _skip(text, at + 1) != len(text):
        raise PageSyntaxError("data after the page object")
    return page, texts


def _array(text: str, at: int, _scan: _Scanner) -> tuple[list[Any], list[str], int]:
    values: list[Any] = []
    texts: list[str] = []
    at = _skip(text, at + 1)
    if text[at] == "]":
        return values, texts, at + 1
    while True:
        value, end = _scan(text, at)
        values.append(value)
        source = text[at:end]
        texts.append(
            source.replace("\r", " ").replace("\n", " ") if "\n" in source or "\r" in source else source
        )
        at = _skip(text, end)
        if text[at] == "]":
            return values, texts, at + 1
        if text[at] != ",":
            raise PageSyntaxError(f"expected ',' or ']' at character {at}")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]


def _position(exc: BaseException) -> str:
    return str(exc.value) if isinstance(exc, StopIteration) else "the end"
