"""The scenario of the simulated cloud the ``cloud`` fixture (``tests/conftest.py``) starts
for the OpenStack source's tests, and sources built as the inventory service builds them.

Tests that change the cloud each change servers of their own, so their order does not
matter; faults are cleared after every test. ``conn`` and the clearing of faults are the
simulator tests' (``tests.sim.openstack.fixtures``), on this directory's ``cloud``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.inventory.sources.contract import Blocking, ProviderInfo, SourceContext
from services.inventory.sources.openstack import OpenStackSource
from shared.payloads import ProviderType
from shared.settings import InventorySettings, KubeSettings
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from tests.sim.openstack.fixtures import _clear_faults as _clear_faults  # autouse fixture
from tests.sim.openstack.fixtures import conn as conn  # fixture, on the ``cloud`` here


def _disk(size: int = 4) -> sc.Disk:
    return sc.Disk(size_mib=size, data_mib=0)


def _server(name: str, **kw: Any) -> sc.Server:
    kw.setdefault("networks", ["private"])
    return sc.Server(name=name, flavor="m1.small", root=_disk(), **kw)


SCENARIO = sc.Scenario(
    flavors=[
        # Nova lays 2 vCPUs out as 2 sockets unless told: this flavor says 1 x 2 cores.
        sc.Flavor(
            name="m1.small",
            vcpus=2,
            ram_mib=2048,
            disk_gib=20,
            extra_specs={"hw:cpu_cores": "2"},
        ),
        sc.Flavor(
            name="m1.large",
            vcpus=8,
            ram_mib=16384,
            disk_gib=80,
            extra_specs={"hw:cpu_sockets": "2", "hw:cpu_max_threads": "1"},
        ),
    ],
    networks=[
        sc.Network(name="private", cidr="10.1.0.0/24"),
        sc.Network(name="storage", cidr="10.2.0.0/24"),
    ],
    volume_types=["standard", "ssd"],
    servers=[
        _server("web-1", volumes=[sc.Volume(name="web-1-data", size_mib=4, data_mib=0)]),
        _server(
            "db-1",
            boot="volume",
            status="SHUTOFF",
            networks=["private", "storage"],
            volumes=[sc.Volume(name="db-1-logs", size_mib=4, data_mib=0, type="ssd")],
        ),
        _server("lonely", networks=[]),
        # One server per test that changes the cloud:
        *(_server(n) for n in ("stop-me", "delete-me", "error-me", "shelve-me", "vif-me")),
        _server("api-error"),  # test_provider_api.py
        *(
            _server(n, volumes=[sc.Volume(size_mib=4, data_mib=0)])
            for n in ("vol-change", "bad-volume", "multi")
        ),
    ],
)


@pytest.fixture(scope="session")
def blocking() -> Iterator[Blocking]:
    pool = Blocking(workers=8, per_provider=4, timeout=60)
    yield pool
    pool.shutdown()


def make_source(
    blocking: Blocking, url: str, secret: dict[str, str], provider_id: str = "p1"
) -> OpenStackSource:
    provider = ProviderInfo(provider_id, "cloud", ProviderType.OPENSTACK, url)
    settings = InventorySettings(connect_timeout_seconds=5)
    context = SourceContext(blocking.for_provider(provider_id), settings, KubeSettings())
    return OpenStackSource(provider, secret, context)


@pytest.fixture
async def source(cloud: Cloud, blocking: Blocking) -> AsyncIterator[OpenStackSource]:
    s = make_source(blocking, cloud.auth_url, cloud.credentials())
    yield s
    await s.close()


def server_id(cloud: Cloud, name: str) -> str:
    return next(s.id for s in cloud.state.servers.values() if s.name == name)
