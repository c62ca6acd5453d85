"""`make serve`: the stand-ins and the local Functions host, kept running until Ctrl+C.

Starts Azurite and the stand-ins with a few thousand simulated customers, publishes three earlier nights
(customers added, removed and renamed; change events on the events queue) and runs the timer function once,
so there are snapshots, changes and histories to look at, then serves the HTTP functions of function_app.py
on http://127.0.0.1:7071 (the port `func start` uses; a free one if it is taken) and prints the keys and
curl lines to try. A local
webhook receiver and a Teams stand-in get every run's notifications: each signed batch is printed with its
verified signature, each Teams card as text (and saved as JSON in .demo/teams-cards/).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from devstack import cli
from devstack.history import MIN_CUSTOMERS, NIGHTS, History, publish_history, use_events_queue
from devstack.host import DEFAULT_PORT, FunctionsHost, registered_functions
from devstack.notifications import CARDS_DIR, local_notifications
from devstack.receivers import TeamsWorkflow, WebhookReceiver
from devstack.stack import DevStack


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="make serve [ARGS=...]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings such as API_CACHE_MAX_AGE_SECONDS or PARTNER_CENTER_PAGE_SIZE are read from the "
        f"environment, as in Azure; only {cli.OWN} are serve's own.",
    )
    parser.add_argument("--customers", type=int, default=3000, help="simulated customers (default 3000)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free port (default 7071)")
    parser.add_argument("--quiet", action="store_true", help="do not print one line per request")
    parser.add_argument(
        "--cards", type=Path, default=CARDS_DIR, help=f"where the Teams cards are saved (default {CARDS_DIR})"
    )
    args = parser.parse_args(argv)
    if args.customers < 0 or not 0 <= args.port <= 65535:
        raise cli.UserError("--customers must not be negative and --port must be 0..65535")

    cli.show_job_logs(sys.stderr)
    # Ctrl+C and `kill` both end in the with-blocks below, which stop every server and Azurite.
    signal.signal(signal.SIGTERM, _interrupt)

    cli.check_settings()  # before anything starts: a bad setting is the only line printed
    print(f"Starting Azurite and the stand-ins ({args.customers} simulated customers)...", flush=True)
    with (
        DevStack(customers=args.customers) as stack,
        local_notifications(stack, sys.stdout, args.cards) as receivers,
    ):
        os.environ.update(stack.env)
        os.environ.setdefault("SNAPSHOT_CONTAINER", cli.DEFAULT_CONTAINER)
        os.environ.setdefault("TEAMS_QUIET_NIGHTS", "true")  # a card for every run, changes or not
        cli.check_settings(stack.env)
        history = first_runs(stack)
        with FunctionsHost(port=args.port, log_requests=not args.quiet) as host:
            os.environ.setdefault("API_PUBLIC_URL", host.url)  # the cards' links, from the next run on
            print(instructions(host, stack) + changes_lines(history) + notes(*receivers), flush=True)
            stop = threading.Event()
            try:
                while not stop.wait(3600):
                    pass
            except KeyboardInterrupt:
                print("\nStopping...", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def first_runs(stack: DevStack) -> History | None:
    """Three earlier nights (devstack/history.py), then the timer function once as the host would run it,
    the events queue set: a history to look at. None: no history (too few customers, or a run failed)."""
    from azure.functions.timer import TimerRequest

    queue = use_events_queue(stack)
    print(
        f"Publishing {NIGHTS} earlier nights (customers added, removed and renamed; change events to the "
        f"queue {queue!r}), then running the timer function...",
        flush=True,
    )
    history = None
    try:
        history = publish_history(stack)
    except Exception:  # its snapshot.failed line says why; today's run still makes a snapshot
        print("An earlier night failed (see snapshot.failed above); no history to show.", flush=True)
    try:
        registered_functions()["snapshot_customers"].get_user_function()(TimerRequest(past_due=False))
    except Exception:  # its snapshot.failed line says why; serve anyway (health says empty)
        print("The run failed (see snapshot.failed above); serving without a snapshot.", flush=True)
    return history


# The lines docs/http-api.md's "Try it locally" shows, with make serve's first customer filled in
# (tests/e2e/local/test_first_hour.py runs that copy against make serve).
TRY_IT = """\
curl -s "$FUNC/api/health"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers/{customer_id}"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers?domain={domain}"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers?q=soci%C3%A9t%C3%A9&top=5"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers?q=contoso&format=csv" -o contoso.csv
curl -s --compressed -H "x-functions-key: $KEY" "$FUNC/api/customers" -o snapshot.json
curl -s -H "x-functions-key: $KEY" "$FUNC/api/snapshots"
curl -s "$FUNC/api/openapi.json" -o openapi.json
NEXT=$(curl -s "$FUNC/api/customers?q=contoso&top=2&code=$KEY" \\
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["nextLink"])')
curl -s "$NEXT"
ETAG=$(curl -s -D - -o /dev/null -H "x-functions-key: $KEY" "$FUNC/api/customers/{customer_id}" \\
       | tr -d '\\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
curl -si -H "x-functions-key: $KEY" -H "If-None-Match: $ETAG" "$FUNC/api/customers/{customer_id}"
curl -si -X POST -H "x-functions-key: $MASTER" -H "Content-Type: application/json" -d '{{}}' \\
     "$FUNC/admin/functions/snapshot_customers"
"""


def try_it(stack: DevStack) -> str:
    customer = stack.partner_center.customers[0]
    return TRY_IT.format(customer_id=customer["id"], domain=quote(customer["companyProfile"]["domain"]))


def instructions(host: FunctionsHost, stack: DevStack) -> str:
    note = f"  (port {DEFAULT_PORT} was taken)" if host.port != DEFAULT_PORT else ""
    return f"""
Functions host: {host.url}{note}
  function key: {host.function_key}
  master key:   {host.master_key}

Try it (in another shell; docs/http-api.md explains each line):

export FUNC={host.url} KEY={host.function_key} MASTER={host.master_key}
{try_it(stack)}
The job's log lines (snapshot.page, snapshot.summary) show here, for admin-triggered runs too.
"""


# Changes over time, from the earlier nights serve publishes (devstack/history.py): every change, the
# removals, a customer gone and back, a renamed one.
TRY_HISTORY = """\
curl -s -H "x-functions-key: $KEY" "$FUNC/api/changes?since={since}"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/changes?since={since}&type=removed"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers/{returned_id}/history"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers/{renamed_id}/history"
"""


def changes_lines(history: History | None) -> str:
    if history is None:
        return f"(No earlier nights: they need {MIN_CUSTOMERS} customers or more.)\n\n"
    lines = TRY_HISTORY.format(
        since=history.since, returned_id=history.returned_id, renamed_id=history.renamed_id
    )
    return (
        f"Changes over time ({NIGHTS} earlier nights: customers added, removed and renamed; one gone and "
        f"back, one renamed):\n{lines}\n"
    )


def notes(teams: TeamsWorkflow, hook: WebhookReceiver) -> str:
    return f"""Notifications of every run (the admin-triggered ones too) are printed here as they arrive:
  webhook receiver {hook.endpoint_url} (WEBHOOK_URLS), verifying each signature with standardwebhooks
  Teams stand-in   {teams.url} (its workflow URL is the Key Vault secret teams-workflow-url); the cards are
                   saved in {CARDS_DIR}, to open in https://adaptivecards.io/designer/
Ctrl+C stops everything.
"""


if __name__ == "__main__":
    sys.exit(cli.run(main, "make serve", interrupt_status=0))  # Ctrl+C is how serve is meant to stop
