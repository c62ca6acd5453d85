"""The one reading of a Retry-After header, for every client that honours one (RFC 9110 section 10.2.3)."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header: delta-seconds or an HTTP date (0 for a date past). None
    when it is absent or neither (`soon`, `-5`, `1.5`, `²`): the caller's backoff applies then. Capping a
    long wait is the caller's policy, not the header's."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to HTTP
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates name no zone: every HTTP date is GMT (RFC 9110 5.6.7)
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)
