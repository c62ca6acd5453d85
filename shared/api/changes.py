"""GET /api/changes and GET /api/customers/{customerId}/history: what changed, read from change records.

Only published snapshots count: each change record names the published snapshot it was compared with
(its blob metadata repeats it), so the chain from latest.json back through `previousSnapshot` is exactly the
published history; a withheld snapshot's record is on no chain. One listing call gives the chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.snapshots.store import Manifest, SnapshotStore


def withheld_since(store: SnapshotStore, manifest: Manifest) -> dict[str, Any] | None:
    """For /api/health: the snapshot the completeness guard withheld, when it is newer than the latest
    (counts and times only: health is anonymous)."""
    from shared.changes.guard import read_withheld

    withheld = read_withheld(store)
    if withheld is None or str(withheld.get("generatedAt", "")) <= manifest.generated_at:
        return None
    return {
        "generatedAt": withheld.get("generatedAt"),
        "customerCount": withheld.get("customerCount"),
        "latestCustomerCount": withheld.get("latestCustomerCount"),
        "dropPercent": withheld.get("dropPercent"),
        "maxDropPercent": withheld.get("maxDropPercent"),
    }
