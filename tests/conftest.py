"""Fixtures: one Azurite per test session, fresh stand-ins per test, the job's settings in os.environ."""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.azurite import Azurite
from devstack.stack import DevStack
from devstack.tls import LocalTLS
from tests.support.functions import new_instance
from tests.support.job import JobTime

_containers = itertools.count(1)


def _foreign_settings() -> list[str]:
    """Settings of the machine or the developer's shell that would steer the job elsewhere."""
    prefixes = (
        "PARTNER_CENTER_", "SNAPSHOT_", "API_", "AzureWebJobsStorage", "AzureFunctionsJobHost", "KEY_VAULT",
        "AZURE_", "MSI_", "TEAMS_", "WEBHOOK_",
    )  # fmt: skip
    return [
        name
        for name in os.environ
        if name.startswith(prefixes)
        or name in {"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "HEALTH_STALE_AFTER_HOURS"}
    ]


# The modules that take longest, longest first (about 15 to 60 s each under make test on two cores). With
# --dist loadscope a module runs on one worker, and make test hands modules out in collection order
# (--no-loadscope-reorder): these start first and the many short modules fill in at the end, so that no
# worker is left running a long module alone. A module missing here only runs later.
LONGEST_FIRST = (
    "tests/e2e/job/test_runs.py",
    "tests/e2e/changes/test_event_outbox.py",
    "tests/e2e/job/test_snapshot_job.py",
    "tests/e2e/job/test_job_hardening.py",
    "tests/project/test_bench_smoke.py",
    "tests/e2e/local/test_first_hour.py",
    "tests/e2e/changes/test_records_trust.py",
    "tests/e2e/api/test_api_hardening.py",
    "tests/e2e/changes/test_changes_gap.py",
    "tests/e2e/notify/test_runs.py",
    "tests/unit/notify/test_delivery.py",
    "tests/e2e/api/test_changes_api.py",
    "tests/e2e/api/test_openapi.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: n for n, module in enumerate(LONGEST_FIRST)}
    items.sort(
        key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank))
    )  # stable: the rest as found


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    # Test CAs only in every trust bundle here (LocalTLS): no test reaches a real host.
    with LocalTLS(system_cas=False) as tls, Azurite(tls) as server:
        yield server


@dataclass
class Snapshots:
    """Reads what the job wrote, through the Azurite connection string (not the job's own code)."""

    stack: DevStack
    container: str

    @functools.cached_property
    def _client(self):
        # One client, its connections kept alive: a new client per read made a new TLS connection each.
        return self.stack.blob_service_client().get_container_client(self.container)

    def _container(self):
        return self._client

    def names(self) -> list[str]:
        container = self._container()
        if not container.exists():
            return []
        return sorted(b.name for b in container.list_blobs())

    def raw(self, name: str) -> tuple[bytes, Any]:
        download = self._container().get_blob_client(name).download_blob(decompress=False)
        return download.readall(), download.properties

    def latest(self) -> dict[str, Any] | None:
        if "latest.json" not in self.names():
            return None
        return json.loads(self.raw("latest.json")[0])

    def document_bytes(self, name: str) -> bytes:
        data, properties = self.raw(name)
        return gzip.decompress(data) if properties.content_settings.content_encoding == "gzip" else data

    def document(self, name: str) -> dict[str, Any]:
        return json.loads(self.document_bytes(name))

    def snapshot_names(self) -> list[str]:
        from shared.storage.layout import SNAPSHOT_NAME

        return [n for n in self.names() if SNAPSHOT_NAME.fullmatch(n)]  # not their .published markers

    def record_names(self) -> list[str]:
        """The change records (snapshots/YYYY/MM/DD/changes-*.json)."""
        return [n for n in self.names() if n.startswith("snapshots/") and "/changes-" in n]

    def record(self, name: str) -> dict[str, Any]:
        return self.document(name)


@pytest.fixture(autouse=True)
def fresh_api_context() -> Iterator[None]:
    """Each test's first request builds the API's context from the settings it set (an instance's life)."""
    from shared.api.context import use

    use(None)
    yield
    use(None)


@pytest.fixture(autouse=True)
def job_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's clock is the real one until a test moves it on (tests/support/job.py next_second)."""
    JobTime.ahead = 0
    monkeypatch.setattr("shared.job.run.datetime", JobTime)


@pytest.fixture
def make_stack(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """make_stack(**DevStack kwargs) -> (stack, snapshots): stand-ins up, job settings in os.environ."""
    stacks: list[tuple[DevStack, str]] = []

    def make(*, env_overrides: dict[str, str] | None = None, key_vault: bool = True, **kwargs: Any):
        for name in _foreign_settings():
            monkeypatch.delenv(name, raising=False)
        stack = DevStack(azurite=azurite, system_cas=False, **kwargs)
        stack.__enter__()
        container = f"snapshots-{os.getpid()}-{next(_containers)}"
        stacks.append((stack, container))
        env = dict(stack.env if key_vault else stack.env_without_key_vault())
        # Fast retries keep fault tests short; the behaviour is the same as with the defaults.
        env.update({"SNAPSHOT_CONTAINER": container, "PARTNER_CENTER_BACKOFF_SECONDS": "0.01"})
        # The API looks at latest.json on every request, so a test sees a publish at once (the default
        # interval has its own test in tests/e2e/api/test_caching.py).
        env["API_LATEST_CHECK_SECONDS"] = "0"
        env.update(env_overrides or {})
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        new_instance()
        return stack, Snapshots(stack, container)

    yield make
    for stack, container in reversed(stacks):
        # Azurite keeps every blob in memory for the whole session: a thousand tests' containers made it
        # pause for seconds late in the suite (a lease that expired, a read that timed out).
        with contextlib.suppress(Exception):
            stack.blob_service_client().delete_container(container)
        stack.__exit__(None, None, None)
