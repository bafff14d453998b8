"""The VirtualMachine VirtualMachineCreation makes: each mapping from the source's
configuration, KubeVirt's published schema (strict), and a simulated cluster admitting it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from services.orchestrator.virtualmachines import virtual_machine
from shared import populator as contract
from shared.payloads import PlannedNic, PlannedVm, PlanStarted, ProviderType
from shared.sizing import MIB
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.kinds import BUILTIN, Registry
from sim.kube.validation import Validator
from tests.conftest import kube_client
from tests.orchestrator import sample_plans
from tests.orchestrator.sample_plans import NAMESPACE

VM_KIND = Registry(BUILTIN).by_kind("kubevirt.io", "VirtualMachine")
VALIDATOR = Validator(strict=True)


def build(started: PlanStarted, vm: PlannedVm, running: bool = False) -> dict[str, Any]:
    obj = virtual_machine(started, vm, {}, running=running)
    assert VM_KIND is not None
    assert VALIDATOR.check(VM_KIND, obj) == [], obj
    return obj


def domain(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]["template"]["spec"]["domain"]
    return result


def test_every_sample_vm_passes_the_kubevirt_schema() -> None:
    for started in sample_plans.all_plans():
        for vm in started.vms:
            for running in (True, False):
                obj = build(started, vm, running)
                assert obj["spec"]["runStrategy"] == ("Always" if running else "Halted")
                assert "running" not in obj["spec"]
    bad = build(sample_plans.openstack_plan(), sample_plans.openstack_plan().vms[0])
    domain(bad)["cpu"]["surprise"] = 1
    assert VM_KIND is not None
    assert VALIDATOR.check(VM_KIND, bad)  # the check has teeth


def test_uefi_with_secure_boot_enables_smm_on_q35() -> None:
    started = sample_plans.ovirt_plan()
    d = domain(build(started, started.vms[0]))
    assert d["firmware"]["bootloader"] == {"efi": {"secureBoot": True}}
    assert d["firmware"]["uuid"] == started.vms[0].vm_id
    assert d["features"]["smm"] == {"enabled": True}
    assert d["features"]["acpi"] == {}
    assert d["machine"] == {"type": "q35"}
    assert d["cpu"] == {"sockets": 2, "cores": 4, "threads": 2}
    assert d["memory"] == {"guest": "8Gi"}
    assert d["resources"] == {"requests": {"memory": "8Gi"}}


def test_plain_uefi_says_no_secure_boot_explicitly() -> None:
    started = sample_plans.openstack_plan()
    d = domain(build(started, started.vms[0]))
    # KubeVirt's default for secureBoot is true: leaving it out would break the guest.
    assert d["firmware"]["bootloader"] == {"efi": {"secureBoot": False}}
    assert "smm" not in d["features"]
    assert d["cpu"] == {"sockets": 4, "cores": 1, "threads": 1}  # the flavor's vCPUs
    assert d["memory"] == {"guest": "6Gi"}


def test_bios_i440fx_guest_moves_to_q35_with_sata_for_ide() -> None:
    started = sample_plans.ovirt_plan()
    legacy = started.vms[1]
    assert legacy.detail["machineType"] == "i440fx"
    d = domain(build(started, legacy))
    assert d["firmware"]["bootloader"] == {"bios": {}}
    assert d["machine"] == {"type": "q35"}
    assert d["devices"]["disks"][0]["disk"] == {"bus": "sata"}
    assert "hyperv" not in d["features"]
    assert "clock" not in d


@pytest.mark.parametrize("machine", ["pc-q35-rhel8.6.0", "pc-i440fx-2.12", "pc", None, ""])
def test_any_source_machine_type_becomes_q35(machine: str | None) -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[1].model_copy(
        update={"detail": sample_plans.ovirt_detail(machine_type=machine)}
    )
    assert domain(build(started, vm))["machine"] == {"type": "q35"}


def test_disks_boot_disk_first_with_buses_serials_and_claims() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    obj = virtual_machine(started, vm, {vm.disks[2].disk_id: "renamed-logs"}, running=False)
    spec = obj["spec"]["template"]["spec"]
    disks = spec["domain"]["devices"]["disks"]
    # The plan lists data, root (boot), logs; the VM boots from root and only from it.
    assert [d["name"] for d in disks] == ["disk-1", "disk-0", "disk-2"]
    assert [d.get("bootOrder") for d in disks] == [1, None, None]
    assert [d["disk"]["bus"] for d in disks] == ["virtio", "scsi", "sata"]
    assert [d["serial"] for d in disks] == [vm.disks[1].disk_id, vm.disks[0].disk_id,
                                            vm.disks[2].disk_id]  # fmt: skip
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    assert volumes == {
        "disk-0": "accounting-db-data",
        "disk-1": "accounting-db-root",
        "disk-2": "renamed-logs",
    }


def test_openstack_image_root_disk_has_no_serial_and_volumes_keep_theirs() -> None:
    started = sample_plans.openstack_plan()
    disks = domain(build(started, started.vms[0]))["devices"]["disks"]
    assert disks[0] == {"name": "disk-0", "disk": {"bus": "virtio"}, "bootOrder": 1}
    assert disks[1]["serial"] == "c0ffee00-1111-4222-8333-444455556666"


def test_without_a_boot_flag_the_first_disk_boots() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    vm = vm.model_copy(update={"disks": [d.model_copy(update={"boot": False}) for d in vm.disks]})
    disks = domain(build(started, vm))["devices"]["disks"]
    assert [(d["name"], d.get("bootOrder")) for d in disks] == [
        ("disk-0", 1), ("disk-1", None), ("disk-2", None),
    ]  # fmt: skip


def test_nics_follow_the_network_map() -> None:
    started = sample_plans.ovirt_plan()
    spec = build(started, started.vms[0])["spec"]["template"]["spec"]
    assert spec["domain"]["devices"]["interfaces"] == [
        {"name": "nic-0", "model": "virtio", "macAddress": "56:6f:05:0f:00:01", "masquerade": {}},
        {"name": "nic-1", "model": "e1000", "macAddress": "56:6f:05:0f:00:02", "bridge": {}},
    ]  # the ignored third NIC is left out
    assert spec["networks"] == [
        {"name": "nic-0", "pod": {}},
        {"name": "nic-1", "multus": {"networkName": "vms/storage-net"}},
    ]
    assert "autoattachPodInterface" not in spec["domain"]["devices"]


def test_a_vm_without_nics_gets_no_pod_nic() -> None:
    started = sample_plans.ovirt_plan()
    devices = domain(build(started, started.vms[1]))["devices"]
    assert devices["interfaces"] == []
    assert devices["autoattachPodInterface"] is False


def test_odd_nics_degrade_and_two_pod_nics_are_refused() -> None:
    started = sample_plans.ovirt_plan()
    odd = [
        PlannedNic(nic_id="a", mac="not-a-mac", model="vmxnet3", source_network="x", target="pod"),
        PlannedNic(nic_id="b", mac="FA-16-3E-00-00-01", model="ne2k-pci", source_network="y",
                   target="other/net"),
    ]  # fmt: skip
    vm = started.vms[1].model_copy(update={"nics": odd})
    interfaces = domain(build(started, vm))["devices"]["interfaces"]
    assert interfaces == [
        {"name": "nic-0", "model": "virtio", "masquerade": {}},
        {"name": "nic-1", "model": "ne2k_pci", "macAddress": "fa:16:3e:00:00:01", "bridge": {}},
    ]
    two = [odd[0], odd[0].model_copy(update={"nic_id": "c"})]
    with pytest.raises(ValueError, match="at most one"):
        virtual_machine(started, vm.model_copy(update={"nics": two}), {}, running=True)


def test_windows_gets_hyperv_and_a_tpm_when_the_source_had_one() -> None:
    started = sample_plans.ovirt_plan()
    d = domain(build(started, started.vms[0]))
    assert d["features"]["hyperv"] == {
        "relaxed": {},
        "vapic": {},
        "spinlocks": {"spinlocks": 8191},
    }
    assert d["clock"]["utc"] == {}
    assert d["devices"]["tpm"] == {}
    os_plan = sample_plans.openstack_plan()
    os_vm = os_plan.vms[0].model_copy(
        update={"detail": sample_plans.openstack_detail(os_distro="windows", hw_tpm_version="2.0")}
    )
    d = domain(build(os_plan, os_vm))
    assert "hyperv" in d["features"]
    assert d["devices"]["tpm"] == {}
    assert "tpm" not in domain(build(os_plan, os_plan.vms[0]))["devices"]


@pytest.mark.parametrize(
    "detail",
    [
        {},
        {"cpu": "four", "memoryBytes": "lots", "firmware": None, "secureBoot": "yes"},
        {"cpu": {"sockets": 0, "cores": -2, "threads": None}, "memoryBytes": -1},
        {"cpu": [2], "memoryBytes": None, "firmware": "UEFI", "source": "nope", "osType": 7},
        {"memoryBytes": 1000 * MIB + 1, "firmware": "bios", "secureBoot": True},
    ],
)
def test_missing_or_odd_detail_degrades_to_defaults(detail: dict[str, object]) -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0].model_copy(update={"detail": detail})
    d = domain(build(started, vm))
    assert d["cpu"] == {"sockets": 1, "cores": 1, "threads": 1}
    memory = d["memory"]["guest"]
    assert memory == d["resources"]["requests"]["memory"]
    assert memory == ("1001Mi" if detail.get("memoryBytes") == 1000 * MIB + 1 else "1Gi")
    efi = d["firmware"]["bootloader"].get("efi")
    assert efi is None or efi == {"secureBoot": False}  # secure boot needs UEFI and a true
    assert "smm" not in d["features"]


def test_labels_and_annotations_name_the_source() -> None:
    started = sample_plans.ovirt_plan()
    vm = started.vms[0]
    obj = build(started, vm)
    meta = obj["metadata"]
    assert meta["name"] == "accounting-db"
    assert meta["namespace"] == NAMESPACE
    assert meta["labels"] == contract.object_labels(started.plan_id, started.migration_id, vm.vm_id)
    assert meta["annotations"] == {
        "hoist.io/source-provider": "engine",
        "hoist.io/source-type": "ovirt",
        "hoist.io/source-vm-id": vm.vm_id,
        "hoist.io/source-vm-name": "Accounting DB",
        "hoist.io/plan-name": "ovirt-wave-1",
        "hoist.io/source-os": "windows_2019x64",
        "description": "the accounting database",
    }
    # The VMI and its launcher pod carry the VM label alone: a cleanup that selects by
    # migration must never match the pod the migrated VM runs in.
    assert obj["spec"]["template"]["metadata"] == {"labels": {contract.VM: vm.vm_id}}
    long = vm.model_copy(update={"vm_id": "y" * 90})
    template = build(started, long)["spec"]["template"]
    assert template["metadata"]["labels"][contract.VM] == contract.label_value("y" * 90)
    assert "uuid" not in template["spec"]["domain"]["firmware"]  # not a UUID: KubeVirt's own


def test_openstack_source_annotations() -> None:
    started = sample_plans.openstack_plan()
    assert started.source.type is ProviderType.OPENSTACK
    annotations = build(started, started.vms[0])["metadata"]["annotations"]
    assert annotations["hoist.io/source-type"] == "openstack"
    assert annotations["hoist.io/source-os"] == "ubuntu"
    assert "description" not in annotations


# --- in a simulated cluster ----------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    sim = Cluster(
        ClusterConfig(
            storage_root=tmp_path / "volumes",
            bookmark_seconds=0.2,
            disabled=frozenset({"kubelet", "scheduler", "provisioner", "binder"}),
        )
    )
    await sim.start()
    try:
        async with kube_client(sim) as api_client:
            await client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NAMESPACE}})
            yield api_client
    finally:
        await sim.stop()


async def test_the_cluster_admits_every_sample_vm(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    made = []
    for started in (sample_plans.ovirt_plan(), sample_plans.openstack_plan()):
        for i, vm in enumerate(started.vms):
            obj = virtual_machine(started, vm, {}, running=bool(i % 2))
            created = await custom.create_namespaced_custom_object(
                "kubevirt.io", "v1", NAMESPACE, "virtualmachines", obj
            )
            assert created["spec"] == obj["spec"]
            made.append(created["metadata"]["name"])
    listed = await custom.list_namespaced_custom_object(
        "kubevirt.io",
        "v1",
        NAMESPACE,
        "virtualmachines",
        label_selector=f"{contract.MIGRATION}={sample_plans.MIGRATION_ID}",
    )
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == sorted(made)
