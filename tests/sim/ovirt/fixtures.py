"""The simulated oVirt engine of the tests that need one: the simulator's own tests
(``tests/sim/ovirt``), the populator's (``tests/populators/ovirt``), and the controller's,
the orchestrator's and the progress service's, which copy disks from it.

One engine (with its real imageio daemon) per module: starting one costs ~0.3 s, and faults
are per disk, so each test uses its own disk (``new_disk``). A conftest that wants the
``engine`` fixture imports it from here (pytest finds fixtures only in a conftest, or in
the test module, along the test's own path).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.entities import Disk

MiB = 1 << 20


def disk_spec(name: str, **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {"name": name, "size": "24MiB", "allocated": 0.3, "extent": "2MiB"}
    spec.update(extra)
    return spec


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    """An engine whose floating disks are created by the tests through ``new_disk``."""
    inv, faults = scenario.from_dict(
        {
            "networks": [{"name": "prod", "vlan": 100}],
            "vms": [
                {
                    "name": "web-1",
                    "firmware": "uefi",
                    "memory": "2GiB",
                    "cpu": {"sockets": 2, "cores": 2, "threads": 1},
                    "nics": [{"network": "prod", "model": "virtio"}, {"model": "e1000"}],
                    "disks": [disk_spec("web-1-root", format="cow", bootable=True)],
                },
                {"name": "db-1", "status": "down", "disks": [disk_spec("db-1-data")]},
            ],
        }
    )
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


def new_disk(engine: Engine, **spec: object) -> Disk:
    """A floating disk of its own for one test (faults are per disk)."""
    name = f"disk-{uuid.uuid4().hex[:8]}"
    # A 64-bit seed: the builder derives the disk's id from it, and with 16 bits two of a
    # module's ~40 disks shared an id about once in a hundred runs (one replaced the other).
    builder = scenario.Builder(seed=uuid.uuid4().int >> 64)
    builder.domain = engine.inv.storage_domains[next(iter(engine.inv.storage_domains))]
    builder.profile = engine.inv.disk_profiles[next(iter(engine.inv.disk_profiles))]
    disk = builder.disk(disk_spec(name, **spec), name)
    engine.inv.disks[disk.id] = disk
    return disk


async def transfer_phase(engine: Engine, disk: Disk, within: float = 10) -> str:
    """The final phase of the disk's latest transfer, once it has settled."""
    done = {"finished_success", "finished_cleanup", "finished_failure"}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    phase = "none"
    while loop.time() < deadline:
        mine = [t for t in engine.inv.transfers.values() if t.disk_id == disk.id]
        phase = mine[-1].phase.value if mine else "none"
        if phase in done:
            return phase
        await asyncio.sleep(0.05)
    return phase
