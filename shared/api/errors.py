"""Every error the API answers: a stable `error` code, a human `message`, the right status."""

from __future__ import annotations

import json

import azure.functions as func

from shared.errors import SnapshotAppError

JSON_TYPE = "application/json; charset=utf-8"


class ApiError(SnapshotAppError):
    """Raised anywhere below a handler; the handler boundary turns it into the JSON answer.

    `message` must never hold a stack trace, a path or a setting value: it goes to the caller as is."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.parameter = parameter
        self.headers = headers or {}

    def response(self) -> func.HttpResponse:
        return error_response(
            self.status, self.code, self.message, parameter=self.parameter, headers=self.headers
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    parameter: str | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    body: dict[str, str] = {"error": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        headers={
            "Content-Type": JSON_TYPE,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message, parameter=name)


def snapshot_unavailable(message: str) -> ApiError:
    # Retry-After: a corrupt or unreadable latest.json heals with the next publish; storage hiccups sooner.
    return ApiError(503, "snapshot_unavailable", message, headers={"Retry-After": "60"})


def storage_unavailable() -> ApiError:
    return ApiError(
        503,
        "storage_unavailable",
        "snapshot storage cannot be reached right now; try again shortly",
        headers={"Retry-After": "30"},
    )
