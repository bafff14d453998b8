"""The KubeVirt VirtualMachine VirtualMachineCreation makes: the source VM's configuration
translated into ``kubevirt.io/v1``, as a plain dict.

A pure function of the frozen plan, so a re-run builds the same object and tests check it
against KubeVirt's published OpenAPI document without a cluster. ``PlannedVm.detail`` is
what the planner's ``shaping.machine()`` made of the inventory (oVirt and OpenStack in one
vocabulary: ``cpu``, ``memoryBytes``, ``firmware``, ``secureBoot``, ``machineType``,
``osType``, ``description``, ``source``); any key may be missing or odd (an older
inventory, a hand-made plan), and each one then falls back to a default stated below:
building the VM never fails on the configuration alone.

Mapping choices (each one is what a KubeVirt user would pick for a guest of that kind):

- **CPU**: sockets, cores and threads as the source had them (a guest licensed per socket,
  or tuned to its topology, sees the same); a missing or non-positive count is 1.
- **Memory**: ``domain.memory.guest`` and ``resources.requests.memory`` both the source's
  size, rounded up to whole MiB, so the guest sees what it had and the scheduler reserves
  it; missing or zero: 1 GiB (``DEFAULT_MEMORY``). No limit: KubeVirt adds its overhead.
- **Machine type**: always ``q35``, the alias of the newest q35 the node's QEMU has. KubeVirt
  on x86_64 admits only q35 machines by default (``emulatedMachines``), so i440fx (``pc``)
  guests move to q35, as Forklift moves them; IDE disks therefore become SATA (q35 has no
  IDE). A versioned source type (``pc-q35-rhel8.6.0``) is not kept: it names the source
  host's QEMU build, which the target's may not have. Hoist migrates x86_64 guests.
- **Firmware**: ``uefi`` -> ``bootloader.efi`` with ``secureBoot`` set explicitly (KubeVirt's
  default for it is *true*, which would break every plain-UEFI guest); secure boot also
  enables ``features.smm`` (KubeVirt refuses secure boot without it). Anything else ->
  ``bootloader.bios``. The EFI variable store is not persistent (that needs a feature gate):
  the guest boots through its removable-media path (``\\EFI\\BOOT\\BOOTX64.EFI``), which
  every installer writes. ``firmware.uuid`` is the source VM's id when that is a UUID, so
  software keyed on the SMBIOS UUID (licences, Windows activation) sees the same machine.
- **Features**: ACPI always on (a guest cannot shut down cleanly without it). Windows guests
  (``osType`` contains "windows") get the Hyper-V enlightenments KubeVirt's Windows
  templates use (relaxed, vapic, spinlocks) and the Hyper-V clock; their RTC is UTC.
- **TPM**: an emulated TPM (``devices.tpm``) when the source had one (oVirt ``tpm``,
  OpenStack ``hw_tpm_version``); its state is not carried over (keys sealed in the source's
  TPM, e.g. BitLocker, must be recovered).
- **Disks**: one per planned disk, named ``disk-<n>`` by its position in the plan, the claim
  from ``claims`` (disk id -> claim name; the planned ``pvc_name`` otherwise). The bus maps
  source names to KubeVirt's (``BUSES``: virtio_scsi -> scsi, ide -> sata; unknown -> virtio).
  The boot disk comes first with ``bootOrder: 1`` (further boot disks 2, 3, ...; with no
  boot disk marked, the first one); other disks get no boot order, so the guest never tries
  them. The ``serial`` is the source disk id (oVirt and Nova expose the disk id as the
  serial, and guests' ``/dev/disk/by-id`` paths and fstab entries rely on it), except for
  an image-backed OpenStack root disk, which had none.
- **NICs**: per ``PlannedNic.target``: ``pod`` -> the pod network with masquerade binding
  (the only binding KubeVirt recommends on the pod network; at most one); ``ns/name`` -> that
  Multus NetworkAttachmentDefinition with bridge binding (the guest is on the L2 network
  itself, keeping its addresses); ``ignored`` -> left out. The model maps to KubeVirt's
  (``MODELS``; unknown -> virtio) and the MAC is kept (guest network configuration keyed
  on it keeps working) unless it is not a valid MAC. A VM left with no NIC gets
  ``autoattachPodInterface: false``, else KubeVirt would add a pod NIC the source never had.
- **Power**: ``runStrategy`` ``Always`` or ``Halted`` (``running`` is deprecated).
- **Labels**: ``shared.populator.object_labels`` on the VM; the template (so the VMI and
  virt-launcher pod) carries ``hoist.io/vm`` alone: a cleanup selecting by migration must
  never match the running VM's pod. Annotations name the source (provider, VM id and name,
  OS) and the plan; ``description`` carries the source's description (the KubeVirt UIs
  show it).

The end of one disk's journey: the disk is the migrated VM's volume. Cleanup, the last
step, follows in ``finishing.py``.

Next: services/orchestrator/finishing.py
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from shared import populator as contract
from shared.payloads import PlannedDisk, PlannedNic, PlannedVm, PlanStarted
from shared.sizing import GIB, MIB, round_up

Obj = dict[str, Any]

API_VERSION = "kubevirt.io/v1"
KIND = "VirtualMachine"
MACHINE_TYPE = "q35"
DEFAULT_MEMORY = GIB
RUN_ALWAYS = "Always"
RUN_HALTED = "Halted"

SOURCE_PROVIDER = f"{contract.GROUP}/source-provider"
SOURCE_TYPE = f"{contract.GROUP}/source-type"
SOURCE_VM_ID = f"{contract.GROUP}/source-vm-id"
SOURCE_VM_NAME = f"{contract.GROUP}/source-vm-name"
SOURCE_OS = f"{contract.GROUP}/source-os"
PLAN_NAME = f"{contract.GROUP}/plan-name"
DESCRIPTION = "description"

#: Source disk interfaces (oVirt, OpenStack ``hw_disk_bus``, already-mapped values) ->
#: KubeVirt disk buses.
BUSES = {
    "virtio": "virtio",
    "virtio_scsi": "scsi",
    "virtio-scsi": "scsi",
    "scsi": "scsi",
    "sata": "sata",
    "ide": "sata",
    "usb": "usb",
}
#: Source NIC models (oVirt interfaces, OpenStack ``hw_vif_model``) -> KubeVirt models.
MODELS = {
    "virtio": "virtio",
    "pv": "virtio",
    "virtio-net": "virtio",
    "e1000": "e1000",
    "e1000e": "e1000e",
    "igb": "igb",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "ne2k-pci": "ne2k_pci",
    "pcnet": "pcnet",
}
POD = "pod"
IGNORED = "ignored"
GLANCE = "glance"  # PlannedDisk.source_storage of an image-backed OpenStack root disk
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_.+-]{1,256}$")  # what KubeVirt admits as a disk serial


def virtual_machine(
    started: PlanStarted, vm: PlannedVm, claims: Mapping[str, str], *, running: bool
) -> Obj:
    """The VirtualMachine ``vm.target_name`` in the target namespace (see the module's
    docstring for every mapping). ``claims``: disk id -> name of the claim holding it.

    Raises ``ValueError`` only for a plan the planner refuses to start (more than one NIC
    on the pod network), never for the source configuration."""
    detail: Mapping[str, Any] = vm.detail if isinstance(vm.detail, Mapping) else {}
    source = _mapping(detail.get("source"))
    windows = _windows(detail, source)
    memory = _memory(detail.get("memoryBytes"))
    disks, volumes = _disks(vm, claims)
    interfaces, networks = _nics(vm)
    devices: Obj = {"disks": disks, "interfaces": interfaces}
    if not interfaces:
        devices["autoattachPodInterface"] = False
    if _has_tpm(source):
        devices["tpm"] = {}
    domain: Obj = {
        "cpu": _cpu(detail.get("cpu")),
        "memory": {"guest": memory},
        "resources": {"requests": {"memory": memory}},
        "machine": {"type": MACHINE_TYPE},
        "firmware": _firmware(vm, detail),
        "features": _features(detail, windows),
        "devices": devices,
    }
    if windows:
        domain["clock"] = {
            "utc": {},
            "timer": {
                "hpet": {"present": False},
                "pit": {"tickPolicy": "delay"},
                "rtc": {"tickPolicy": "catchup"},
                "hyperv": {},
            },
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": vm.target_name,
            "namespace": started.target_namespace,
            "labels": contract.object_labels(started.plan_id, started.migration_id, vm.vm_id),
            "annotations": _annotations(started, vm, detail),
        },
        "spec": {
            "runStrategy": RUN_ALWAYS if running else RUN_HALTED,
            "template": {
                "metadata": {"labels": {contract.VM: contract.label_value(vm.vm_id)}},
                "spec": {"domain": domain, "networks": networks, "volumes": volumes},
            },
        },
    }


def bus_of(name: str) -> str:
    return BUSES.get(str(name or "").lower(), "virtio")


def model_of(name: str) -> str:
    return MODELS.get(str(name or "").lower(), "virtio")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: object) -> int:
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 1
    return n if n >= 1 else 1


def _cpu(value: object) -> Obj:
    cpu = _mapping(value)
    return {k: _count(cpu.get(k)) for k in ("sockets", "cores", "threads")}


def _memory(value: object) -> str:
    try:
        size = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        size = 0
    size = round_up(size) if size > 0 else DEFAULT_MEMORY
    return f"{size // GIB}Gi" if size % GIB == 0 else f"{size // MIB}Mi"


def _firmware(vm: PlannedVm, detail: Mapping[str, Any]) -> Obj:
    uefi = str(detail.get("firmware") or "").lower() in ("uefi", "efi")
    bootloader: Obj = {"efi": {"secureBoot": _secure_boot(detail)}} if uefi else {"bios": {}}
    firmware: Obj = {"bootloader": bootloader}
    with contextlib.suppress(ValueError):  # not a UUID: KubeVirt derives one from the name
        firmware["uuid"] = str(uuid.UUID(vm.vm_id))
    return firmware


def _secure_boot(detail: Mapping[str, Any]) -> bool:
    uefi = str(detail.get("firmware") or "").lower() in ("uefi", "efi")
    return uefi and detail.get("secureBoot") is True


def _features(detail: Mapping[str, Any], windows: bool) -> Obj:
    features: Obj = {"acpi": {}}
    if _secure_boot(detail):
        features["smm"] = {"enabled": True}
    if windows:
        features["hyperv"] = {
            "relaxed": {},
            "vapic": {},
            "spinlocks": {"spinlocks": 8191},
        }
    return features


def _windows(detail: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """oVirt says ``windows_2019x64`` and the like; OpenStack images ``os_distro=windows``
    (or only ``os_type=windows``)."""
    props = _mapping(source.get("imageProperties"))
    return "windows" in str(detail.get("osType") or "").lower() or (
        str(props.get("os_type") or "").lower() == "windows"
    )


def _has_tpm(source: Mapping[str, Any]) -> bool:
    props = _mapping(source.get("imageProperties"))
    return source.get("tpm") is True or bool(props.get("hw_tpm_version"))


def _disks(vm: PlannedVm, claims: Mapping[str, str]) -> tuple[list[Obj], list[Obj]]:
    named = [(f"disk-{i}", d) for i, d in enumerate(vm.disks)]
    # Boot disks first (a stable sort keeps the plan's order otherwise).
    ordered = sorted(named, key=lambda pair: not pair[1].boot)
    boot = [name for name, d in ordered if d.boot] or [name for name, _ in ordered[:1]]
    disks: list[Obj] = []
    volumes: list[Obj] = []
    for name, d in ordered:
        entry: Obj = {"name": name, "disk": {"bus": bus_of(d.bus)}}
        if name in boot:
            entry["bootOrder"] = boot.index(name) + 1
        serial = _serial(d)
        if serial:
            entry["serial"] = serial
        disks.append(entry)
        claim = claims.get(d.disk_id) or d.pvc_name
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    return disks, volumes


def _serial(disk: PlannedDisk) -> str | None:
    if disk.source_storage == GLANCE:
        return None
    return disk.disk_id if _SERIAL.match(disk.disk_id) else None


def _nics(vm: PlannedVm) -> tuple[list[Obj], list[Obj]]:
    interfaces: list[Obj] = []
    networks: list[Obj] = []
    pod = [n for n in vm.nics if n.target == POD]
    if len(pod) > 1:
        raise ValueError(
            f"VM {vm.vm_id}: {len(pod)} NICs map to the pod network, a KubeVirt VM has at most "
            "one; map the others to Multus networks and start the plan again (permanent)"
        )
    for i, nic in enumerate(vm.nics):
        if nic.target == IGNORED or not nic.target:
            continue
        name = f"nic-{i}"
        interface: Obj = {"name": name, "model": model_of(nic.model)}
        mac = _mac(nic)
        if mac:
            interface["macAddress"] = mac
        if nic.target == POD:
            interface["masquerade"] = {}
            networks.append({"name": name, "pod": {}})
        else:
            interface["bridge"] = {}
            networks.append({"name": name, "multus": {"networkName": nic.target}})
        interfaces.append(interface)
    return interfaces, networks


def _mac(nic: PlannedNic) -> str | None:
    mac = str(nic.mac or "").strip().lower().replace("-", ":")
    return mac if _MAC.match(mac) else None


def _annotations(started: PlanStarted, vm: PlannedVm, detail: Mapping[str, Any]) -> dict[str, str]:
    out = {
        SOURCE_PROVIDER: started.source.id,
        SOURCE_TYPE: started.source.type.value,
        SOURCE_VM_ID: vm.vm_id,
        SOURCE_VM_NAME: vm.name,
        PLAN_NAME: started.plan_name,
    }
    os_type = detail.get("osType")
    if os_type:
        out[SOURCE_OS] = str(os_type)
    description = detail.get("description")
    if description:
        out[DESCRIPTION] = str(description)
    return out
