"""`make serve`'s short history: three nights before today, published by the job itself with its clock set
back, so `/api/changes`, customer histories and the events queue have something real to show.

    night 1 (3 days ago)   a baseline: every customer but three newcomers
    night 2 (2 days ago)   the three newcomers added, two customers gone, two renamed (" Holding")
    night 3 (yesterday)    the two gone customers back
    today (serve's run)    the same list: no changes (the list the Partner Center stand-in keeps serving)
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.stack import DevStack

EVENTS_QUEUE = "customer-changes"  # serve's and the demo's events queue (infra/ creates one in Azure)
NIGHTS = 3
MIN_CUSTOMERS = 50  # the customers the nights change: 10, 20, 30, 31, 40..42


@dataclass(frozen=True)
class History:
    since: str  # the first night's UTC date
    returned_id: str  # gone on night 2, back on night 3
    renamed_id: str  # renamed on night 2


def use_events_queue(stack: DevStack) -> str:
    """SNAPSHOT_EVENTS_QUEUE (customer-changes unless set), created in Azurite as infra/ does in Azure."""
    from azure.core.exceptions import ResourceExistsError

    name = os.environ.setdefault("SNAPSHOT_EVENTS_QUEUE", EVENTS_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        stack.queue_client(name).create_queue()
    return name


def nights(customers: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The lists of nights 1 to 3; night 3's (the renamed names kept) is also today's."""
    final = copy.deepcopy(customers)
    for customer in final[30:32]:
        customer["companyProfile"]["companyName"] += " Holding"
    newcomers = {c["id"] for c in final[40:43]}
    gone = {final[10]["id"], final[20]["id"]}
    return [
        [c for c in customers if c["id"] not in newcomers],
        [c for c in final if c["id"] not in gone],
        final,
    ]


def publish_history(stack: DevStack) -> History | None:
    """Runs the job for the three nights (02:00 UTC each); the stand-in then keeps night 3's list. None:
    too few customers for it (nothing run)."""
    from shared.job import run_snapshot

    customers = stack.partner_center.customers
    if len(customers) < MIN_CUSTOMERS:
        return None
    lists = nights(customers)
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=NIGHTS)
    for number, listed in enumerate(lists):
        stack.partner_center.customers = listed
        run_snapshot(now=first + timedelta(days=number))
    return History(first.date().isoformat(), returned_id=customers[10]["id"], renamed_id=customers[30]["id"])
