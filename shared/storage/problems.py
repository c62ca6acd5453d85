"""One line about a failed Blob Storage or queue request: its status and error code, never the SDK's dump
(which may run to dozens of lines and quote request headers)."""

from __future__ import annotations

from shared.redact import scrubbed


def error_code(exc: BaseException) -> str | None:
    """The service's error code of an SDK error (the storage SDKs' StorageErrorCode, or the header's text)."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def storage_problem(exc: BaseException) -> str:
    """A failed Blob Storage request, in one line."""
    return _problem(exc, "Blob Storage")


def queue_problem(exc: BaseException) -> str:
    """A failed queue request, in one line."""
    return _problem(exc, "the queue")


def _problem(exc: BaseException, service: str) -> str:
    status = getattr(exc, "status_code", None)
    code = error_code(exc)
    if status:
        return f"{service} answered HTTP {status}" + (f" {scrubbed(code, 100)}" if code else "")
    return f"no answer from {service} ({type(exc).__name__})"
