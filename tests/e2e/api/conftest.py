"""The API tests' shared world.

Most tests read one shared set of snapshots (module fixture `world`: three older snapshots written with
the snapshot writer, then the job's own run, which is the latest); tests that publish, corrupt or remove
things get their own stack from `make_stack`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from devstack.population import make_customers
from devstack.stack import DevStack
from tests.conftest import Snapshots
from tests.support.api import (
    PAST,
    PAST_RERUN,
    SPECIAL,
    World,
    foreign_settings,
    write_snapshot,
)
from tests.support.functions import InstanceSettings, run_timer

_worlds = itertools.count(1)


@pytest.fixture(scope="module")
def world(azurite) -> Iterator[World]:
    patch = pytest.MonkeyPatch()
    for name in foreign_settings():
        patch.delenv(name, raising=False)
    customers = make_customers(200, seed=7) + SPECIAL
    stack = DevStack(azurite=azurite, customers=customers, system_cas=False).start()
    container = f"api-{os.getpid()}-{next(_worlds)}"  # one world per test module, all in one Azurite
    # latest.json is looked at on every request here; the default interval has its own test.
    world_env = {**stack.env, "SNAPSHOT_CONTAINER": container, "API_LATEST_CHECK_SECONDS": "0"}
    for name, value in world_env.items():
        patch.setenv(name, value)
    snapshots = Snapshots(stack, container)
    client = stack.blob_service_client().get_container_client(container)
    past = [write_snapshot(client, customers[:10], when).name for when in [*PAST, PAST_RERUN]]
    run_timer()
    yield World(stack, snapshots, customers, snapshots.latest() or {}, past)
    patch.undo()
    stack.close()


@pytest.fixture
def env(world, monkeypatch) -> InstanceSettings:
    """The shared world with some settings changed for one test (each change restarts the instance)."""
    return InstanceSettings(monkeypatch)
