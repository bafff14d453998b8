"""A planner killed (SIGKILL) at any moment loses nothing: a start is all or nothing, and
the orchestrator's events published while it was down are projected when it is back."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from shared import catalog
from shared import payloads as p
from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from tests.conftest import eventually
from tests.inventory.conftest import PREFIX, api
from tests.planner.conftest import make_maps, plan_body, planner_process, start_and_capture
from tools.processes import ServiceProcess


async def test_killed_planner_resumes_projection(
    servers: DevServices,
    database_url: str,
    inventory: ServiceProcess,
    providers: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    logs = tmp_path_factory.mktemp("restart")
    # A tiny event budget: the two VMs' plan goes out in two parts.
    small = {"HOIST_PLANNER_STARTED_EVENT_BYTES": "4096"}
    first = planner_process(servers, database_url, inventory, logs, **small)
    await first.start()
    await first.wait_ready(60)
    maps = await make_maps(first, providers)
    body = plan_body(providers, maps, [{"name": "rerun-a"}, {"name": "rerun-b"}])
    plan = (await api(first, "POST", "/plans", json=body)).json()
    frozen = await start_and_capture(first, plan["id"])
    assert frozen["parts"] == 2
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    await first.proc.wait()
    await first.client.aclose()

    # The orchestrator goes on while the planner is down; JetStream keeps its events.
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=PREFIX), source="/hoist/orchestrator")
    await bus.connect()
    try:
        for vm in frozen["vms"]:
            data: dict[str, Any] = {
                "plan_id": frozen["plan_id"],
                "migration_id": frozen["migration_id"],
                "vm_id": vm["vm_id"],
            }
            done = p.VmStepChanged(**data, step=p.Step.INITIALIZE, state=p.StepState.COMPLETED)
            await bus.publish(catalog.VM_STEP_CHANGED, done)
            await bus.publish(
                catalog.VM_FINISHED, p.VmFinished(**data, outcome=p.Outcome.SUCCEEDED)
            )
    finally:
        await bus.drain()

    second = planner_process(servers, database_url, inventory, logs)
    await second.start()
    try:
        await second.wait_ready(60)

        async def succeeded() -> bool:
            got = (await api(second, "GET", f"/plans/{plan['id']}")).json()
            return bool(got["phase"] == "Succeeded")

        await eventually(succeeded, within=60, what="the events projected after the restart")
        got = (await api(second, "GET", f"/plans/{plan['id']}")).json()
        counts = got["status"]["migration"]["vms"]
        assert counts["succeeded"] == counts["total"] == 2
        # A re-run finds nothing left to migrate.
        again = await api(second, "POST", f"/plans/{plan['id']}/start")
        assert again.status_code == 409
    finally:
        await second.terminate()
