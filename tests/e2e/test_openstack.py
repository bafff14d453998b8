"""OpenStack end to end, through the APIs only: an image-backed server (its root disk through
a Nova snapshot in Glance, its data volume through Cinder) and a boot-from-volume server
migrate; every disk arrives byte for byte and each VirtualMachine is valid and carries the
flavor's CPUs and memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.cli.conftest import cli_env, run_cli
from tests.e2e.conftest import create_plan, start, vms_of, wait_migration
from tests.e2e.test_ovirt import VALIDATOR, VM_KIND, _bytes, claim_of, target_vm
from tests.sim.imagefiles import guest_bytes
from tools.stack import Stack
from tools.verifying import compare_disk


def source_files(cloud: Cloud, server: Server) -> dict[str, Path]:
    """disk id (as the inventory names it) -> the file holding its bytes in the cloud."""
    out: dict[str, Path] = {}
    if server.root_path is not None:
        out[f"{server.id}-root"] = server.root_path
    for vol_id in server.volume_ids:
        out[vol_id] = Path(cloud.state.volumes[vol_id].path)
    return out


async def test_image_backed_and_boot_from_volume_servers_migrate(
    stack: Stack,
    cloud: Cloud,
    servers_made: dict[str, Server],
    providers: dict[str, str],
    maps: dict[str, tuple[str, str]],
    user_image: Path,
    tmp_path: Path,
) -> None:
    web, bfv = servers_made["e2e-web"], servers_made["e2e-bfv"]
    assert web.root_path is not None  # the user's image, raw: the bytes the claim must hold
    assert web.root_path.read_bytes() == await asyncio.to_thread(guest_bytes, user_image)
    plan = await create_plan(stack, providers, maps, "openstack", [web.name, bfv.name])
    migration = await start(stack, plan)
    # Followed as a user follows it: `hoist watch`, whose exit code says how it ended.
    env = cli_env(tmp_path, **stack.cli_env())
    watched = await run_cli(
        ["watch", plan["name"], "-o", "json", "--interval", "0.5"], env, guard=400
    )
    assert watched.code == 0, watched
    lines = watched.lines()
    assert lines[-1]["type"] == "summary", lines[-1]
    assert lines[-1]["succeeded"] is True
    assert sorted(v["name"] for v in lines[-1]["vms"]) == sorted([web.name, bfv.name])
    ended = await wait_migration(stack, plan, migration["id"], within=300)
    assert ended["phase"] == "Succeeded", ended
    views = await vms_of(stack, plan)
    for server in (web, bfv):
        files = source_files(cloud, server)
        assert len(files) == (2 if server is web else 1), files
        for disk_id, source in files.items():
            claim = await claim_of(stack, server.id, disk_id)
            copy = await stack.volume_file("migrated", claim)
            size = source.stat().st_size
            # The claim may be larger than the image (a flavor's root disk size, GiB
            # rounding): the image's bytes first, then nothing but zeros.
            same = await asyncio.to_thread(compare_disk, source, "raw", copy, size)
            assert same.match, (server.name, disk_id, same)
            # qemu-img compare also requires the claim's tail past the image to be zeros.
            assert same.qemu_identical, (server.name, disk_id, same.qemu_compare)
        vm = await target_vm(stack, views[server.name]["targetName"])
        assert VM_KIND is not None
        assert VALIDATOR.check(VM_KIND, vm) == [], vm
        domain = vm["spec"]["template"]["spec"]["domain"]
        flavor = server.flavor
        cpu = domain["cpu"]
        assert cpu["sockets"] * cpu["cores"] * cpu["threads"] == flavor.vcpus
        assert _bytes(domain["memory"]["guest"]) == flavor.ram << 20
        assert len(domain["devices"]["disks"]) == len(files)
    assert (await target_vm(stack, views[bfv.name]["targetName"]))["spec"][
        "runStrategy"
    ] == "Halted"  # it was shut off
