"""Compact JSON, written one way everywhere the app writes it (stored documents, answers, events).

compact(value)         the text: no spaces after separators, non-ASCII kept as it is
compact_bytes(value)   that text as UTF-8; a lone surrogate ("\\ud800", strict JSON that Partner Center
                       may send, which UTF-8 cannot carry) is written as the JSON escape it came as, so
                       it reads back as the same string and one customer never fails a write
"""

from __future__ import annotations

import json
from typing import Any


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def compact_bytes(value: Any) -> bytes:
    return compact(value).encode("utf-8", "backslashreplace")
