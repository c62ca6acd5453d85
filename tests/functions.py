"""The functions registered in function_app.py, looked up the way the Functions host does."""

from __future__ import annotations

import functools
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest


@functools.cache
def registered() -> dict[str, Any]:
    # FunctionApp.get_functions() may be called only once per app object.
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def run_timer(past_due: bool = False) -> None:
    registered()["snapshot_customers"].get_user_function()(TimerRequest(past_due=past_due))


def http_get(name: str, url: str, **kwargs: Any) -> func.HttpResponse:
    kwargs.setdefault("body", b"")
    return registered()[name].get_user_function()(func.HttpRequest("GET", url, **kwargs))
