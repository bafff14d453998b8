"""A migrated VM boots: a real Debian guest (``tools/guestimage.py``) migrated from oVirt
through the APIs, then booted from its target volumes as its KubeVirt VirtualMachine
describes it (``tools/bootcheck.py``). The guest itself reports, from its serial console,
what it sees, and that must be what the source VM had: its CPUs and RAM, BIOS, both disks
(by serial) with every ``/etc/fstab`` filesystem mounted, the data disk by its UUID, and its
NIC's MAC. Every kind of guest from both sources boots in
``make demo SCENARIO=tools/scenarios/guests.yaml``; the suite boots one from each source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.openstack.state import Server
from tests.e2e.conftest import NAMESPACE, create_plan, start, vms_of, wait_migration
from tests.e2e.test_ovirt import source_vm, target_vm
from tools import bootcheck, guestimage, vmcheck
from tools.stack import Stack


async def test_a_migrated_guest_boots_with_its_disks_mounted_and_its_nic(
    stack: Stack,
    providers: dict[str, str],
    maps: dict[str, tuple[str, str]],
    guests: guestimage.GuestSet | guestimage.GuestBuildError,
    tmp_path: Path,
) -> None:
    if isinstance(guests, guestimage.GuestBuildError):
        pytest.fail(f"the guests could not be built (make guests): {guests}")
    engine = stack.engine
    assert engine is not None
    src = source_vm(engine, "guest")
    expected = vmcheck.from_ovirt(engine.inv, src, {"prod": "pod"}, "auto")
    plan = await create_plan(stack, providers, maps, "ovirt", ["guest"])
    migration = await start(stack, plan)
    ended = await wait_migration(stack, plan, migration["id"], within=600)
    assert ended["phase"] == "Succeeded", ended
    vm = await target_vm(stack, (await vms_of(stack, plan))["guest"]["targetName"])
    result = await _boot(stack, vm, expected, tmp_path)
    report = result.report
    assert report is not None
    assert report["data"] == guests.manifest()["dataMarker"]
    data = next(m for m in report["mounts"] if m["target"] == "/data")
    assert data["uuid"] == guestimage.UUIDS["data"]
    assert report["macs"] == [nic.mac for nic in src.nics]


async def test_a_guest_booting_from_a_cinder_volume_boots_after_its_migration(
    stack: Stack,
    providers: dict[str, str],
    maps: dict[str, tuple[str, str]],
    servers_made: dict[str, Server],
    guests: guestimage.GuestSet | guestimage.GuestBuildError,
    tmp_path: Path,
) -> None:
    if isinstance(guests, guestimage.GuestBuildError):
        pytest.fail(f"the guests could not be built (make guests): {guests}")
    assert stack.cloud is not None
    server = servers_made["e2e-guest"]
    expected = vmcheck.from_openstack(stack.cloud.state, server, {"private": "pod"}, "auto")
    plan = await create_plan(stack, providers, maps, "openstack", [server.name])
    migration = await start(stack, plan)
    ended = await wait_migration(stack, plan, migration["id"], within=600)
    assert ended["phase"] == "Succeeded", ended
    vm = await target_vm(stack, (await vms_of(stack, plan))[server.name]["targetName"])
    result = await _boot(stack, vm, expected, tmp_path)
    assert result.report is not None
    assert [m["target"] for m in result.report["fstab"]] == ["/", "/data"]


async def _boot(
    stack: Stack, vm: dict[str, Any], expected: vmcheck.ExpectedVm, tmp_path: Path
) -> bootcheck.BootResult:
    files = {
        v["persistentVolumeClaim"]["claimName"]: await stack.volume_file(
            NAMESPACE, v["persistentVolumeClaim"]["claimName"]
        )
        for v in vm["spec"]["template"]["spec"]["volumes"]
    }
    result = await bootcheck.boot(vm["metadata"]["name"], vm, files, expected, tmp_path / "boot")
    assert result.passed, result.json()
    return result
