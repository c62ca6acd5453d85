"""`make demo`: the nightly job once, end to end, on this machine.

Starts Azurite and the stand-ins (managed identity, Entra ID, Key Vault, Partner Center with a few
thousand simulated customers and some throttling), runs the timer function registered in
function_app.py exactly as the Functions host would, and prints what it did and where the snapshot is.
Then the next night, with a few customers added, removed and renamed: the change record it wrote, the
change events on the queue, the signed webhook batches a local receiver verified and the Teams card (as text,
and saved as JSON); then a night whose list stops early, which the completeness guard withholds, with its
warning card; and a few answers of the HTTP API.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import cli
from devstack.history import EVENTS_QUEUE
from devstack.host import DEFAULT_PORT, registered_functions
from devstack.notifications import CARDS_DIR, local_notifications
from devstack.stack import DevStack


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(
        prog="make demo [ARGS=...]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings such as PARTNER_CENTER_PAGE_SIZE or PARTNER_CENTER_MAX_RETRIES are read from the "
        f"environment, as in Azure; only {cli.OWN} are the demo's own.",
    )
    parser.add_argument("--customers", type=int, default=3000, help="simulated customers (default 3000)")
    parser.add_argument(
        "--page-size",
        type=cli.positive,
        default=None,
        help="customers per page; sets PARTNER_CENTER_PAGE_SIZE (default: from the environment, else 500)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to each Partner Center call (default 0.02)"
    )
    parser.add_argument(
        "--cards", type=Path, default=CARDS_DIR, help=f"where the Teams cards are saved (default {CARDS_DIR})"
    )
    args = parser.parse_args(argv)
    if args.customers < 0 or args.latency < 0:
        raise cli.UserError("--customers and --latency must not be negative")

    cli.show_job_logs(sys.stdout)
    if args.page_size is not None:
        os.environ["PARTNER_CENTER_PAGE_SIZE"] = str(args.page_size)
    cli.check_settings()  # before anything starts: a bad setting is the only line printed
    print(f"Starting Azurite and the stand-ins ({args.customers} simulated customers)...", flush=True)
    with (
        DevStack(customers=args.customers, page_latency=args.latency) as stack,
        local_notifications(stack, sys.stdout, args.cards),
    ):
        os.environ.update(stack.env)
        os.environ.setdefault("API_PUBLIC_URL", f"http://127.0.0.1:{DEFAULT_PORT}")  # make serve's, for links
        os.environ.setdefault("SNAPSHOT_CONTAINER", cli.DEFAULT_CONTAINER)
        cli.check_settings(stack.env)
        # Real partners get throttled: one 429 with Retry-After and one 503 on the way.
        stack.partner_center.inject("throttle", at=2, retry_after=1)
        stack.partner_center.inject("status", at=4, status=503)

        from azure.functions.timer import TimerRequest

        import function_app

        timer = registered_functions(function_app.app)["snapshot_customers"]  # shared with the local host
        os.environ["SNAPSHOT_EVENTS_QUEUE"] = EVENTS_QUEUE
        stack.queue_client(EVENTS_QUEUE).create_queue()  # infra/ creates it in Azure
        page_size = os.environ.get("PARTNER_CENTER_PAGE_SIZE") or "500"
        print(f"Running the timer function snapshot_customers (function_app.py), page size {page_size}...")
        try:
            timer.get_user_function()(TimerRequest(past_due=False))
        except KeyboardInterrupt:
            logging.disable(logging.CRITICAL)  # no retry warnings from requests cut short by the stop
            raise
        except Exception:  # its snapshot.failed line above says why; no traceback for a failed run
            print("\nThe run failed (see snapshot.failed above); latest.json was left as it was.")
            return 1

        container = stack.blob_service_client().get_container_client(os.environ["SNAPSHOT_CONTAINER"])
        if not container.exists() or not container.get_blob_client("latest.json").exists():
            # A failure that needs an operator is not raised to the host (it would retry it): logged only.
            print("\nThe run failed (see snapshot.failed above); nothing was published.")
            return 1
        latest = json.loads(container.download_blob("latest.json").readall())
        print("\nlatest.json:")
        print(json.dumps(latest, indent=2))
        container_url = f"{stack.env['SNAPSHOT_STORAGE_ACCOUNT_URL']}/{os.environ['SNAPSHOT_CONTAINER']}"
        print(f"\nSnapshot: {container_url}/{latest['snapshot']}")
        print(
            f"  {latest['customerCount']} customers, {latest['storedBytes']:,} bytes stored gzip-encoded "
            f"({latest['jsonBytes']:,} bytes of JSON)"
        )
        if second_night(stack, timer, container):
            withheld_night(stack, timer)
        show_api(stack)
        print(
            "\nAzurite, the stand-ins and the local host stop now, so the URLs above stop working; "
            "`make serve` keeps them running."
        )
    return 0


def second_night(stack: DevStack, timer: Any, container: Any) -> bool:
    """The next night: three customers new, two gone, two renamed; the run's change record, summarised (its
    webhook batch and Teams card are printed as they arrive). False: too few customers for it."""
    import copy

    from azure.functions.timer import TimerRequest

    from devstack.population import make_customers

    customers = copy.deepcopy(stack.partner_center.customers)
    if len(customers) < 50:
        print("\n(The second night needs 50 customers or more: skipped.)")
        return False
    gone = [customers.pop(10), customers.pop(20)]
    for customer in customers[30:32]:
        customer["companyProfile"]["companyName"] += " Holding"
    stack.partner_center.customers = customers[:40] + make_customers(3, seed=2026) + customers[40:]
    _next_second()
    print(
        f"\nThe next night: 3 customers new, {len(gone)} gone, 2 renamed. Running the timer function again..."
    )
    timer.get_user_function()(TimerRequest(past_due=False))
    latest = json.loads(container.download_blob("latest.json").readall())
    record = json.loads(container.download_blob(latest["changes"]["name"]).readall())  # gunzipped by the SDK
    counts = record["counts"]
    print(
        f"\nChange record {latest['changes']['name']} (against {record['previousSnapshot']}):\n"
        f"  {counts['added']} added, {counts['removed']} removed, {counts['changed']} changed"
    )
    for entry in record["added"]:
        print(f"  + {entry['companyName']} ({entry['domain']}, {entry['relationshipToPartner']})")
    for entry in record["removed"]:
        print(f"  - {entry['companyName']} ({entry['domain']})")
    for entry in record["changed"]:
        for path, change in entry["fields"].items():
            print(f"  ~ {entry['id']} {path}: {change['before']!r} → {change['after']!r}")
    queued = stack.queue_client(EVENTS_QUEUE).get_queue_properties().approximate_message_count
    print(f"\nChange events on the queue {EVENTS_QUEUE!r} (CloudEvents, base64): {queued}")
    return True


def withheld_night(stack: DevStack, timer: Any) -> None:
    """A night whose list stops early: a fifth of the customers missing. The completeness guard withholds
    the snapshot (the run fails on purpose); the webhook gets snapshot.withheld and Teams a warning card."""
    from azure.functions.timer import TimerRequest

    everyone = stack.partner_center.customers
    stack.partner_center.customers = everyone[: len(everyone) * 4 // 5]
    _next_second()
    print(
        "\nA night whose list stops early (a fifth of the customers missing). Running the timer function; "
        "the completeness guard withholds the snapshot, so this run fails on purpose (snapshot.withheld, "
        "snapshot.failed) and latest.json stays..."
    )
    try:
        timer.get_user_function()(TimerRequest(past_due=False))
    finally:
        stack.partner_center.customers = everyone


def _next_second() -> None:
    import time

    time.sleep(1.05 - time.time() % 1)  # snapshot names have one-second resolution


# -- the HTTP lookup API over the snapshot just published ---------------------------------------------
def show_api(stack: DevStack) -> None:
    """Serves function_app.py's HTTP functions through the local host and shows a few real answers."""
    import requests

    from devstack.host import FunctionsHost

    customer = stack.partner_center.customers[len(stack.partner_center.customers) // 2]
    with FunctionsHost() as host, requests.Session() as http:
        print(
            f"\nHTTP API: function_app.py served by the local host at {host.url} (`make serve` keeps one up)"
            "\nThe curl lines below use its URL and function key (both new on every run, gone when the demo "
            "ends;\n`make serve` prints its own pair to export):\n"
            f"export FUNC={host.url} KEY={host.function_key}"
        )
        key = {"x-functions-key": host.function_key}

        def show(title: str, path: str, headers: dict[str, str], summary: str = "") -> requests.Response:
            response = http.get(host.url + path, headers=headers, timeout=30)
            options = "".join(
                f' -H "{k}: $KEY"' if v == host.function_key else f" -H '{k}: {v}'"
                for k, v in headers.items()
            )
            print(f'\n{title}\n  $ curl -s --compressed{options} "$FUNC{path}"')
            etag = f"   ETag: {response.headers['ETag']}" if "ETag" in response.headers else ""
            print(f"  → {response.status_code} {response.reason}{etag}")
            text = summary or response.text
            if text:
                print(f"  {text[:240]}{'…' if len(text) > 240 else ''}")
            return response

        path = f"/api/customers/{customer['id']}"
        first = show("Lookup by customer id:", path, key)
        search = "/api/customers?q=z%C3%BCrich%20stra%C3%9Fe&top=3"  # q=zürich straße
        found = http.get(host.url + search, headers=key, timeout=30).json()
        names = "; ".join(c["companyProfile"]["companyName"] for c in found["customers"])
        summary = f"{found['count']} matches in {found['snapshot']['name']}, the first ones: {names}"
        show(
            "Search by name or domain, case- and accent-insensitive (q=zürich straße):", search, key, summary
        )
        revalidate = {**key, "If-None-Match": first.headers["ETag"]}
        show(
            "The lookup again with its ETag (nothing re-sent, the snapshot not read again):", path, revalidate
        )
        today = datetime.now(UTC).date().isoformat()
        changes = f"/api/changes?since={today}&top=3"
        found = http.get(host.url + changes, headers=key, timeout=30).json()
        listed = "; ".join(f"{c['type']} {c['id']}" for c in found["changes"])
        show("Changes since today (oldest first, paged):", changes, key, listed or "none")
        if found["changes"]:
            history = f"/api/customers/{found['changes'][0]['id']}/history"
            show("One customer's history:", history, key)
        show("Health (anonymous, no customer data):", "/api/health", {})


if __name__ == "__main__":
    sys.exit(cli.run(main, "make demo"))
