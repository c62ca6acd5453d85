"""`make serve`: the stand-ins and the local Functions host, kept running until Ctrl+C.

Starts Azurite and the stand-ins with a few thousand simulated customers, runs the timer function once so
there is a snapshot to look at, then serves the HTTP functions of function_app.py on http://127.0.0.1:7071
(the port `func start` uses; a free one if it is taken) and prints the keys and curl lines to try.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from urllib.parse import quote

from devstack.host import DEFAULT_PORT, FunctionsHost, registered_functions
from devstack.stack import DevStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--quiet", action="store_true", help="do not print one line per request")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="  %(levelname)-7s %(message)s", stream=sys.stderr)
    logging.getLogger().addFilter(lambda record: "Auth level is not applied" not in record.getMessage())
    # Ctrl+C and `kill` both end in the with-blocks below, which stop every server and Azurite.
    signal.signal(signal.SIGTERM, _interrupt)

    print(f"Starting Azurite and the stand-ins ({args.customers} simulated customers)...", flush=True)
    with DevStack(customers=args.customers) as stack:
        os.environ.update(stack.env)
        os.environ.setdefault("SNAPSHOT_CONTAINER", "customer-snapshots")
        from azure.functions.timer import TimerRequest

        print("Running the timer function once so there is a snapshot...", flush=True)
        registered_functions()["snapshot_customers"].get_user_function()(TimerRequest(past_due=False))

        with FunctionsHost(port=args.port, log_requests=not args.quiet) as host:
            print(instructions(host, stack), flush=True)
            stop = threading.Event()
            try:
                while not stop.wait(3600):
                    pass
            except KeyboardInterrupt:
                print("\nStopping...", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def instructions(host: FunctionsHost, stack: DevStack) -> str:
    customer = stack.partner_center.customers[0]
    customer_id = customer["id"]
    domain = customer["companyProfile"]["domain"]
    note = f"  (port {DEFAULT_PORT} was taken)" if host.port != DEFAULT_PORT else ""
    return f"""
Functions host: {host.url}{note}
  function key: {host.function_key}
  master key:   {host.master_key}

Try it (in another shell):

export FUNC={host.url} KEY={host.function_key} MASTER={host.master_key}
curl -s "$FUNC/api/health"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers/{customer_id}"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers?domain={quote(domain)}"
curl -s -H "x-functions-key: $KEY" "$FUNC/api/customers?q={quote("société")}&top=5"
curl -s "$FUNC/api/customers?q=contoso&top=2&code=$KEY"
curl -s --compressed -H "x-functions-key: $KEY" "$FUNC/api/customers" -o snapshot.json
curl -s -H "x-functions-key: $KEY" "$FUNC/api/snapshots"
curl -si -H "x-functions-key: $KEY" -H 'If-None-Match: "<ETag from a previous answer>"' \\
     "$FUNC/api/customers/{customer_id}"
curl -si -X POST -H "x-functions-key: $MASTER" -H "Content-Type: application/json" -d '{{}}' \\
     "$FUNC/admin/functions/snapshot_customers"      # runs the timer now: 202 once it has finished

Ctrl+C stops everything.
"""


if __name__ == "__main__":
    sys.exit(main())
