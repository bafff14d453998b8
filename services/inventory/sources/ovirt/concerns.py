"""Validation concerns of an oVirt VM, from the fields the collector embeds in it.

One concern per kind of finding; when several disks or NICs share it, the label names them
all. Categories say what a user must do: Critical blocks the migration until fixed in
oVirt, Warning migrates but with a consequence to accept, Information is worth knowing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.inventory.items import Category, Concern, Item

UNSUPPORTED_STORAGE = ("lun", "cinder", "managed_block_storage")
# statuses in which the VM's disks cannot be copied consistently, or its state would be lost
STATUS_PROBLEMS = {
    "paused": "it is paused (often an I/O error or a full storage domain); resume or stop "
    "it in oVirt first, or the disks are copied in the middle of a failed write",
    "migrating": "it is being live-migrated between oVirt hosts; wait until it settles",
    "image_locked": "its disks are locked by an engine operation (a snapshot, a copy); wait "
    "until the operation ends",
    "unknown": "the engine has lost track of it (its host does not report); fix the host "
    "or mark the VM down in oVirt",
    "not_responding": "its host stopped answering for it; the VM cannot be shut down "
    "cleanly for a cold migration until the host recovers",
    "suspended": "it is suspended to disk: the saved memory state is not migrated, so the "
    "guest boots fresh on KubeVirt as after a power loss; resume and shut it down first",
    "saving_state": "it is being suspended; wait until it settles",
    "restoring_state": "it is resuming from suspension; wait until it settles",
    "unassigned": "the engine has not assigned it a status yet; refresh later",
}
KUBEVIRT_NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "pci_passthrough")
KUBEVIRT_DISK_BUSES = ("virtio", "virtio_scsi", "sata", "ide")


def _names(entries: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(str(e.get("name") or e.get("id")) for e in entries)


def _gib(size: Any) -> str:
    return f"{size / (1 << 30):.1f} GiB" if isinstance(size, int) else "its virtual size"


def _disk_concerns(disks: list[Mapping[str, Any]]) -> list[Concern]:
    found: list[Concern] = []

    def add(
        cid: str, which: list[Mapping[str, Any]], category: Category, label: str, text: str
    ) -> None:
        if which:
            found.append(Concern(cid, label.format(names=_names(which)), category, text))

    known = [d for d in disks if d.get("name") is not None]
    add(
        "ovirt.disk.unknown",
        [d for d in disks if d.get("name") is None],
        Category.WARNING,
        "Disk details unknown: {names}",
        "The VM lists these disks but the disk list did not contain them (created or "
        "removed while loading). The next refresh reads them again; check that they exist.",
    )
    add(
        "ovirt.disk.locked",
        [d for d in known if d.get("status") == "locked"],
        Category.CRITICAL,
        "Disk locked: {names}",
        "The engine holds the disk for another operation (a snapshot, a move, an image "
        "transfer) and refuses to transfer it. Wait for the operation to end, or find the "
        "stuck task in oVirt; the disk cannot be copied while it is locked.",
    )
    add(
        "ovirt.disk.illegal",
        [d for d in known if d.get("status") == "illegal"],
        Category.CRITICAL,
        "Disk illegal: {names}",
        "oVirt marked the disk's image illegal (a failed snapshot merge, copy or live "
        "storage migration): its contents may be inconsistent and the engine refuses to "
        "transfer it. Repair it in oVirt (remove or merge the broken snapshot) first.",
    )
    add(
        "ovirt.disk.storage_type",
        [d for d in known if d.get("storage_type") in UNSUPPORTED_STORAGE],
        Category.CRITICAL,
        "Disk not transferable (direct LUN, Cinder or managed block storage): {names}",
        "Only image disks on storage domains can be downloaded through ovirt-imageio. A "
        "direct LUN, Cinder or managed block disk must be copied by other means (e.g. present "
        "the LUN to the cluster as a PV) or detached from the VM before migrating.",
    )
    add(
        "ovirt.disk.shared",
        [d for d in known if d.get("shareable")],
        Category.WARNING,
        "Shared disk: {names}",
        "The disk is shareable (attached to several VMs, e.g. a cluster quorum disk). Each "
        "VM migrated with it would get a copy of its own, while the other VMs keep writing "
        "to the original, so a plan with this VM is refused (SharedDiskUnsupported): "
        "detach the disk first, or migrate it separately and attach it to the migrated VMs.",
    )
    add(
        "ovirt.disk.interface",
        [d for d in disks if d.get("interface") not in (None, *KUBEVIRT_DISK_BUSES)],
        Category.WARNING,
        "Disk interface without a KubeVirt equivalent: {names}",
        "KubeVirt attaches disks as virtio, SCSI or SATA; this disk is attached to the "
        "KubeVirt VM as virtio, so the guest needs virtio drivers to find it.",
    )
    add(
        "ovirt.disk.inactive",
        [d for d in disks if d.get("active") is False],
        Category.INFORMATION,
        "Deactivated disk: {names}",
        "The disk is attached but deactivated in oVirt (the guest does not see it). It is "
        "copied and attached to the KubeVirt VM, where the guest will see it.",
    )
    cow = [d for d in known if d.get("format") == "cow"]
    add(
        "ovirt.disk.cow",
        cow,
        Category.INFORMATION,
        "QCOW2 disk converted to raw: {names}",
        "The disk is stored as qcow2 (possibly with a snapshot chain). It is downloaded as "
        "raw, flattening its snapshots into one image, so the target volume needs the full "
        "virtual size ("
        + ", ".join(_gib(d.get("provisioned_size")) for d in cow)
        + ") and oVirt snapshots are not migrated.",
    )
    return found


def _vm_concerns(data: Mapping[str, Any], disks: list[Mapping[str, Any]]) -> list[Concern]:
    found: list[Concern] = []
    status = str(data.get("status") or "")
    if status in STATUS_PROBLEMS:
        found.append(
            Concern(
                "ovirt.vm.status",
                f"VM status {status}",
                Category.WARNING,
                f"The VM cannot be migrated as it is: {STATUS_PROBLEMS[status]}.",
            )
        )
    if not disks:
        found.append(
            Concern(
                "ovirt.vm.no_disks",
                "VM without disks",
                Category.WARNING,
                "The VM has no disks: the KubeVirt VM is created without storage and can "
                "only boot from the network. Check that this is intended (a diskless PXE "
                "client) and not a VM whose disks were detached.",
            )
        )
    elif not any(d.get("bootable") for d in disks):
        found.append(
            Concern(
                "ovirt.vm.no_bootable_disk",
                "No bootable disk",
                Category.INFORMATION,
                "No disk is marked bootable; the KubeVirt VM tries its disks in their "
                "attachment order. Mark the boot disk bootable in oVirt to be sure.",
            )
        )
    if data.get("has_illegal_images"):
        found.append(
            Concern(
                "ovirt.vm.illegal_images",
                "VM has illegal images",
                Category.WARNING,
                "Some image of the VM (a snapshot's volume) is illegal. The active disk "
                "contents are what gets copied; remove the broken snapshots in oVirt first "
                "to be sure they are consistent.",
            )
        )
    if data.get("secure_boot"):
        found.append(
            Concern(
                "ovirt.vm.secure_boot",
                "UEFI Secure Boot",
                Category.WARNING,
                "The KubeVirt VM boots with EFI Secure Boot (which needs SMM on the node). "
                "The VM's UEFI variables are not migrated: keys enrolled by hand are lost, "
                "only the default Microsoft keys are trusted; a guest signed with other keys "
                "will not boot until Secure Boot is turned off or the keys re-enrolled.",
            )
        )
    if data.get("tpm"):
        found.append(
            Concern(
                "ovirt.vm.tpm",
                "Virtual TPM",
                Category.WARNING,
                "The VM has a virtual TPM whose contents are not migrated: secrets sealed to "
                "it (BitLocker, LUKS with TPM unlock) need their recovery keys at first boot.",
            )
        )
    if data.get("high_availability"):
        found.append(
            Concern(
                "ovirt.vm.high_availability",
                "Highly available VM",
                Category.INFORMATION,
                "oVirt restarts this VM on another host when its host fails. On KubeVirt "
                "the migrated VM gets runStrategy Always, which restarts it after a failure; "
                "live migration between nodes needs ReadWriteMany volumes.",
            )
        )
    if data.get("memory_ballooning"):
        found.append(
            Concern(
                "ovirt.vm.memory_ballooning",
                "Memory ballooning enabled",
                Category.INFORMATION,
                "oVirt may reclaim part of this VM's memory with the balloon driver. "
                f"KubeVirt gives the VM its full memory ({_gib(data.get('memory'))}) as a "
                "fixed request; plan node capacity for it.",
            )
        )
    return found


def _nic_concerns(nics: list[Mapping[str, Any]]) -> list[Concern]:
    found: list[Concern] = []
    passthrough = [n for n in nics if n.get("pass_through")]
    if passthrough:
        found.append(
            Concern(
                "ovirt.nic.pass_through",
                f"PCI passthrough NIC: {_names(passthrough)}",
                Category.WARNING,
                "The NIC hands a host's physical function (SR-IOV) to the VM. Map it to an "
                "SR-IOV network on the target if there is one, or to a bridged network with a "
                "virtio NIC; either way the guest sees a different device and its network "
                "configuration may need adjusting.",
            )
        )
    unplugged = [n for n in nics if not n.get("vnic_profile") and not n.get("network")]
    if unplugged:
        found.append(
            Concern(
                "ovirt.nic.no_network",
                f"NIC without a network: {_names(unplugged)}",
                Category.WARNING,
                "The NIC has no vNIC profile (oVirt's <empty> network), so there is nothing "
                "to map it to: it is left out of the KubeVirt VM unless the network map "
                "names a target for it.",
            )
        )
    odd = [n for n in nics if n.get("interface") not in (None, *KUBEVIRT_NIC_MODELS)]
    if odd:
        found.append(
            Concern(
                "ovirt.nic.model",
                f"NIC model without a KubeVirt equivalent: {_names(odd)}",
                Category.WARNING,
                "KubeVirt has no such NIC model; the NIC becomes virtio, so the guest needs "
                "virtio-net drivers and may rename the interface.",
            )
        )
    return found


def assess(vm: Item) -> list[Concern]:
    data = vm.data
    disks = [d for d in data.get("disks") or () if isinstance(d, Mapping)]
    nics = [n for n in data.get("nics") or () if isinstance(n, Mapping)]
    return [*_disk_concerns(disks), *_vm_concerns(data, disks), *_nic_concerns(nics)]
