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


def quiet_azure_sdk_logs() -> None:
    """The Azure SDKs log every request, response and token at INFO (about 99 MB a day for one busy API
    instance, enough to hit the workspace cap and drown the failure alerts): keep WARNING and above.

    Set in code, at client creation, because the Python worker forwards every record to the host under the
    function's own category (Function.<name>.User), so host.json cannot tell the SDKs' lines from ours.
    A level chosen on purpose (e.g. DEBUG while investigating) is left alone."""
    sdk = logging.getLogger("azure")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)
