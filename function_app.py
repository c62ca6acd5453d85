"""Azure Functions entry point: declares the triggers, nothing else.

Imports of shared.* happen inside the handlers so that the host indexes this file fast and an import
problem shows as a failed invocation with a message, not as "no job functions found".
"""

import azure.functions as func

app = func.FunctionApp()


# A failed invocation is run again 15 minutes later, three times at most (the host's retry policy): only a
# transient failure fails the invocation (shared.job.run_scheduled), one that needs an operator does not.
@app.timer_trigger(schedule="%SNAPSHOT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:15:00")
def snapshot_customers(timer: func.TimerRequest) -> None:
    """Nightly: every Partner Center customer into a dated snapshot blob, then latest.json."""
    from shared.job import run_scheduled

    run_scheduled(past_due=timer.past_due)


# HTTP lookup API over the published snapshots (logic in shared/api/handlers.py). methods=None lets every
# method reach the handler, which answers anything but GET with a JSON 405 rather than the host's bare 404.
@app.route(route="customers", methods=None, auth_level=func.AuthLevel.FUNCTION)
def customers(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/customers: the latest snapshot as stored; ?domain=, ?q= filter it; ?top= pages it."""
    from shared.api import handlers

    return handlers.customers(req)


@app.route(route="customers/{customerId}", methods=None, auth_level=func.AuthLevel.FUNCTION)
def customer(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/customers/{customerId}: one customer of the latest snapshot, as stored."""
    from shared.api import handlers

    return handlers.customer(req)


@app.route(route="snapshots", methods=None, auth_level=func.AuthLevel.FUNCTION)
def snapshots(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/snapshots: the snapshots available, newest first, paged."""
    from shared.api import handlers

    return handlers.snapshots(req)


@app.route(route="snapshots/{date}", methods=None, auth_level=func.AuthLevel.FUNCTION)
def snapshot_by_date(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/snapshots/{date}: the last snapshot taken on that UTC date (YYYY-MM-DD), as stored."""
    from shared.api import handlers

    return handlers.snapshot_by_date(req)


@app.route(route="health", methods=None, auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health: ok / stale / empty, the latest snapshot's age and count; no customer data."""
    from shared.api import health as route

    return route.health(req)


@app.route(route="changes", methods=None, auth_level=func.AuthLevel.FUNCTION)
def changes(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/changes?since=YYYY-MM-DD[&until=…][&type=…]: customers added, removed, changed."""
    from shared.api import changes as routes

    return routes.changes(req)


@app.route(route="customers/{customerId}/history", methods=None, auth_level=func.AuthLevel.FUNCTION)
def customer_history(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/customers/{customerId}/history: first and last seen, present, its events oldest first."""
    from shared.api import history as route

    return route.history(req)


@app.route(route="openapi.json", methods=None, auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the API's OpenAPI 3.0 document (anonymous: no customer data)."""
    from shared.api import openapi as document

    return document.openapi(req)
