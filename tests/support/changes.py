"""Nights of snapshots with customers added, removed and renamed, and the history and changes calls
that read them back."""

from __future__ import annotations

import copy
import gzip
from datetime import UTC, datetime, timedelta

from devstack.population import make_customers
from shared.job import run_snapshot
from tests.support.api import call


def day(n: int) -> datetime:
    """02:00 UTC, n days before today."""
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return today - timedelta(days=n)


def history_call(customer_id: str, **kwargs):
    return call(
        "customer_history",
        path=f"customers/{customer_id}/history",
        route={"customerId": customer_id},
        **kwargs,
    )


class Nights:
    """Four nights: a baseline; one gone and one renamed; the one gone back and one new; nothing."""

    def __init__(self, make_stack) -> None:
        self.stack, self.snapshots = make_stack(
            customers=60, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "25"}
        )
        pc = self.stack.partner_center
        first = copy.deepcopy(pc.customers)
        self.leaver, self.renamed, self.gone = first[7], first[8], first[9]
        self.newcomer = make_customers(1, seed=31337)[0]
        self.generated = []
        self.run(4)
        second = [c for c in copy.deepcopy(first) if c["id"] != self.leaver["id"]]
        second[7]["companyProfile"]["companyName"] = "Renamed Ltd"  # first[8]: [7] once first[7] is gone
        pc.customers = second
        self.run(3)
        third = copy.deepcopy(second)
        third.insert(7, copy.deepcopy(self.leaver))
        third = [c for c in third if c["id"] != self.gone["id"]] + [self.newcomer]
        pc.customers = third
        self.run(2)
        self.run(1)

    def run(self, days_ago: int) -> None:
        self.generated.append(run_snapshot(now=day(days_ago))["generatedAt"])


def snapshot_at(nights: Nights, generated_at: str) -> str:
    stamp = generated_at.replace("-", "").replace(":", "")
    return f"snapshots/{generated_at[:4]}/{generated_at[5:7]}/{generated_at[8:10]}/customers-{stamp}.json"


def since(days_ago: int) -> str:
    return day(days_ago).date().isoformat()


DAMAGED = "damaged"


MISSING = "missing"


NOT_THE_LAYOUT = "not-the-layout"


GROWN = "grown-past-its-published-size"  # replaced by a valid document larger than its manifest says


FORMAT_REASON = (
    "the previous snapshot is damaged or not in the one-customer-per-line layout (SnapshotFormatError)"
)


MISSING_REASON = "the previous snapshot is missing from storage (ResourceNotFoundError)"


REASONS = {
    DAMAGED: FORMAT_REASON,
    NOT_THE_LAYOUT: FORMAT_REASON,
    GROWN: FORMAT_REASON,
    MISSING: MISSING_REASON,
}


