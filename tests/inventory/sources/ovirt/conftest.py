"""A simulated engine per module and oVirt sources built the way the inventory builds them.

The scenario holds one VM per concern (names say which), so load, refresh and concern tests
read the same engine; tests that change the inventory change objects of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.inventory.items import Batch, Item
from services.inventory.sources.contract import Blocking, ProviderInfo, SourceContext
from services.inventory.sources.ovirt import OvirtSource
from shared.payloads import ProviderType
from shared.settings import InventorySettings, KubeSettings
from sim.ovirt import scenario
from sim.ovirt.engine import Engine


def disk(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "size": "1GiB", "allocated": 0.5, **extra}


SCENARIO: dict[str, Any] = {
    "networks": [{"name": "prod", "vlan": 100}],
    "vms": [
        {
            "name": "web-1",
            "firmware": "uefi",
            "memory": "2GiB",
            "description": "front end",
            "cpu": {"sockets": 2, "cores": 2, "threads": 1},
            "nics": [{"network": "prod", "model": "virtio"}, {"model": "e1000"}],
            "disks": [
                disk("web-1-root", bootable=True, interface="virtio"),
                disk("web-1-data", bootable=False),
            ],
        },
        {"name": "db-1", "status": "down", "disks": [disk("db-1-root")]},
        {"name": "locked-1", "disks": [disk("locked-1-root", status="locked")]},
        {"name": "illegal-1", "disks": [disk("illegal-1-root", status="illegal")]},
        {"name": "lun-1", "disks": [disk("lun-1-root"), disk("lun-1-lun", storage_type="lun")]},
        {"name": "shared-1", "disks": [disk("shared-1-root"), disk("quorum", shareable=True)]},
        {"name": "cow-1", "disks": [disk("cow-1-root", format="cow")]},
        {"name": "passthrough-1", "nics": [{"model": "pci_passthrough"}], "disks": [disk("p")]},
        {"name": "unplugged-1", "nics": [{"network": ""}], "disks": [disk("u")]},
        {"name": "balloon-1", "ballooning": True, "disks": [disk("b")]},
        {"name": "ha-1", "high_availability": True, "disks": [disk("h")]},
        {"name": "secure-1", "firmware": "uefi-secure-boot", "disks": [disk("s")]},
        {"name": "diskless-1"},
        # refresh tests change these
        {"name": "stop-me", "disks": [disk("stop-me-root")]},
        {"name": "remove-me", "disks": [disk("remove-me-root"), disk("remove-me-data")]},
        {"name": "disk-changes", "disks": [disk("disk-changes-root")]},
    ],
    "disks": [disk("floating-1"), disk("floating-2")],
}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(SCENARIO)
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


def context() -> SourceContext:
    return SourceContext(Blocking(8, 4, 60).for_provider("p"), InventorySettings(), KubeSettings())


def make_source(engine: Engine, url: str | None = None, **secret: str) -> OvirtSource:
    """A source with the engine's CA; ``secret`` overrides keys ("" removes one)."""
    values = {"user": "admin@internal", "password": "secret", "cacert": engine.cert.ca_pem}
    values.update(secret)
    provider = ProviderInfo("p", "engine", ProviderType.OVIRT, url or engine.api_url)
    return OvirtSource(provider, {k: v for k, v in values.items() if v}, context())


@pytest.fixture
async def source(engine: Engine) -> AsyncIterator[OvirtSource]:
    src = make_source(engine)
    await src.probe()
    yield src
    await src.close()


def by_name(batch: Batch, kind: str) -> dict[str, Item]:
    return {i.name: i for i in batch.items if i.kind == kind}
