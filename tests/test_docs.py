"""The docs stay true: generated tables match the code, and the example subscriber works."""

from __future__ import annotations

import ast
import asyncio
import itertools
import re
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


def test_one_disks_journey_is_short_and_each_file_names_the_next() -> None:
    """docs/architecture.md lists the files one disk passes through, from the start route to
    the VirtualMachine; each file's module docstring names the next, so a maintainer
    follows the journey from the code alone, and the list stays within 15 files."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- journey -->", 1)[1].split("<!-- /journey -->", 1)[0]
    paths = re.findall(r"^\d+\. `([^`]+)`", block, flags=re.M)
    assert paths[0] == "services/planner/api.py"
    assert paths[-1] == "services/orchestrator/virtualmachines.py"
    assert len(set(paths)) <= 15, paths
    for here, after in itertools.pairwise(paths):
        doc = ast.get_docstring(ast.parse((ROOT / here).read_text())) or ""
        assert after in doc, f"{here} does not name the next file, {after}"
    first_visit = {p: i for i, p in reversed(list(enumerate(paths)))}
    for i, here in enumerate(paths[:-1]):
        if first_visit[here] == i:  # the docstring's own 'Next:' is its first visit's
            doc = ast.get_docstring(ast.parse((ROOT / here).read_text())) or ""
            assert f"Next: {paths[i + 1]}" in doc, here
