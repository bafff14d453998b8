"""What ``openstack quota show``, ``limits show``, ``security group list``, ``keypair list``,
``availability zone list`` and ``image list`` read, through openstacksdk unchanged.

(openstacksdk drives these; ``tests/sim/openstack/test_cli.py`` runs the same commands with
python-openstackclient, the ``openstack`` command, from .venv-openstack.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openstack import exceptions as os_exc

from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server


@pytest.fixture
def added(cloud: Cloud, conn: Any) -> Iterator[list[Server]]:
    """Servers a test adds, deleted after it (the other tests count the scenario's)."""
    made: list[Server] = []
    yield made
    for s in made:
        conn.compute.delete_server(s.id)


def test_nova_quota_set_and_its_usage(cloud: Cloud, conn: Any) -> None:
    quota = conn.compute.get_quota_set(cloud.project_id)
    assert (quota.instances, quota.cores, quota.ram, quota.key_pairs) == (10, 20, 51200, 100)
    live = [
        s
        for s in cloud.state.servers.values()
        if s.project_id == cloud.project_id and s.deleted_at is None
    ]
    detail = conn.compute.get_quota_set(cloud.project_id, usage=True)
    assert detail.instances == 10
    assert detail.usage["instances"] == len(live)
    assert detail.usage["cores"] == sum(s.flavor.vcpus for s in live)
    assert detail.usage["ram"] == sum(s.flavor.ram for s in live)
    assert detail.reservation["instances"] == 0
    # openstacksdk asks microversion 2.56: the injected-file quotas are still there, Nova's
    # network proxies (gone at 2.36) are not.
    assert detail.injected_files == 5
    assert detail.floating_ips is None


def test_nova_quota_of_another_project_is_forbidden(conn: Any) -> None:
    with pytest.raises(os_exc.ForbiddenException):
        conn.compute.get_quota_set("0" * 32)


def test_cinder_quota_and_the_413_tell_the_same_story(cloud: Cloud, conn: Any) -> None:
    mine = [v for v in cloud.state.volumes.values() if v.project_id == cloud.project_id]
    quota = conn.block_storage.get_quota_set(cloud.project_id, usage=True)
    assert quota.volumes == -1  # no volume_quota in the scenario: nothing is refused
    assert quota.usage["volumes"] == len(mine)
    assert quota.usage["gigabytes"] >= sum(v.size_gib for v in mine)
    assert quota.usage["volumes_standard"] == len(mine)
    cloud.faults.volume_quota = len(mine)
    quota = conn.block_storage.get_quota_set(cloud.project_id, usage=True)
    assert (quota.volumes, quota.usage["volumes"]) == (len(mine), len(mine))
    with pytest.raises(os_exc.HttpException, match=rf"allowed \({len(mine)}\)") as info:
        conn.block_storage.create_volume(size=1, name="over-quota")
    assert info.value.status_code == 413
    cloud.faults.volume_quota = len(mine) + 1
    vol = conn.block_storage.create_volume(size=1, name="last-one")
    try:
        quota = conn.block_storage.get_quota_set(cloud.project_id, usage=True)
        assert (quota.volumes, quota.usage["volumes"]) == (len(mine) + 1, len(mine) + 1)
        with pytest.raises(os_exc.HttpException, match="VolumeLimitExceeded"):
            conn.block_storage.create_volume(size=1, name="over-quota")
    finally:
        conn.block_storage.delete_volume(vol)
    plain = conn.block_storage.get_quota_set(cloud.project_id)
    assert plain.volumes == len(mine) + 1
    assert not plain.usage


def test_neutron_quota_and_details(cloud: Cloud, conn: Any) -> None:
    quota = conn.network.get_quota(cloud.project_id)
    assert (quota.networks, quota.ports, quota.security_groups) == (100, 500, 10)
    details = conn.network.get_quota(cloud.project_id, details=True)
    ports = [p for p in cloud.state.ports.values() if p.project_id == cloud.project_id]
    assert details.ports == {"limit": 500, "used": len(ports), "reserved": 0}
    assert details.networks["used"] == 1
    assert details.security_groups["used"] == 2  # default and the scenario's "web"
    assert details.security_group_rules["used"] == 4 + 3


def test_limits_show_absolute_limits_and_usage(cloud: Cloud, conn: Any) -> None:
    nova = conn.compute.get_limits().absolute
    live = [s for s in cloud.state.servers.values() if s.deleted_at is None]
    assert (nova.instances, nova.total_cores, nova.total_ram) == (10, 20, 51200)
    assert nova.instances_used == len(live)
    assert nova.total_cores_used == sum(s.flavor.vcpus for s in live)
    # openstacksdk asks no microversion here: 2.1's keys are all there...
    assert (nova.image_meta, nova.security_groups, nova.floating_ips_used) == (128, 10, 0)
    # ... and at 2.57 Nova drops the network proxies, maxImageMeta and the personality.
    new = conn.compute.get("/limits", microversion="2.57").json()["limits"]["absolute"]
    assert {"maxImageMeta", "maxSecurityGroups", "maxPersonality"}.isdisjoint(new)
    assert new["maxTotalInstances"] == 10
    cinder = conn.block_storage.get_limits().absolute
    assert cinder.max_total_volumes == -1
    assert cinder.total_volumes_used == len(cloud.state.volumes)
    cloud.faults.volume_quota = 50
    assert conn.block_storage.get_limits().absolute.max_total_volumes == 50


def test_security_groups_ports_and_servers(cloud: Cloud, conn: Any) -> None:
    groups = {g.name: g for g in conn.network.security_groups()}
    assert set(groups) == {"default", "web"}
    default = groups["default"]
    assert default.description == "Default security group"
    assert default.project_id == cloud.project_id
    rules = {
        (r["direction"], r["ethertype"], r["remote_group_id"]) for r in default.security_group_rules
    }
    assert rules == {
        ("ingress", "IPv4", default.id), ("ingress", "IPv6", default.id),
        ("egress", "IPv4", None), ("egress", "IPv6", None),
    }  # fmt: skip
    ssh = [r for r in conn.network.security_group_rules(security_group_id=groups["web"].id)]
    assert len(ssh) == 3  # Neutron's two egress rules, and the scenario's
    assert any(r.port_range_min == 22 and r.protocol == "tcp" for r in ssh)
    web = next(conn.compute.servers(name="web-1"))
    assert web.security_groups == [{"name": "default"}]
    [port] = conn.network.ports(device_id=web.id)
    assert port.security_group_ids == [default.id]
    assert conn.network.get_security_group(default.id).name == "default"
    with pytest.raises(os_exc.NotFoundException):
        conn.network.get_security_group("0" * 32)


def test_server_in_two_groups_and_a_server_without_ports(
    cloud: Cloud, conn: Any, added: list[Server]
) -> None:
    added.append(
        cloud.add_server(
            sc.Server(
                name="sg-two",
                flavor="m1.small",
                networks=["private"],
                security_groups=["web", "default"],
                root=sc.Disk(size_mib=4, data_mib=1),
            )
        )
    )
    added.append(
        cloud.add_server(
            sc.Server(name="sg-none", flavor="m1.small", root=sc.Disk(size_mib=4, data_mib=1))
        )
    )
    two = conn.compute.get_server(added[0].id)
    assert [g["name"] for g in two.security_groups] == ["web", "default"]
    assert not conn.compute.get_server(added[1].id).security_groups  # Nova leaves it out
    with pytest.raises(ValueError, match="no security group named 'nope'"):
        cloud.add_server(sc.Server(name="x", flavor="m1.small", security_groups=["nope"]))


def test_keypairs_and_server_key_name(cloud: Cloud, conn: Any, added: list[Server]) -> None:
    added.append(
        cloud.add_server(
            sc.Server(
                name="keyed",
                flavor="m1.small",
                key_name="ops",
                root=sc.Disk(size_mib=4, data_mib=1),
            )
        )
    )
    assert conn.compute.get_server(added[0].id).key_name == "ops"
    assert next(conn.compute.servers(name="web-1")).key_name is None
    [pair] = [k for k in conn.compute.keypairs() if k.name == "ops"]
    assert pair.public_key.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
    assert len(pair.fingerprint.split(":")) == 16
    one = conn.compute.get_keypair("ops")
    assert (one.fingerprint, one.type) == (pair.fingerprint, "ssh")
    with pytest.raises(os_exc.NotFoundException):
        conn.compute.get_keypair("missing")


def test_availability_zones(cloud: Cloud, conn: Any, added: list[Server]) -> None:
    added.append(
        cloud.add_server(
            sc.Server(
                name="zoned",
                flavor="m1.small",
                availability_zone="az-2",
                root=sc.Disk(size_mib=4, data_mib=1),
                volumes=[sc.Volume(name="zoned-data", size_mib=4, data_mib=1)],
            )
        )
    )
    assert conn.compute.get_server(added[0].id).availability_zone == "az-2"
    assert next(conn.compute.servers(name="web-1")).availability_zone == "nova"
    nova = {z.name: z.state for z in conn.compute.availability_zones()}
    assert nova == {"az-2": {"available": True}, "nova": {"available": True}}
    cinder = {z.name for z in conn.block_storage.availability_zones()}
    assert cinder == {"az-2", "nova"}
    vol = next(v for v in conn.block_storage.volumes() if v.name == "zoned-data")
    assert vol.availability_zone == "az-2"


def test_boot_images_are_real_glance_images(cloud: Cloud, conn: Any, added: list[Server]) -> None:
    web = next(conn.compute.servers(name="web-1"))
    listed = {i.id: i for i in conn.image.images()}
    assert web.image["id"] in listed
    base = conn.image.get_image(web.image["id"])
    assert (base.status, base.visibility, base.disk_format) == ("active", "public", "raw")
    uefi = sc.Server(
        name="uefi-img",
        flavor="m1.small",
        root=sc.Disk(size_mib=4, data_mib=1),
        image_properties={"hw_firmware_type": "uefi", "os_distro": "fedora"},
    )
    added.append(cloud.add_server(uefi))
    image = conn.image.get_image(conn.compute.get_server(added[0].id).image["id"])
    assert image.status == "active"
    assert image.properties["hw_firmware_type"] == "uefi"
    assert image.os_distro == "fedora"
    assert image.id != base.id
    # Another server with the same properties boots from the same image.
    added.append(cloud.add_server(uefi.model_copy(update={"name": "uefi-img-2"})))
    assert added[1].image_id == image.id