def make_unreadable(container, name: str, how: str) -> None:
    if how == DAMAGED:  # a gzip stream cut short, still labelled gzip
        data = container.get_blob_client(name).download_blob(decompress=False).readall()
        container.get_blob_client(name).upload_blob(
            data[: len(data) // 2], overwrite=True, content_settings=_gzip_settings()
        )
    elif how == NOT_THE_LAYOUT:
        container.upload_blob(name, b'{"customers": []}', overwrite=True)
    elif how == GROWN:  # still the layout, with customers nobody published: not compared with
        document = gzip.decompress(container.get_blob_client(name).download_blob(decompress=False).readall())
        header, rest = document.split(b"\n", 1)
        extra = b"".join(b'{"id":"extra-%d","companyProfile":{}},\n' % n for n in range(200))
        container.get_blob_client(name).upload_blob(
            gzip.compress(header + b"\n" + extra + rest), overwrite=True, content_settings=_gzip_settings()
        )
    else:
        container.delete_blob(name)


def _gzip_settings():
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json", content_encoding="gzip")


class GapNights:
    def __init__(self, make_stack, how: str, caplog=None) -> None:
        self.stack, self.snapshots = make_stack(
            customers=60, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "25"}
        )
        pc = self.stack.partner_center
        self.container = self.stack.blob_service_client().get_container_client(self.snapshots.container)
        base = copy.deepcopy(pc.customers)
        self.early, self.late, self.last = make_customers(3, seed=4242)
        self.left_early, self.left_late, self.renamed = base[5], base[6], base[7]
        self.runs: list[dict] = []
        self.run(4)  # A
        pc.customers = [c for c in base if c["id"] != self.left_early["id"]] + [self.early]
        self.run(3)  # B
        make_unreadable(self.container, self.runs[1]["snapshot"], how)
        night_c = [c for c in copy.deepcopy(pc.customers) if c["id"] != self.left_late["id"]] + [self.late]
        next(c for c in night_c if c["id"] == self.renamed["id"])["companyProfile"]["companyName"] = "Gap Ltd"
        pc.customers = night_c
        if caplog is not None:
            caplog.set_level("INFO")
        self.run(2)  # C
        pc.customers = [*copy.deepcopy(night_c), self.last]
        self.run(1)  # D

    def run(self, days_ago: int) -> None:
        self.runs.append(run_snapshot(now=day(days_ago)))

    @property
    def generated(self) -> list[str]:
        return [r["generatedAt"] for r in self.runs]

    def step(self, how: str) -> dict:
        """The unknown step (night C) as /api/changes and history list it."""
        b, c = self.runs[1], self.runs[2]
        return {
            "snapshot": c["snapshot"],
            "generatedAt": c["generatedAt"],
            "previousSnapshot": b["snapshot"],
            "previousGeneratedAt": b["generatedAt"],
            "reason": REASONS[how],
        }


def entry(customer: dict) -> dict:
    profile = customer["companyProfile"]
    return {
        "id": customer["id"],
        "companyName": profile["companyName"],
        "domain": profile["domain"],
        "relationshipToPartner": customer["relationshipToPartner"],
    }


def night_two(before: list[dict]) -> tuple[list[dict], dict]:
    """The next night's list: two gone, two new, a rename, a new domain, a new relationship, one new
    field; and what the change record must say about it."""
    after = copy.deepcopy(before)
    new = make_customers(2, seed=777)
    renamed, moved, demoted, tagged = after[10], after[20], after[30], after[40]
    renamed["companyProfile"]["companyName"] = "Renamed & Co. Zürich"
    moved["companyProfile"]["domain"] = "moved.onmicrosoft.com"
    demoted["relationshipToPartner"] = "none" if demoted["relationshipToPartner"] != "none" else "advisor"
    tagged["tags"] = ["new-tag"]
    removed = [before[3], before[50]]
    after = [c for c in after if c["id"] not in {r["id"] for r in removed}]
    after.insert(25, new[0])
    after.append(new[1])

    def change(old: dict, path: str, new_value) -> dict:
        if path.startswith("/companyProfile/"):
            previous = old["companyProfile"][path.split("/")[2]]
        else:
            previous = old.get(path[1:])
        return {"id": old["id"], "fields": {path: {"before": previous, "after": new_value}}}

    expected = {
        "added": [entry(new[0]), entry(new[1])],
        "removed": [entry(r) for r in removed],
        "changed": [
            change(before[10], "/companyProfile/companyName", "Renamed & Co. Zürich"),
            change(before[20], "/companyProfile/domain", "moved.onmicrosoft.com"),
            change(before[30], "/relationshipToPartner", demoted["relationshipToPartner"]),
            change(before[40], "/tags", ["new-tag"]),
        ],
    }
    return after, expected


def change_night(stack) -> dict:
    """One added, one removed, one renamed; what their events must say."""
    before = stack.partner_center.customers
    after = copy.deepcopy(before)
    gone, renamed, new = before[4], after[5], make_customers(1, seed=4711)[0]
    old_name = renamed["companyProfile"]["companyName"]
    renamed["companyProfile"]["companyName"] = "Renamed GmbH"
    after = [c for c in after if c["id"] != gone["id"]] + [new]
    stack.partner_center.customers = after
    return {
        "added": (new["id"], new["companyProfile"]["companyName"]),
        "removed": (gone["id"], gone["companyProfile"]["companyName"]),
        "changed": (
            renamed["id"],
            {"/companyProfile/companyName": {"before": old_name, "after": "Renamed GmbH"}},
        ),
    }
