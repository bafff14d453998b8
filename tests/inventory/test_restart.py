"""A crashed inventory service (SIGKILL) comes back with its providers and inventories, and
its reload of unchanged objects announces nothing."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from sim.ovirt.engine import Engine
from tests.conftest import TOKEN, eventually
from tests.inventory.conftest import PREFIX, api, unique, wait_phase
from tests.inventory.test_service import ovirt_body, small_engine_inventory
from tools.processes import ServiceProcess


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(small_engine_inventory(), [], tmp_path / "engine") as e:
        yield e


async def test_crash_and_restart_resume_quietly(
    inventory: ServiceProcess, engine: Engine, servers: DevServices, tmp_path: Path
) -> None:
    created = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("ov")))
    pid = created.json()["id"]
    before = await wait_phase(inventory, pid, "Ready")
    listing = await api(inventory, "GET", f"/providers/{pid}/vms")

    bus = Bus(NatsSettings(url=servers.nats_url, prefix=PREFIX), source="/tests")
    await bus.connect()
    events: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        events.append(json.loads(msg.data))

    sub = await bus.nc.subscribe(f"{PREFIX}.inventory.provider.{pid}.>", cb=on_msg)
    assert inventory.proc is not None
    inventory.proc.send_signal(signal.SIGKILL)
    await inventory.proc.wait()
    env = {k: v for k, v in inventory.env.items() if k.startswith("HOIST_")}
    env.pop("HOIST_HTTP_PORT")
    again = ServiceProcess("inventory", env, tmp_path, TOKEN)
    await again.start()
    try:
        await again.wait_ready(60)

        async def refreshed() -> bool:
            now = (await api(again, "GET", f"/providers/{pid}")).json()
            return bool(now["status"]["lastRefresh"] > before["status"]["lastRefresh"])

        await eventually(refreshed, within=30, what="a refresh after the restart")
        after = (await api(again, "GET", f"/providers/{pid}")).json()
        assert after["status"]["phase"] == "Ready"
        relisted = await api(again, "GET", f"/providers/{pid}/vms")
        assert relisted.headers["etag"] == listing.headers["etag"]  # no revision moved
        assert relisted.json()["items"] == listing.json()["items"]
        assert not [e for e in events if e["type"].startswith("io.hoist.inventory.object")]
    finally:
        await sub.unsubscribe()
        await bus.drain()
        await again.terminate()
