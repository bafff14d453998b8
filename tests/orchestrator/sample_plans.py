"""Started plans as the planner freezes them, for the manifest builders' tests.

The VMs' ``detail`` is what the planner's own ``shaping.machine()`` makes of inventory items
shaped as the inventory normalizes oVirt and OpenStack VMs, so a change of that vocabulary
shows up here rather than in a running migration.
"""

from __future__ import annotations

from typing import Any

from services.planner import shaping
from shared.payloads import (
    PlannedDisk,
    PlannedNic,
    PlannedVm,
    PlanStarted,
    ProviderRef,
    ProviderType,
    ResourceRef,
)
from shared.sizing import GIB, MIB

NAMESPACE = "vms"
PLAN_ID = "0d6f3c3e-9a51-4b8e-8a0e-2f7f3c1b9a11"
MIGRATION_ID = "5b2d9e8a-1c47-4f0e-9d3a-6e8f7a2b4c55"
SERVER_ID = "7f1c2a9e-3b4d-4e5f-8a6b-9c0d1e2f3a4b"
TARGET = ProviderRef(
    id="host",
    type=ProviderType.KUBEVIRT,
    url="https://kubernetes.default.svc",
    secret=ResourceRef(namespace="hoist", name="host"),
)


def _disk(disk_id: str, pvc: str, size: int, **kw: Any) -> PlannedDisk:
    values: dict[str, Any] = {
        "disk_id": disk_id,
        "name": pvc,
        "size_bytes": size,
        "pvc_name": pvc,
        "storage_class": "standard-wffc",
        "volume_mode": "Filesystem",
        "access_mode": "ReadWriteOnce",
    }
    values.update(kw)
    return PlannedDisk(**values)


def ovirt_detail(**data: Any) -> dict[str, object]:
    base: dict[str, Any] = {
        "status": "down",
        "cpu": {"sockets": 2, "cores": 4, "threads": 2},
        "memory": 8 * GIB,
        "firmware": "uefi",
        "bios_type": "q35_secure_boot",
        "secure_boot": True,
        "machine_type": "q35",
        "os_type": "windows_2019x64",
        "description": "the accounting database",
        "tpm": True,
    }
    base.update(data)
    return shaping.machine(ProviderType.OVIRT, {"id": "x", "data": base})


def openstack_detail(**props: Any) -> dict[str, object]:
    data = {
        "powerState": "shutdown",
        "flavor": {"vcpus": 4, "ramMiB": 6144, "diskGiB": 20},
        "boot": "image",
        "imageProperties": {"hw_firmware_type": "uefi", "os_distro": "ubuntu", **props},
        "volumes": [],
        "nics": [],
    }
    return shaping.machine(ProviderType.OPENSTACK, {"id": SERVER_ID, "data": data})


def ovirt_plan(transfer_network: str | None = "vms/transfer") -> PlanStarted:
    """Two oVirt VMs: a UEFI + secure boot Windows VM with three disks on three buses
    (Block and Filesystem) and three NICs (pod, Multus, ignored), and a BIOS i440fx VM."""
    big = PlannedVm(
        vm_id="a1b2c3d4-0000-4000-8000-000000000001",
        name="Accounting DB",
        target_name="accounting-db",
        disks=[
            _disk(
                "d1000000-0000-4000-8000-000000000002",
                "accounting-db-data",
                10 * GIB + 1,
                bus="scsi",
            ),
            _disk(
                "d1000000-0000-4000-8000-000000000001",
                "accounting-db-root",
                40 * GIB,
                boot=True,
                bus="virtio",
                volume_mode="Block",
                access_mode="ReadWriteMany",
                storage_class="standard",
            ),
            _disk(
                "d1000000-0000-4000-8000-000000000003",
                "accounting-db-logs",
                512 * MIB,
                bus="sata",
                volume_mode="Block",
            ),
        ],
        nics=[
            PlannedNic(
                nic_id="n1",
                name="nic1",
                mac="56:6F:05:0F:00:01",
                model="virtio",
                source_network="ovirtmgmt",
                target="pod",
            ),
            PlannedNic(
                nic_id="n2",
                name="nic2",
                mac="56:6f:05:0f:00:02",
                model="e1000",
                source_network="storage",
                target="vms/storage-net",
            ),
            PlannedNic(nic_id="n3", name="nic3", mac=None, source_network="", target="ignored"),
        ],
        source_power_state="off",
        detail=ovirt_detail(),
    )
    small = PlannedVm(
        vm_id="a1b2c3d4-0000-4000-8000-000000000002",
        name="legacy",
        target_name="legacy",
        disks=[
            _disk("d2000000-0000-4000-8000-000000000001", "legacy-disk", GIB, boot=True, bus="ide")
        ],
        nics=[],
        detail=ovirt_detail(
            firmware="bios",
            bios_type="i440fx_sea_bios",
            secure_boot=False,
            machine_type="i440fx",
            os_type="rhel_6x64",
            description="",
            tpm=False,
        ),
    )
    return PlanStarted(
        plan_id=PLAN_ID,
        migration_id=MIGRATION_ID,
        plan_name="ovirt-wave-1",
        source=ProviderRef(
            id="engine",
            type=ProviderType.OVIRT,
            url="https://engine.example.com/ovirt-engine/api",
            secret=ResourceRef(namespace="hoist", name="engine-credentials"),
        ),
        target=TARGET,
        target_namespace=NAMESPACE,
        transfer_network=transfer_network,
        vms=[big, small],
    )


def openstack_plan() -> PlanStarted:
    """One image-backed OpenStack server (root disk ``<uuid>-root``) with a Cinder volume,
    UEFI without secure boot, one NIC on a Multus network."""
    vm = PlannedVm(
        vm_id=SERVER_ID,
        name="web-1",
        target_name="web-1",
        disks=[
            _disk(f"{SERVER_ID}-root", "web-1-root", 20 * GIB, boot=True, source_storage="glance"),
            _disk(
                "c0ffee00-1111-4222-8333-444455556666",
                "web-1-data",
                5 * GIB,
                source_storage="ceph",
                volume_mode="Block",
            ),
        ],
        nics=[
            PlannedNic(
                nic_id="p1",
                name="nic0",
                mac="fa:16:3e:11:22:33",
                model="virtio",
                source_network="net-1",
                target="other/tenant-net",
            ),
        ],
        source_power_state="on",
        detail=openstack_detail(),
    )
    return PlanStarted(
        plan_id=PLAN_ID,
        migration_id=MIGRATION_ID,
        plan_name="openstack-wave-1",
        source=ProviderRef(
            id="cloud",
            type=ProviderType.OPENSTACK,
            url="https://keystone.example.com:5000/v3",
            secret=ResourceRef(namespace="hoist", name="cloud-credentials"),
        ),
        target=TARGET,
        target_namespace=NAMESPACE,
        vms=[vm],
    )


def all_plans() -> list[PlanStarted]:
    return [ovirt_plan(), ovirt_plan(transfer_network=None), openstack_plan()]
