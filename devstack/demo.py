"""`make demo`: the nightly job once, end to end, on this machine.

Starts Azurite and the stand-ins (managed identity, Entra ID, Key Vault, Partner Center with a few
thousand simulated customers and some throttling), runs the timer function registered in
function_app.py exactly as the Functions host would, and prints what it did and where the snapshot is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from devstack.stack import DevStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to each Partner Center call"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="  %(levelname)-7s %(message)s", stream=sys.stdout)
    logging.getLogger("shared").setLevel(logging.INFO)
    # azure-functions warns that timers have no auth level while listing functions: true, and noise here.
    logging.getLogger().addFilter(lambda record: "Auth level is not applied" not in record.getMessage())

    print(f"Starting Azurite and the stand-ins ({args.customers} simulated customers)...")
    with DevStack(customers=args.customers, page_latency=args.latency) as stack:
        os.environ.update(stack.env)
        os.environ.setdefault("SNAPSHOT_CONTAINER", "customer-snapshots")
        os.environ["PARTNER_CENTER_PAGE_SIZE"] = str(args.page_size)
        # Real partners get throttled: one 429 with Retry-After and one 503 on the way.
        stack.partner_center.inject("throttle", at=2, retry_after=1)
        stack.partner_center.inject("status", at=4, status=503)

        from azure.functions.timer import TimerRequest

        import function_app

        timer = {f.get_function_name(): f for f in function_app.app.get_functions()}["snapshot_customers"]
        print("Running the timer function snapshot_customers (function_app.py)...")
        timer.get_user_function()(TimerRequest(past_due=False))

        container = stack.blob_service_client().get_container_client(os.environ["SNAPSHOT_CONTAINER"])
        latest = json.loads(container.download_blob("latest.json").readall())
        print("\nlatest.json:")
        print(json.dumps(latest, indent=2))
        container_url = f"{stack.env['SNAPSHOT_STORAGE_ACCOUNT_URL']}/{os.environ['SNAPSHOT_CONTAINER']}"
        print(f"\nSnapshot: {container_url}/{latest['snapshot']}")
        print(
            f"  {latest['customerCount']} customers, {latest['storedBytes']:,} bytes stored gzip-encoded "
            f"({latest['jsonBytes']:,} bytes of JSON)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
