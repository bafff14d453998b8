"""The oVirt source against the simulated engine: state, blockers, power, TLS, errors.

One VM per test that changes power state, so the order of the tests does not matter.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from services.orchestrator.sources.connecting import connect
from services.orchestrator.sources.contract import Power, Source, SourceError
from shared.payloads import PlannedVm, ProviderType
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.entities import Phase, Vm
from sim.ovirt.scenario import Fault
from tests.conftest import eventually
from tests.orchestrator.sources.conftest import SETTINGS, planned, provider
from tests.sim.ovirt.fixtures import disk_spec


def _vm(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "disks": [disk_spec(f"{name}-root")], **extra}


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict(
        {
            "vms": [
                _vm("up-1", disks=[disk_spec("up-1-root"), disk_spec("up-1-data")]),
                _vm("shut-1"),
                _vm("deaf-1", acpi=False),
                _vm("stop-1"),
                _vm("start-1", status="down"),
                _vm("locked-1", disks=[disk_spec("locked-1-root", status="locked")]),
                _vm("snap-1", snapshots=[{"description": "nightly", "status": "locked"}]),
                _vm("migrating-1", status="migrating"),
                _vm(
                    "backup-1",
                    disks=[disk_spec("backup-1-root", format="cow", backup="incremental")],
                ),
            ]
        }
    )
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


def secret(engine: Engine, **overrides: str) -> dict[str, str]:
    base = {"user": "admin@internal", "password": "secret", "cacert": engine.cert.ca_pem}
    return {k: v for k, v in {**base, **overrides}.items() if v}


@pytest.fixture
async def source(engine: Engine) -> AsyncIterator[Source]:
    s = await connect(provider(ProviderType.OVIRT, engine.api_url), secret(engine), SETTINGS)
    yield s
    await s.close()


def vm_named(engine: Engine, name: str) -> Vm:
    return next(v for v in engine.inv.vms.values() if v.name == name)


def plan_of(engine: Engine, name: str) -> PlannedVm:
    vm = vm_named(engine, name)
    return planned(vm.id, name, [(a.disk_id, "data") for a in vm.disk_attachments])


async def power(source: Source, engine: Engine, name: str) -> Power:
    """As PowerOffSource polls it: the VM's power alone."""
    return (await source.power_state(vm_named(engine, name).id)).power


async def test_inspect_an_up_vm(source: Source, engine: Engine) -> None:
    vm = vm_named(engine, "up-1")
    found = await source.inspect(plan_of(engine, "up-1"))
    assert (found.vm_id, found.name, found.power, found.status) == (vm.id, "up-1", Power.ON, "up")
    assert found.disk_ids == tuple(a.disk_id for a in vm.disk_attachments)
    assert found.blockers == ()
    alone = await source.power_state(vm.id)
    assert (alone.vm_id, alone.name, alone.power, alone.status) == (vm.id, "up-1", Power.ON, "up")
    assert (await source.convert("m-1", plan_of(engine, "up-1"))).done
    await source.remove_artifacts("m-1", plan_of(engine, "up-1"))  # nothing to remove


async def test_shutdown_powers_off_a_guest_that_honours_acpi(
    source: Source, engine: Engine
) -> None:
    vm = vm_named(engine, "shut-1")
    await source.shutdown(vm.id)

    async def off() -> bool:
        return await power(source, engine, "shut-1") is Power.OFF

    await eventually(off, what="shut-1 off")
    await source.shutdown(vm.id)  # a down VM: nothing to do, no error
    assert vm.status == "down"


async def test_a_guest_ignoring_acpi_stays_up_until_stopped(source: Source, engine: Engine) -> None:
    vm = vm_named(engine, "deaf-1")
    await source.shutdown(vm.id)

    def refused() -> bool:  # VM_POWER_DOWN_FAILED, once the guest did not react
        return any(e.code == 147 for e in engine.inv.events if e.vm_id == vm.id)

    await eventually(refused, what="the engine reporting the failed shutdown")
    assert (await source.inspect(plan_of(engine, "deaf-1"))).power is Power.ON
    await source.stop(vm.id)

    async def off() -> bool:
        return await power(source, engine, "deaf-1") is Power.OFF

    await eventually(off, what="deaf-1 forced off")


