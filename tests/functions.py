"""The functions registered in function_app.py, looked up the way the Functions host does."""

from __future__ import annotations

from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest

from devstack.host import registered_functions


def registered() -> dict[str, Any]:
    # FunctionApp.get_functions() may be called only once per app object: the local host shares this cache.
    return registered_functions()


def run_timer(past_due: bool = False) -> None:
    registered()["snapshot_customers"].get_user_function()(TimerRequest(past_due=past_due))


def http_get(name: str, url: str, **kwargs: Any) -> func.HttpResponse:
    kwargs.setdefault("body", b"")
    return registered()[name].get_user_function()(func.HttpRequest("GET", url, **kwargs))
