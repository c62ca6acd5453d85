"""`python -m bench.keys [--customers 20000] [--lookups 2000]`: the lookup index with keys chosen to hurt it.

Two snapshots of N customers: the random ids and distinct domains of devstack/population.py, and the same
customers with ids whose CRC-32 is the same (devstack/population.py `crc32_colliding_ids`, what slotted every
id into one slot before index format 3) and one domain shared by every customer. For each:

- the index build alone, in-process: IndexBuilder fed pages of 500 customers as the snapshot writer feeds
  it, then sealed (the tables are built there); the slots walked past a key's home slot while building;
- the snapshot and its index written to Azurite by the job's writer, loaded by the API's IndexedSnapshot
  (the stored blob fetched, as a warm instance has it), and warm lookups by id: ids of the snapshot, and
  absent ids (for the crafted keys, with the same CRC-32 as every stored id), p50 and p99.

Printed, not asserted (not part of `make bench`, like bench/csv_whole.py).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.lookups import percentile, write_snapshot
from devstack.azurite import Azurite
from devstack.population import crc32_colliding_ids, make_customers
from devstack.stack import DevStack


@dataclass
class KeyFigures:
    kind: str
    customers: int
    build_seconds: float
    probes: dict[str, int]
    present: list[float]  # seconds per warm lookup of an id in the snapshot
    absent: list[float]


def population(count: int, crafted: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """(customers, ids that are not theirs): with `crafted`, every id has the same CRC-32, absent ones too,
    and every customer has the same domain."""
    customers = make_customers(count, seed=16)
    if not crafted:
        return customers, [f"{n:08x}-0000-4000-8000-000000000000" for n in range(count)]
    ids = crc32_colliding_ids(2 * count, seed=16)
    for customer, customer_id in zip(customers, ids, strict=False):
        customer["id"] = customer["companyProfile"]["tenantId"] = customer_id
        customer["companyProfile"]["domain"] = "everyone.example"
    return customers, ids[count:]


def build(customers: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    """Seconds to build the index of `customers` as the job does (staged blocks kept in memory here)."""
    from shared.snapshots.index import MEMBER_CUSTOMERS
    from shared.snapshots.index_builder import IndexBuilder

    staged: dict[str, bytes] = {}
    started = time.perf_counter()
    builder = IndexBuilder(staged.__setitem__)
    for start in range(0, len(customers), 500):
        builder.add(customers[start : start + 500])
    builder.members.extend(range(-(-len(customers) // MEMBER_CUSTOMERS) + 1))
    builder.finish(snapshot="snapshots/x.json", etag='"0x1"', sha256="0" * 64, customer_count=len(customers))
    return time.perf_counter() - started, builder.probes


def lookups(
    store: Any, customers: list[dict[str, Any]], absent: list[str], count: int
) -> tuple[list[float], ...]:
    from shared.api.indexed import IndexedSnapshot
    from shared.snapshots.store import Manifest

    committed = write_snapshot(
        store, customers, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    )
    loaded = IndexedSnapshot.load(store, Manifest.of(committed))
    loaded.fetch_in_background(small_first=True)  # a warm instance has the stored blob in memory
    rng = random.Random(16)
    asked = [rng.choice(customers)["id"] for _ in range(count)]
    for customer_id in asked[:200]:  # warm: the members a lookup inflates are kept (64 of them)
        loaded.customer(customer_id)
    timed: list[list[float]] = [[], []]
    for times, ids, found in (
        (timed[0], asked, True),
        (timed[1], [rng.choice(absent) for _ in range(count)], False),
    ):
        for customer_id in ids:
            started = time.perf_counter()
            answer = loaded.customer(customer_id)
            times.append(time.perf_counter() - started)
            if (answer is not None) != found:
                raise RuntimeError(f"lookup of {customer_id}: {'not found' if found else 'found'}")
    return timed[0], timed[1]


def key_figures(azurite: Azurite, *, customers: int, count: int) -> list[KeyFigures]:
    from shared.snapshots.store import SnapshotStore

    figures = []
    with DevStack(customers=0, azurite=azurite) as stack:
        for kind, crafted in (("random ids, distinct domains", False), ("crafted ids, one domain", True)):
            people, absent = population(customers, crafted)
            seconds, probes = build(people)
            container = stack.blob_service_client(retry_total=2).get_container_client(
                f"keys-{'crafted' if crafted else 'random'}-{time.time_ns()}"
            )
            store = SnapshotStore(container)
            store.ensure_container()
            present, missing = lookups(store, people, absent, count)
            figures.append(KeyFigures(kind, customers, seconds, probes, present, missing))
    return figures


def table(figures: list[KeyFigures]) -> str:
    def us(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1e6:.1f} µs"

    lines = [
        "| index keys | build | slots walked past home (ids; domains) | lookup by id, warm: p50 / p99 "
        "| absent id, warm: p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.kind}, {f.customers:,} customers | **{f.build_seconds:.3f} s** | "
            f"{f.probes['id_table']:,}; {f.probes['domain_table']:,} | **{us(f.present, 50)}** / "
            f"{us(f.present, 99)} | **{us(f.absent, 50)}** / {us(f.absent, 99)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.keys", description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=2000, help="warm lookups of each kind")
    args = parser.parse_args(argv)
    with Azurite() as azurite:
        figures = key_figures(azurite, customers=args.customers, count=args.lookups)
    print(table(figures), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
