"""The engine's certificate changes (a re-installed engine, or someone in the middle): a
populator holding the old CA or the old fingerprint refuses to talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.populators.ovirt.conftest import creds_env, run_populator
from tests.sim.ovirt.fixtures import disk_spec


@pytest.fixture
async def rotated(tmp_path: Path) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict({"disks": [disk_spec("d1")]})
    async with Engine(inv, faults, tmp_path / "engine") as engine:
        await engine.rotate_certificate()
        yield engine


async def test_old_ca_refused(rotated: Engine, tmp_path: Path) -> None:
    disk = rotated.inv.disk_by_name("d1")
    run = await run_populator(rotated, disk, tmp_path)
    assert run.returncode == 1
    assert "failed TLS verification" in run.last_line
    assert not rotated.inv.transfers


async def test_old_fingerprint_refused(rotated: Engine, tmp_path: Path) -> None:
    disk = rotated.inv.disk_by_name("d1")
    env = creds_env(rotated, cacert="", fingerprint=rotated.cert.fingerprint)
    run = await run_populator(rotated, disk, tmp_path, env)
    assert run.returncode == 1
    assert f"not the pinned {rotated.cert.fingerprint}" in run.last_line
