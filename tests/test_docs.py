"""The docs stay true: generated tables match the code, and the example subscriber works."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shared import catalog
from shared import payloads as p
from shared.bus import Bus
from tools import docgen

ROOT = Path(__file__).resolve().parent.parent


def test_generated_tables_are_current() -> None:
    assert docgen.stale() == [], "run `python -m tools.docgen`"


def test_every_subject_is_documented() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for event in catalog.EVENTS:
        assert f"`{event.subject}`" in text


async def test_example_subscriber_follows_a_plan(bus: Bus) -> None:
    """Run docs/examples/subscriber.py as an integrator would and feed it real events."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "docs" / "examples" / "subscriber.py"),
        "--nats-url",
        bus.settings.url,
        "--prefix",
        bus.prefix,
        "--plan",
        "plan-1",
        "--max-events",
        "3",
        "--timeout",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    ids = {"plan_id": "plan-1", "migration_id": "m", "vm_id": "vm-1"}
    await bus.publish(  # before the subscriber is up: stored, so it still arrives
        catalog.VM_STEP_CHANGED, p.VmStepChanged(**ids, step="DiskTransfer", state="Running")
    )
    await bus.publish(  # another plan: filtered out
        catalog.VM_FINISHED, p.VmFinished(**{**ids, "plan_id": "plan-2"}, outcome="Failed")
    )
    await bus.publish(catalog.VM_FINISHED, p.VmFinished(**ids, outcome="Succeeded"))
    await bus.publish(catalog.PLAN_STATUS, p.PlanStatusChanged(**ids, phase="Succeeded"))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err.decode()
    assert len(lines) == 3, lines
    assert any(
        "migration.vm.step.v1 planid=plan-1 vmid=vm-1 DiskTransfer Running" in x for x in lines
    )
    assert any("vm.finished.v1 planid=plan-1 vmid=vm-1 Succeeded" in x for x in lines)
    assert any("plan.status.v1 planid=plan-1 phase=Succeeded" in x for x in lines)
    assert not any("plan-2" in x for x in lines)
