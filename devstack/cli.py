"""What `make demo` and `make serve` share: the job's log lines on the terminal, settings checked before
anything starts, one line for a user error and a quiet Ctrl+C (no tracebacks for either)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

# Which settings the demo and serve choose themselves: the stand-ins' URLs, identity and trust. Every other
# setting (page size, retries, timeouts, container, API_*) is read from the environment as in Azure.
OWN = "the stand-ins' URLs, identity and trust store"


class UserError(Exception):
    """A mistake the user can fix (a bad setting or flag): one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag as one line (not the usage text and a second line)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see ARGS=--help)")


def show_job_logs(stream: TextIO) -> None:
    """The job's and the API's INFO lines (snapshot.page, snapshot.summary, snapshot.failed, ...) on
    `stream`, for every run in this process, admin-triggered ones included."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("  %(levelname)-7s %(message)s"))
    logger = logging.getLogger("shared")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)-7s %(message)s", stream=stream)
    # azure-functions warns that timers have no auth level while listing functions: true, and noise here.
    logging.getLogger().addFilter(lambda record: "Auth level is not applied" not in record.getMessage())


# The settings the stand-ins set (placeholders until they run), and serve's / the demo's default container.
_OWN_PLACEHOLDERS = {
    "KEY_VAULT_URL": "https://127.0.0.1:1",
    "PARTNER_CENTER_API_URL": "https://127.0.0.1:1",
    "PARTNER_CENTER_AUTHORITY_HOST": "https://127.0.0.1:1",
    "SNAPSHOT_STORAGE_ACCOUNT_URL": "https://127.0.0.1:1",
}
DEFAULT_CONTAINER = "customer-snapshots"


def check_settings(own: dict[str, str] | None = None) -> None:
    """Every setting of the job and the API from the environment, with the stand-ins' own (`own`, or
    placeholders before they run) on top: a bad setting is found before anything starts."""
    from shared.settings import Settings, SettingsError

    environ = {"SNAPSHOT_CONTAINER": DEFAULT_CONTAINER, **os.environ, **(own or _OWN_PLACEHOLDERS)}
    try:
        Settings.from_env(environ)
    except SettingsError as exc:
        raise UserError(str(exc)) from None


def positive(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(text)
    return int(text)


def run(main: Callable[[list[str] | None], int], name: str, *, interrupt_status: int = 130) -> int:
    """main() with a user error as one line and Ctrl+C (or SIGTERM) as a quiet stop."""
    try:
        return main(None)
    except UserError as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        # The with-blocks have stopped Azurite and the stand-ins by now. Leave at once: the job's page
        # prefetch thread would otherwise retry its request against the stopped stand-in for a minute
        # (the interpreter waits for it), printing a retry line each time.
        print(f"\n{name}: stopped", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(interrupt_status)
    finally:
        sys.stdout.flush()
