"""A disk's end wakes its VM's DiskTransfer step at once (the controller's
``population.ended``), not at its next poll.

The orchestrator here looks at copying disks only every 10 minutes
(``HOIST_ORCHESTRATOR_TRANSFER_POLL_SECONDS``): a VM that still migrates within the test's
few minutes saw its disks' end through the nudge alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from shared.devservices import DevServices
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.orchestrator.pipelines import (
    ControllerProcess,
    ovirt_disk,
    ovirt_source,
    plan_of,
    planned,
    publisher,
    start_plan,
    wait_vm,
)
from tools.processes import ServiceProcess

TRANSFER_POLL = 600.0


ORCHESTRATOR_ENV = {"HOIST_ORCHESTRATOR_TRANSFER_POLL_SECONDS": str(TRANSFER_POLL)}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(
        {
            "networks": [{"name": "prod"}],
            "vms": [
                {
                    "name": "nudged",
                    "status": "up",
                    "nics": [{"network": "prod"}],
                    "disks": [ovirt_disk("nudged-a", bootable=True), ovirt_disk("nudged-b")],
                }
            ],
        }
    )
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


async def test_a_disks_end_wakes_the_transfer_step_before_its_poll(
    engine: Engine,
    kube: client.ApiClient,
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    source = await ovirt_source(engine, kube)
    vm = planned(engine, "nudged")
    plan = plan_of(source, [vm])
    async with publisher(servers, prefix) as bus:
        await start_plan(bus, plan)
    # Well under one transfer poll: only the nudges can have ended DiskTransfer this soon.
    state = await wait_vm(svc, plan, vm.vm_id, within=TRANSFER_POLL / 4)
    assert state["phase"] == "Succeeded", state
    transfer = next(s for s in state["pipeline"] if s["name"] == "DiskTransfer")
    assert [t["state"] for t in transfer["tasks"]] == ["Completed", "Completed"]
