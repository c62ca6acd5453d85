"""The functions registered in function_app.py, looked up the way the Functions host does."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest

from devstack.host import registered_functions

_FAILED = "snapshot.failed "


def registered() -> dict[str, Any]:
    # FunctionApp.get_functions() may be called only once per app object: the local host shares this cache.
    return registered_functions()


@dataclass
class TimerOutcome:
    """One invocation of the timer function, as the host sees it and as the run logged it."""

    raised: Exception | None  # what the function raised: the host records a failure and retries it
    failed: dict[str, Any] | None  # the fields of the snapshot.failed line the run logged, if it failed
    error: BaseException | None  # the exception that stopped the run, raised to the host or not


class _FailureCatcher(logging.Handler):
    """Keeps the exception being handled when the run logs snapshot.failed (it logs inside its except)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()  # the run logs on the thread that invoked it
        self.failed: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and message.startswith(_FAILED):
            self.failed = json.loads(message.removeprefix(_FAILED))
            self.error = sys.exc_info()[1]


def invoke_timer(past_due: bool = False) -> TimerOutcome:
    """Calls the registered timer function once, as the host does, and says how it ended."""
    catcher = _FailureCatcher()
    logger = logging.getLogger("shared.job")
    logger.addHandler(catcher)
    raised: Exception | None = None
    try:
        registered()["snapshot_customers"].get_user_function()(TimerRequest(past_due=past_due))
    except Exception as exc:
        raised = exc
    finally:
        logger.removeHandler(catcher)
    return TimerOutcome(raised, catcher.failed, raised if raised is not None else catcher.error)


def run_timer(past_due: bool = False) -> None:
    """Runs the timer function and raises what stopped a failed run, whether or not the function raised it.

    The function raises only a failure the host should retry (the timer's retry policy); one that needs an
    operator is logged as snapshot.failed with "willRetry": false and the function returns, so that the host
    does not run it again. Tests about the failure itself get it here either way; e2e/job/test_runs.py looks
    at the difference (invoke_timer)."""
    outcome = invoke_timer(past_due)
    if outcome.failed is not None:
        assert outcome.failed["willRetry"] is (outcome.raised is not None), (
            f"snapshot.failed says willRetry={outcome.failed['willRetry']}, but the function "
            + ("raised" if outcome.raised is not None else "returned")
        )
    if outcome.error is not None:
        raise outcome.error


def http_get(name: str, url: str, **kwargs: Any) -> func.HttpResponse:
    kwargs.setdefault("body", b"")
    return registered()[name].get_user_function()(func.HttpRequest("GET", url, **kwargs))


def new_instance() -> None:
    """The app settings changed: the next request builds the API's context anew, as a restarted Functions
    instance does (production builds it once per process)."""
    from shared.api.context import use

    use(None)


class InstanceSettings:
    """monkeypatch's setenv/delenv for app settings: each change restarts the instance (new_instance)."""

    def __init__(self, monkeypatch: Any) -> None:
        self._monkeypatch = monkeypatch

    def setenv(self, name: str, value: str) -> None:
        self._monkeypatch.setenv(name, value)
        new_instance()

    def delenv(self, name: str, raising: bool = True) -> None:
        self._monkeypatch.delenv(name, raising=raising)
        new_instance()

    def setattr(self, *args: Any, **kwargs: Any) -> None:
        self._monkeypatch.setattr(*args, **kwargs)


class MovableClock:
    """time.monotonic that a test can move forward (ApiContext's clock)."""

    def __init__(self) -> None:
        self._ahead = 0.0

    def advance(self, seconds: float) -> None:
        self._ahead += seconds

    def __call__(self) -> float:
        return time.monotonic() + self._ahead
