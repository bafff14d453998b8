"""The simulated cloud through openstacksdk, unchanged: inventory, actions, data paths, faults."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openstack import exceptions as os_exc

from sim.certs import client_context
from sim.openstack.cloud import Cloud
from tests.sim.openstack.fixtures import volume_image, wait_for, wait_image
from tools import downtime
from tools.stack import Stack, StackSpec


def download(conn: Any, image_id: str) -> bytes:
    return bytes(conn.image.download_image(image_id).content)


def test_inventory_as_openstacksdk_reads_it(cloud: Cloud, conn: Any) -> None:
    servers = {s.name: s for s in conn.compute.servers(details=True)}
    assert set(servers) == {"web-1", "db-1"}
    web, db = servers["web-1"], servers["db-1"]
    assert web.status == "ACTIVE"
    assert db.status == "SHUTOFF"
    assert web.flavor.vcpus == 1
    assert web.flavor.original_name == "m1.small"
    assert web.addresses["private"][0]["addr"].startswith("10.0.0.")
    assert web.image["id"]  # image-backed vs boot from volume
    assert not db.image
    assert len(web.attached_volumes) == 1
    assert len(db.attached_volumes) == 1
    attachments = list(conn.compute.volume_attachments(web))
    assert attachments[0].device == "/dev/vdb"  # the root disk is vda
    assert [f.name for f in conn.compute.flavors()] == ["m1.small", "m1.quad"]
    volumes = {v.name: v for v in conn.block_storage.volumes()}
    assert volumes["db-1-root"].is_bootable
    assert volumes["db-1-root"].status == "in-use"
    assert volumes["web-1-data"].size == 1  # 16 MiB of disk, reported in whole GiB
    assert [t.name for t in conn.block_storage.types()] == ["standard"]
    net = next(conn.network.networks(name="private"))
    subnet = next(conn.network.subnets(network_id=net.id))
    assert subnet.cidr == "10.0.0.0/24"
    ports = list(conn.network.ports(device_id=web.id))
    assert len(ports) == 1
    assert ports[0].network_id == net.id
    assert ports[0].fixed_ips[0]["ip_address"] == web.addresses["private"][0]["addr"]


def test_flavor_extra_specs_as_openstacksdk_reads_them(conn: Any) -> None:
    """Nova's CPU topology hints (``hw:cpu_*``) live in extra specs: in the flavor body and
    at ``os-extra_specs``, where openstacksdk fetches them."""
    quad = conn.compute.find_flavor("m1.quad", ignore_missing=False)
    assert quad.vcpus == 4
    assert conn.compute.fetch_flavor_extra_specs(quad).extra_specs == {"hw:cpu_sockets": "2"}
    small = conn.compute.find_flavor("m1.small", ignore_missing=False)
    assert conn.compute.fetch_flavor_extra_specs(small).extra_specs == {}


def test_stop_and_start(conn: Any) -> None:
    web = next(conn.compute.servers(name="web-1"))
    conn.compute.stop_server(web)
    assert conn.compute.get_server(web.id).status == "SHUTOFF"
    with pytest.raises(os_exc.ConflictException):
        conn.compute.stop_server(web)
    conn.compute.start_server(web)
    assert conn.compute.get_server(web.id).status == "ACTIVE"


def test_calls_need_a_token_keystone_accepts(cloud: Cloud) -> None:
    url = f"{cloud.sim_url}/compute/v2.1/servers"
    with httpx.Client(verify=client_context(cloud.ca_file)) as c:
        assert c.get(url).status_code == 401
        assert c.get(url, headers={"X-Auth-Token": "forged"}).status_code == 401
        assert c.get(f"{cloud.sim_url}/compute/v2.1/").status_code == 200  # discovery is open


def test_create_image_of_image_backed_server_holds_its_root_disk(cloud: Cloud, conn: Any) -> None:
    web = next(conn.compute.servers(name="web-1"))
    image = conn.compute.create_server_image(web, "snap-web-1", wait=True)
    image = wait_image(conn, image.id)
    root = cloud.state.servers[web.id].root_path
    assert root is not None
    assert image.size == root.stat().st_size
    assert image.hash_algo == "sha512"
    assert image.instance_uuid == web.id
    assert download(conn, image.id) == root.read_bytes()


def test_create_image_of_volume_backed_server_snapshots_its_volumes(
    cloud: Cloud, conn: Any
) -> None:
    db = next(conn.compute.servers(name="db-1"))
    image = wait_image(conn, conn.compute.create_server_image(db, "snap-db-1").id)
    assert image.size == 0
    assert "block_device_mapping" in image.properties
    snaps = [s for s in conn.block_storage.snapshots() if s.name == "snapshot for snap-db-1"]
    assert len(snaps) == 1
    assert snaps[0].status == "available"
    # Forklift's path for such a server: volume from the snapshot, then upload it.
    vol = conn.block_storage.create_volume(size=1, snapshot_id=snaps[0].id, name="from-snap")
    wait_for(lambda: conn.block_storage.get_volume(vol.id).status == "available", "volume")
    source = cloud.state.volumes[snaps[0].volume_id].path.read_bytes()
    assert cloud.state.volumes[vol.id].path.read_bytes() == source
    image_id = volume_image(conn, "from-snap", "from-snap-image")
    assert download(conn, image_id) == source
    conn.block_storage.delete_volume(vol.id)


def test_volume_upload_image_puts_the_volume_bytes_into_glance(cloud: Cloud, conn: Any) -> None:
    image_id = volume_image(conn, "web-1-data", "web-1-data-image")
    vol = next(v for v in cloud.state.volumes.values() if v.name == "web-1-data")
    # Back from "uploading" once the upload task ends, which may be just after Glance
    # marks the image active (as in Cinder, the two are not one step).
    wait_for(lambda: vol.status == "in-use", "the volume back from uploading")
    assert download(conn, image_id) == vol.path.read_bytes()


def test_snapshot_of_attached_volume_needs_force(conn: Any) -> None:
    vol = next(v for v in conn.block_storage.volumes() if v.name == "web-1-data")
    with pytest.raises(os_exc.BadRequestException, match="status must be available"):
        conn.block_storage.create_snapshot(volume_id=vol.id)
    snap = conn.block_storage.create_snapshot(volume_id=vol.id, force=True, name="forced")
    assert snap.status == "available"
    conn.block_storage.delete_snapshot(snap)


def test_quota_exceeded_is_a_413_overlimit(cloud: Cloud, conn: Any) -> None:
    cloud.faults.volume_quota = len(cloud.state.volumes)
    with pytest.raises(os_exc.HttpException, match="VolumeLimitExceeded") as info:
        conn.block_storage.create_volume(size=1, name="over-quota")
    assert info.value.status_code == 413
    assert "quota:volumes" in cloud.faults.injected


def test_5xx_burst_then_recovery(cloud: Cloud, conn: Any) -> None:
    server_id = next(iter(cloud.state.servers))
    conn.compute.get_server(server_id)  # version discovery done
    cloud.faults.fail_next = {"compute": 2}
    for _ in range(2):
        with pytest.raises(os_exc.HttpException) as info:
            conn.compute.get_server(server_id)
        assert info.value.status_code == 503
    assert conn.compute.get_server(server_id).id == server_id
    assert cloud.faults.injected.count("compute:503") == 2


def test_image_stuck_in_saving_until_the_fault_clears(cloud: Cloud, conn: Any) -> None:
    cloud.faults.stuck_saving = True
    vol = next(v for v in conn.block_storage.volumes() if v.name == "web-1-data")
    out = conn.block_storage.upload_volume_to_image(vol, "stuck", force=True, disk_format="raw")
    wait_image(conn, out["image_id"], "saving")
    assert conn.block_storage.get_volume(vol.id).status == "uploading"
    cloud.faults.stuck_saving = False
    wait_image(conn, out["image_id"], "active")


def test_faults_can_be_set_over_http_with_a_valid_token(cloud: Cloud, conn: Any) -> None:
    url = f"{cloud.sim_url}/sim/faults"
    with httpx.Client(verify=client_context(cloud.ca_file)) as c:
        assert c.post(url, json={"volume_quota": 1}).status_code == 401
        headers = {"X-Auth-Token": conn.session.get_token()}
        assert c.post(url, json={"volume_quota": 1}, headers=headers).status_code == 200
        assert cloud.faults.volume_quota == 1
        assert c.post(url, json={"clear": True}, headers=headers).status_code == 200
        assert cloud.faults.volume_quota is None
        assert c.post(url, json={"no_such_fault": 1}, headers=headers).status_code == 400


def test_stop_and_start_make_the_power_timeline_down_then_up(cloud: Cloud, conn: Any) -> None:
    web = next(conn.compute.servers(name="web-1"))
    power = cloud.state.servers[web.id].power
    assert power.changes[0].state == "up"  # its scenario status, from the start
    count = len(power.changes)
    assert power.changes[-1].state == "up"
    before = time.time()
    conn.compute.stop_server(web)
    with pytest.raises(os_exc.ConflictException):
        conn.compute.stop_server(web)  # refused: nothing to record
    conn.compute.start_server(web)
    after = time.time()
    new = power.changes[count:]
    assert [(c.state, c.status) for c in new] == [("down", "SHUTOFF"), ("up", "ACTIVE")]
    assert before <= new[0].at < new[1].at <= after
    db = next(conn.compute.servers(name="db-1"))
    assert cloud.state.servers[db.id].power.changes[0][1:] == ("down", "SHUTOFF")


def test_set_server_status_is_down_unless_the_guest_runs(cloud: Cloud, conn: Any) -> None:
    web = next(conn.compute.servers(name="web-1"))
    power = cloud.state.servers[web.id].power
    count = len(power.changes)
    cloud.state.set_server_status(web.id, "RESIZE")  # still running: nothing new
    cloud.state.set_server_status(web.id, "PAUSED")
    cloud.state.set_server_status(web.id, "ACTIVE")
    assert [(c.state, c.status) for c in power.changes[count:]] == [
        ("down", "PAUSED"),
        ("up", "ACTIVE"),
    ]


async def test_power_timeline_over_http_needs_a_token(
    cloud: Cloud, conn: Any, tmp_path: Path
) -> None:
    url = f"{cloud.sim_url}/sim/power-timeline"
    async with httpx.AsyncClient(verify=client_context(cloud.ca_file)) as c:
        assert (await c.get(url)).status_code == 401
    token = await asyncio.to_thread(conn.session.get_token)
    timelines = await downtime.openstack_power_timelines(
        cloud.sim_url, token=token, ca_file=cloud.ca_file
    )
    servers = {s.id: s for s in cloud.state.servers.values()}
    assert set(timelines) == set(servers)
    for sid, got in timelines.items():
        assert (got.name, got.source) == (servers[sid].name, "openstack")
        assert list(got.changes) == [tuple(c) for c in servers[sid].power.changes]
    stack = Stack(StackSpec(workdir=tmp_path, nats_url="", database_url="", token=""), cloud=cloud)
    assert await stack.power_timelines() == timelines  # nothing else is started
