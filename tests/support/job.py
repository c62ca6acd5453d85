"""What a finished run left behind: its summary line, a complete published snapshot; the next second (the
job's clock moved on, or the real one waited for); and the storage proxy a run is pointed through to fail a
step."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from datetime import datetime, timedelta, tzinfo

from devstack.storage_proxy import StorageProxy
from shared import events
from tests.support.functions import run_timer

SNAPSHOT_NAME = re.compile(r"^snapshots/(\d{4})/(\d{2})/(\d{2})/customers-\1\2\3T\d{6}Z\.json$")


def last_summary(caplog) -> dict:
    """The fields of the last snapshot.summary line logged."""
    prefix = events.SNAPSHOT_SUMMARY + " "
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]
    assert lines, "no snapshot.summary line was logged"
    return json.loads(lines[-1].removeprefix(prefix))


def assert_complete(stack, snapshots, *, expected=None) -> dict:
    """The published snapshot holds every customer exactly once, in API order, as received."""
    expected = stack.partner_center.customers if expected is None else expected
    latest = snapshots.latest()
    assert latest is not None, "latest.json was not published"
    assert SNAPSHOT_NAME.match(latest["snapshot"]), latest["snapshot"]
    _data, properties = snapshots.raw(latest["snapshot"])
    assert properties.etag == latest["etag"]
    document_bytes = snapshots.document_bytes(latest["snapshot"])
    document = snapshots.document(latest["snapshot"])
    assert document["customers"] == expected
    assert document["customerCount"] == len(expected) == latest["customerCount"]
    ids = [c["id"] for c in document["customers"]]
    assert len(ids) == len(set(ids))
    digest = hashlib.sha256(document_bytes).hexdigest()
    assert latest["sha256"] == digest == properties.metadata["sha256"]
    assert properties.metadata["customercount"] == str(len(expected))
    assert document["generatedAt"] == latest["generatedAt"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", document["generatedAt"])
    return document


class JobTime(datetime):
    """shared.job.run's datetime in every test (tests/conftest.py): now() is the real time, `ahead` whole
    seconds later. The run takes its start, and so its snapshot's name, from it; nothing else does."""

    ahead = 0

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:
        return datetime.now(tz) + timedelta(seconds=cls.ahead)


def next_second() -> None:
    """Snapshot names have one-second resolution; a second run in the same second is refused. The job's
    clock moves on a second (JobTime): the next run starts in a later second than every run before it,
    without the test waiting for one."""
    JobTime.ahead += 1


def next_real_second() -> None:
    """Waits for the real clock's next second: Blob Storage stamps Last-Modified in whole seconds, and the
    outbox tells a record staged before the newest .published marker by those stamps."""
    time.sleep(1.02 - time.time() % 1)


def publish_good_snapshot(make_stack, **kwargs):
    stack, snapshots = make_stack(customers=250, env_overrides={"PARTNER_CENTER_PAGE_SIZE": "100"}, **kwargs)
    run_timer()
    latest_bytes = snapshots.raw("latest.json")[0]
    next_second()
    return stack, snapshots, latest_bytes


def storage_proxy(stack, monkeypatch) -> StorageProxy:
    """A proxy in front of the stack's Azurite (TLS, the stack's CA) that the run's storage goes through,
    without SDK retries, so a test can fail one request and see which step names it."""
    client = ssl.create_default_context(cafile=str(stack.tls.bundle))
    proxy = StorageProxy(stack.tls.ssl_server_context(), stack.azurite.account_url, client)
    proxy.start()
    monkeypatch.setenv("SNAPSHOT_STORAGE_ACCOUNT_URL", proxy.account_url)
    monkeypatch.setenv("SNAPSHOT_STORAGE_RETRIES", "0")
    return proxy
