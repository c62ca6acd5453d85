"""The one rule of what a storable customer is, shared by the snapshot job (before storing) and the API
(before serving).

A customer is storable when
  * its text is strict JSON (RFC 8259): no `NaN`, `Infinity` or `-Infinity` literals, which Python's json
    accepts but no other JSON reader does;
  * it nests at most MAX_DEPTH levels of objects and arrays (every reader recurses; ~1,000 levels break it);
  * it is an object whose `id` is a non-empty string;
  * `companyProfile` is absent, null or an object, and its `domain`, `companyName` and `tenantId` are each
    absent, null or a string;
  * `relationshipToPartner` is absent, null or a string.
Every other member may hold any JSON value; the text is stored as received.

    check_storable(text) -> dict             parse strictly and check; NotStorable otherwise
    check_customer(value, text=None) -> None  check a value already parsed strictly (the job's page parser)
    indexed_fields(value, text=None)          (id, domain, companyName) of a customer the rule admits, or None
    within_depth(line) -> bool               a stored line's nesting is within MAX_DEPTH (before parsing it)
    reject_constant                          `parse_constant=` hook that makes a json decoder strict
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.errors import SnapshotAppError

MAX_DEPTH = 32  # a Partner Center customer nests 4 levels
PROFILE_STRINGS = ("domain", "companyName", "tenantId")


class NotStorable(SnapshotAppError, ValueError):
    """A customer breaks the rule; `customer_id` is None when it has no usable id."""

    def __init__(self, rule: str, customer_id: str | None = None) -> None:
        named = f"customer {customer_id!r}" if customer_id else "a customer"
        super().__init__(f"{named} is not storable: {rule}")
        self.rule = rule
        self.customer_id = customer_id


def reject_constant(name: str) -> Any:
    raise NotStorable(f"{name} is not JSON (NaN and Infinity literals are not allowed)")


_STRICT = json.JSONDecoder(parse_constant=reject_constant)


def check_storable(text: str | bytes) -> dict[str, Any]:
    """The customer parsed from `text`, if it is storable; NotStorable otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise NotStorable("not UTF-8") from None
    if _openers(text) > MAX_DEPTH and _text_depth(text) > MAX_DEPTH:
        raise NotStorable(f"nested deeper than {MAX_DEPTH} levels")
    try:
        value: dict[str, Any] = _STRICT.decode(text)  # check_customer makes sure it is one
    except NotStorable as exc:  # NaN or Infinity: name the customer if its id can be told
        raise NotStorable(exc.rule, _lenient_id(text)) from None
    except (ValueError, RecursionError) as exc:
        raise NotStorable(f"not JSON ({type(exc).__name__})") from None
    check_customer(value)
    return value


def check_customer(value: Any, text: str | None = None) -> None:
    """Checks a customer parsed with a strict decoder; `text` (its source) makes the depth check cheap."""
    if not _fields_ok(value):
        _explain(value)
    # Counting brackets (strings included) is a C-speed upper bound of the depth; walk only past it.
    if (text is None or text.count("{") + text.count("[") > MAX_DEPTH) and _value_depth(value) > MAX_DEPTH:
        raise NotStorable(f"nested deeper than {MAX_DEPTH} levels", value["id"])


def indexed_fields(value: Any, text: str | None = None) -> tuple[str, str, str] | None:
    """(id, domain, companyName) of a parsed customer the rule admits ("" for an absent or null one), None
    when it breaks the rule: what the snapshot index and the API's whole load can look up. Without `text`
    the depth is not checked (the job checked it before storing)."""
    if not _fields_ok(value):
        return None
    if text is not None and _openers(text) > MAX_DEPTH and _value_depth(value) > MAX_DEPTH:
        return None
    profile = value.get("companyProfile") or {}
    return value["id"], profile.get("domain") or "", profile.get("companyName") or ""


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def within_depth(line: bytes) -> bool:
    """Whether a stored customer line nests at most MAX_DEPTH levels, told from its text (brackets inside
    strings do not count), so a parser is never asked to recurse deeper."""
    if line.count(b"{") + line.count(b"[") <= MAX_DEPTH:  # the usual case, at C speed
        return True
    depth = deepest = 0
    for bracket in _STRINGS.sub(b"", line).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest <= MAX_DEPTH


_STRING_OR_NULL = frozenset({str, type(None)})


def _fields_ok(value: Any) -> bool:
    # One expression: it runs for every customer of every run. json makes plain dicts and strs only.
    return (
        type(value) is dict
        and type(value.get("id")) is str
        and bool(value["id"])
        and type(value.get("relationshipToPartner")) in _STRING_OR_NULL
        and (
            (profile := value.get("companyProfile")) is None
            or (
                type(profile) is dict
                and type(profile.get("domain")) in _STRING_OR_NULL
                and type(profile.get("companyName")) in _STRING_OR_NULL
                and type(profile.get("tenantId")) in _STRING_OR_NULL
            )
        )
    )


def _explain(value: Any) -> None:
    """Raises NotStorable naming the rule `value` breaks (called when _fields_ok said it breaks one)."""
    if type(value) is not dict:
        raise NotStorable("not a JSON object")
    customer_id = value.get("id")
    if type(customer_id) is not str or not customer_id:
        raise NotStorable("`id` must be a non-empty string")
    profile = value.get("companyProfile")
    if profile is not None and type(profile) is not dict:
        raise NotStorable("`companyProfile` must be an object or null", customer_id)
    for key in PROFILE_STRINGS:
        if type((profile or {}).get(key)) not in _STRING_OR_NULL:
            raise NotStorable(f"`companyProfile.{key}` must be a string or null", customer_id)
    raise NotStorable("`relationshipToPartner` must be a string or null", customer_id)


def _lenient_id(text: str) -> str | None:
    try:
        customer_id = json.loads(text).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return customer_id if isinstance(customer_id, str) and customer_id else None


def _openers(text: str) -> int:
    return text.count("{") + text.count("[")


def _value_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _text_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (before parsing, so a parser never recurses that deep)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]":
            depth -= 1
    return deepest
