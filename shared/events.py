"""Structured log lines: an event name, then its fields as one JSON object.

Application Insights keeps the message text; a fixed name first makes every line searchable
(`traces | where message startswith "snapshot.summary"`) and the JSON keeps it machine-readable.
Callers pass counts, names and ids only: never secrets, tokens or customer data.
"""

from __future__ import annotations

import json
import logging
from typing import Any


def log_event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    logger.log(level, "%s %s", name, json.dumps(fields, ensure_ascii=False, default=str, sort_keys=False))