async def test_stop_and_start(source: Source, engine: Engine) -> None:
    stop_me, start_me = vm_named(engine, "stop-1"), vm_named(engine, "start-1")
    await source.stop(stop_me.id)
    await source.start(start_me.id)

    async def settled() -> bool:
        stopped = await power(source, engine, "stop-1")
        started = await power(source, engine, "start-1")
        return stopped is Power.OFF and started is Power.ON

    await eventually(settled, what="stop-1 off and start-1 on")
    await source.stop(stop_me.id)  # again: already down
    await source.start(start_me.id)  # again: already up
    assert (start_me.status, stop_me.status) == ("up", "down")


async def test_start_waits_for_a_vm_powering_down(source: Source, engine: Engine) -> None:
    vm = vm_named(engine, "start-1")
    await eventually(lambda: vm.status == "up", what="start-1 up (test_stop_and_start)")
    await source.stop(vm.id)
    assert vm.status == "powering_down"  # the simulator's first step, before any await
    with pytest.raises(SourceError) as err:
        await source.start(vm.id)
    assert (err.value.reason, err.value.permanent) == ("SourceBusy", False)
    await eventually(lambda: vm.status == "down", what="start-1 down")
    await source.start(vm.id)
    await eventually(lambda: vm.status == "up", what="start-1 up again")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("locked-1", "disk locked-1-root"),
        ("snap-1", "snapshot 'nightly' is being created or removed"),
        ("migrating-1", "the VM is migrating between hosts"),
    ],
)
async def test_blockers(source: Source, engine: Engine, name: str, expected: str) -> None:
    found = await source.inspect(plan_of(engine, name))
    assert any(expected in b for b in found.blockers), found.blockers
    if name == "migrating-1":
        assert found.power is Power.OTHER


def start_download(engine: Engine, disk_id: str) -> str:
    """An image transfer of the disk, made through the API as a populator makes it."""
    conn = sdk.Connection(
        url=engine.api_url,
        username="admin@internal",
        password="secret",
        ca_file=str(engine.cert.ca_file),
    )
    try:
        transfer = (
            conn.system_service()
            .image_transfers_service()
            .add(
                types.ImageTransfer(
                    disk=types.Disk(id=disk_id), direction=types.ImageTransferDirection.DOWNLOAD
                )
            )
        )
        return str(transfer.id)
    finally:
        conn.close()


async def test_a_transfer_in_progress_and_a_detached_disk_are_blockers(
    source: Source, engine: Engine
) -> None:
    vm = vm_named(engine, "up-1")
    data_disk = vm.disk_attachments[1].disk_id
    plan = plan_of(engine, "up-1")
    with_gone = planned(vm.id, "up-1", [(d.disk_id, "data") for d in plan.disks] + [("gone", "")])
    transfer_id = await asyncio.to_thread(start_download, engine, data_disk)
    try:
        found = await source.inspect(with_gone)
        assert any(f"image transfer {transfer_id}" in b for b in found.blockers), found.blockers
        assert any("disk gone of the plan is no longer attached" in b for b in found.blockers)
    finally:  # as a finished download leaves them, for the other tests
        engine.inv.transfers[transfer_id].phase = Phase.FINISHED_CLEANUP
        engine.inv.disks[data_disk].status = "ok"


async def test_a_vm_gone_is_permanent(source: Source) -> None:
    missing = planned("00000000-0000-4000-8000-000000000000", "ghost", [])
    calls = (
        source.inspect(missing),
        source.power_state(missing.vm_id),
        source.stop(missing.vm_id),
        source.start(missing.vm_id),
    )
    for call in calls:
        with pytest.raises(SourceError) as err:
            await call
        assert (err.value.reason, err.value.permanent) == ("VmNotFound", True)


