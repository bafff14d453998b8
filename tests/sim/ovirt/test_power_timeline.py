"""The engine's power timelines: every VM's up/down changes, as ovirtsdk4's power actions
make them, served on ``/sim/power-timeline`` for counting a plan's downtime."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from sim.certs import client_context
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect
from tools import downtime
from tools.stack import Stack, StackSpec


def _wait_status(service: Any, status: str, within: float = 20) -> None:
    """A hang guard, not a performance assertion."""
    deadline = time.monotonic() + within
    while service.get().status.value != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"VM not {status} within {within} s")
        time.sleep(0.02)


def _power(engine: Engine, name: str, *actions: str) -> None:
    """Run ovirtsdk4's power actions on VM ``name``, each until the VM settles: ``down``
    after ``stop`` or ``shutdown``, ``up`` after ``start`` or a shutdown its guest ignores
    (``powering_down``, then back ``up``)."""
    conn = connect(engine)
    try:
        vms = conn.system_service().vms_service()
        vm = vms.list(search=f"name={name}")[0]
        service = vms.vm_service(vm.id)
        for action in actions:
            getattr(service, action)()
            if action == "shutdown" and not engine.inv.vms[vm.id].acpi:
                _wait_status(service, "powering_down")
                _wait_status(service, "up")
            else:
                _wait_status(service, "up" if action == "start" else "down")
    finally:
        conn.close()


def _vm(engine: Engine, name: str) -> Any:
    return next(v for v in engine.inv.vms.values() if v.name == name)


async def test_shutdown_and_start_through_ovirtsdk4_are_down_then_up(engine: Engine) -> None:
    web = _vm(engine, "web-1")
    before = time.time()
    assert [(c.state, c.status) for c in web.power.changes] == [("up", "up")]
    assert web.power.changes[0].at <= before
    await asyncio.to_thread(_power, engine, "web-1", "shutdown", "start")
    after = time.time()
    changes = web.power.changes
    # powering_down is still up; wait_for_launch is not yet (no guest runs before qemu).
    assert [(c.state, c.status) for c in changes] == [
        ("up", "up"),
        ("down", "down"),
        ("up", "powering_up"),
    ]
    assert before < changes[1].at < changes[2].at <= after


async def test_ignored_shutdown_records_nothing_and_stop_is_down(engine: Engine) -> None:
    web = _vm(engine, "web-1")
    web.acpi = False
    try:
        count = len(web.power.changes)
        await asyncio.to_thread(_power, engine, "web-1", "shutdown")
        assert len(web.power.changes) == count  # powering_down and back up: never down
        await asyncio.to_thread(_power, engine, "web-1", "stop", "start")
        assert [c.state for c in web.power.changes[count:]] == ["down", "up"]
    finally:
        web.acpi = True


async def test_status_changes_and_removal_are_recorded(engine: Engine) -> None:
    db = _vm(engine, "db-1")
    assert [(c.state, c.status) for c in db.power.changes] == [("down", "down")]
    engine.changes.set_vm_status(db.id, "up")
    engine.changes.set_vm_status(db.id, "migrating")  # still up: nothing new
    engine.changes.set_vm_status(db.id, "paused")
    db.status = "up"  # however a test changes it
    engine.changes.remove_vm(db.id)
    assert [(c.state, c.status) for c in db.power.changes] == [
        ("down", "down"),
        ("up", "up"),
        ("down", "paused"),
        ("up", "up"),
        ("down", "removed"),
    ]
    assert db.id not in engine.inv.vms
    timelines = await downtime.ovirt_power_timelines(
        engine.url, user="admin@internal", password="secret", ca_file=engine.cert.ca_file
    )
    assert timelines[db.id].name == "db-1"
    assert [c.state for c in timelines[db.id].changes] == ["down", "up", "down", "up", "down"]


async def test_timelines_over_http_need_a_token(engine: Engine, tmp_path: Path) -> None:
    web = _vm(engine, "web-1")
    url = f"{engine.url}/sim/power-timeline"
    async with httpx.AsyncClient(verify=client_context(engine.cert.ca_file)) as c:
        assert (await c.get(url)).status_code == 401
    timelines = await downtime.ovirt_power_timelines(
        engine.api_url, user="admin@internal", password="secret", ca_file=engine.cert.ca_file
    )
    got = timelines[web.id]
    assert (got.name, got.source) == ("web-1", "ovirt")
    assert list(got.changes) == [tuple(c) for c in web.power.changes]
    assert got.timeline == [(c.at, c.state) for c in web.power.changes]
    assert engine.logouts >= 1  # the helper's SSO token is given back
    spec = StackSpec(workdir=tmp_path, nats_url="", database_url="", token="")
    stack = Stack(spec)
    stack.engine = engine  # a stack with the engine only (nothing else is started)
    assert (await stack.power_timelines())[web.id] == got