async def test_tls_pinning_by_fingerprint(engine: Engine) -> None:
    pinned = secret(engine, cacert="", fingerprint="")
    ref = provider(ProviderType.OVIRT, engine.api_url, fingerprint=engine.cert.fingerprint)
    source = await connect(ref, pinned, SETTINGS)
    try:
        assert (await source.inspect(plan_of(engine, "up-1"))).power is Power.ON
    finally:
        await source.close()
    wrong = "AB:" * 31 + "AB"
    with pytest.raises(SourceError) as err:
        await connect(
            provider(ProviderType.OVIRT, engine.api_url), {**pinned, "fingerprint": wrong}, SETTINGS
        )
    assert (err.value.reason, err.value.permanent) == ("TlsCertificateChanged", True)
    with pytest.raises(SourceError) as err:  # no CA, no pin: the engine's CA is not trusted
        await connect(provider(ProviderType.OVIRT, engine.api_url), pinned, SETTINGS)
    assert (err.value.reason, err.value.permanent) == ("TlsUntrusted", True)


async def test_wrong_password_is_permanent(engine: Engine) -> None:
    with pytest.raises(SourceError) as err:
        await connect(
            provider(ProviderType.OVIRT, engine.api_url), secret(engine, password="no"), SETTINGS
        )
    assert (err.value.reason, err.value.permanent) == ("AuthFailed", True)
    assert "no" not in err.value.message.split()  # the password is never echoed


async def _backed_up(source: Any, vm_id: str, backup_id: str, disks: list[str], start: str) -> Any:
    """Start a backup and follow it until it is ready or failed."""
    await source.start_backup(vm_id, backup_id, disks, start)

    async def settled() -> bool:
        got = await source.backup(vm_id, backup_id)
        return got is not None and got.phase in ("ready", "failed")

    await eventually(settled, within=30, what=f"backup {backup_id} ready or failed")
    return await source.backup(vm_id, backup_id)


async def test_a_backup_whose_checkpoint_chain_broke_says_a_full_one_must_follow(
    source: Source, engine: Engine
) -> None:
    """The engine fails a backup from a checkpoint whose chain lost a link with the event
    "full backup is now needed": the source says so, so the next backup is a full one."""
    vm = vm_named(engine, "backup-1")
    disks = [a.disk_id for a in vm.disk_attachments]
    first = await _backed_up(source, vm.id, str(uuid.uuid4()), disks, "")
    assert first.phase == "ready"
    assert not first.needs_full
    await source.finalize_backup(vm.id, first.id)  # type: ignore[attr-defined]
    await eventually(lambda: engine.inv.backups[first.id].phase.value == "succeeded")
    engine.add_fault(Fault("checkpoint_missing", disk=engine.inv.disks[disks[0]].name))
    second = await _backed_up(source, vm.id, str(uuid.uuid4()), disks, first.to_checkpoint)
    await source.finalize_backup(vm.id, second.id)  # type: ignore[attr-defined]
    await eventually(lambda: engine.inv.backups[second.id].phase.value in ("succeeded", "failed"))
    third = await _backed_up(source, vm.id, str(uuid.uuid4()), disks, first.to_checkpoint)
    assert third.phase == "failed", third
    assert third.needs_full, third


async def test_an_engine_down_for_maintenance_is_waited_for(source: Source, engine: Engine) -> None:
    """Apache answers 503 for a stopped engine (docs/ovirt.md, faults): the source reports
    it as temporary (the pipeline retries the step) and works again once the engine is up."""
    vm = plan_of(engine, "up-1")
    refused = engine.maintenance.refused
    engine.add_fault(Fault("maintenance", seconds=120))
    try:
        with pytest.raises(SourceError) as err:
            await source.inspect(vm)
        assert (err.value.reason, err.value.permanent) == ("SourceUnavailable", False)
        assert "503" in err.value.message
        assert "retry" in err.value.message
        assert engine.maintenance.refused > refused
    finally:
        engine.maintenance.end()
    assert (await source.inspect(vm)).power == Power.ON
