"""Validation concerns of one OpenStack VM, from its normalized data alone.

Ids are stable (``openstack.<what>.<problem>``) so plans and UIs can refer to them. The
categories follow Forklift where it has the same check (volume status unsupported:
Critical; VIF model unsupported: Warning) and say what happens to the migration otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.inventory.items import Category, Concern

OK_VOLUME = frozenset({"available", "in-use"})
# Cinder states that pass by themselves (the migration can start once they settle).
TRANSIENT_VOLUME = frozenset(
    {"attaching", "detaching", "uploading", "downloading", "backing-up", "restoring-backup",
     "extending", "retyping", "reserved", "awaiting-transfer", "creating", "deleting"}
)  # fmt: skip
# NIC models KubeVirt can give a guest (its interface `model`).
KUBEVIRT_NIC_MODELS = frozenset(
    {"virtio", "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139"}
)
BUSY_STATUSES = frozenset(
    {"BUILD", "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE", "REBUILD", "REBOOT",
     "HARD_REBOOT", "PASSWORD", "RESCUE", "UNKNOWN", "SOFT_DELETED", "DELETED"}
)  # fmt: skip
PASSTHROUGH_VNIC = frozenset({"direct", "direct-physical", "macvtap", "vdpa", "accelerator-direct"})


def _c(ident: str, label: str, category: Category, assessment: str) -> Concern:
    return Concern(ident, label, category, assessment)


def assess(data: Mapping[str, Any]) -> list[Concern]:
    out: list[Concern] = []
    out += _server(data)
    out += _volumes(data.get("volumes") or [])
    out += _nics(data.get("nics") or [])
    out += _disks(data)
    return out


def _server(d: Mapping[str, Any]) -> list[Concern]:
    status = str(d.get("status") or "")
    if status == "ERROR":
        return [_c("openstack.server.error", "Server in ERROR", Category.CRITICAL,
                   "Nova reports the server in ERROR: its disks may be incomplete. Repair it "
                   "(reset state, rebuild) or remove it from the plan.")]  # fmt: skip
    if status in ("SHELVED", "SHELVED_OFFLOADED"):
        return [_c("openstack.server.shelved", "Server shelved", Category.WARNING,
                   "A shelved server has no running instance; its root disk lives in the "
                   "shelve image. Unshelve it before migrating so Hoist copies the current "
                   "disks.")]  # fmt: skip
    if status in BUSY_STATUSES or d.get("taskState"):
        what = f"{status}" + (f", task {d['taskState']}" if d.get("taskState") else "")
        return [_c("openstack.server.status", "Server in an unsupported status",
                   Category.WARNING,
                   f"The server is {what}: snapshots fail or catch it half-changed. Wait until "
                   "it is ACTIVE or SHUTOFF.")]  # fmt: skip
    if status in ("PAUSED", "SUSPENDED"):
        return [_c("openstack.server.suspended", "Server paused or suspended",
                   Category.WARNING,
                   f"The server is {status}: its memory state is lost in the migration. Resume "
                   "and shut it down cleanly, or accept a crash-consistent copy.")]  # fmt: skip
    return []


def _volumes(volumes: list[Mapping[str, Any]]) -> list[Concern]:
    out: list[Concern] = []
    bad = [(v["id"], v.get("status") or "unknown") for v in volumes
           if v.get("status") and v["status"] not in OK_VOLUME]  # fmt: skip
    if bad:
        listing = ", ".join(f"{i} ({s})" for i, s in bad)
        settle = all(s in TRANSIENT_VOLUME for _, s in bad)
        hint = ("wait until they are available or in-use" if settle else
                "fix them in Cinder (reset state, or detach and remove)")  # fmt: skip
        out.append(_c("openstack.volume.status", "Volume status unsupported for migration",
                      Category.CRITICAL,
                      f"Cinder cannot snapshot or upload volumes {listing}: {hint}."))  # fmt: skip
    unknown = [v["id"] for v in volumes if not v.get("status")]
    if unknown:
        out.append(_c("openstack.volume.unknown", "Attached volume not visible",
                      Category.WARNING,
                      f"Nova lists volumes {', '.join(unknown)} on this server but Cinder does "
                      "not show them to the provider's user: they cannot be copied. Give the "
                      "user access to their project."))  # fmt: skip
    shared = [v["id"] for v in volumes if v.get("multiattach")]
    if shared:
        out.append(_c("openstack.volume.multiattach", "Multi-attach volume", Category.WARNING,
                      f"Volumes {', '.join(shared)} may be attached to other servers too; the "
                      "copy is consistent only if every server using them is stopped.")
                   )  # fmt: skip
    encrypted = [v["id"] for v in volumes if v.get("encrypted")]
    if encrypted:
        out.append(_c("openstack.volume.encrypted", "Encrypted volume", Category.CRITICAL,
                      f"Volumes {', '.join(encrypted)} are encrypted by Cinder: an upload to "
                      "Glance carries ciphertext the target cannot use. Decrypt (retype to an "
                      "unencrypted type) first.")
                   )  # fmt: skip
    return out


def _nics(nics: list[Mapping[str, Any]]) -> list[Concern]:
    out: list[Concern] = []
    if not nics:
        out.append(_c("openstack.nic.none", "No network", Category.WARNING,
                      "The server has no port: the migrated VM starts without a network "
                      "unless the plan adds one."))  # fmt: skip
    models = sorted({str(n["vifModel"]) for n in nics if n.get("vifModel")}
                    - KUBEVIRT_NIC_MODELS)  # fmt: skip
    if models:
        out.append(_c("openstack.nic.vifmodel", "Unsupported VIF model", Category.WARNING,
                      f"The image asks for NIC model {', '.join(models)}, which KubeVirt does "
                      "not offer: the VM gets virtio NICs and the guest needs virtio drivers.")
                   )  # fmt: skip
    passthrough = sorted({str(n["vnicType"]) for n in nics} & PASSTHROUGH_VNIC)
    if passthrough:
        out.append(_c("openstack.nic.passthrough", "SR-IOV / passthrough port",
                      Category.WARNING,
                      f"Ports of VNIC type {', '.join(passthrough)} are bound to host "
                      "hardware; the migrated VM gets a regular (bridged) interface unless "
                      "the network map says otherwise."))  # fmt: skip
    return out


def _disks(d: Mapping[str, Any]) -> list[Concern]:
    out: list[Concern] = []
    flavor = d.get("flavor") or {}
    if d.get("boot") == "image":
        out.append(_c("openstack.disk.imagebacked", "Root disk on the compute host",
                      Category.INFORMATION,
                      "The server boots from an image: its root disk is local to the "
                      "hypervisor and is copied through a Nova snapshot (createImage) taken "
                      "during the migration."))  # fmt: skip
    if flavor.get("ephemeralGiB") or flavor.get("swapMiB"):
        out.append(_c("openstack.disk.ephemeral", "Ephemeral or swap disk not copied",
                      Category.WARNING,
                      f"Flavor {flavor.get('name')} gives the server an ephemeral "
                      f"({flavor.get('ephemeralGiB') or 0} GiB) or swap "
                      f"({flavor.get('swapMiB') or 0} MiB) disk: Nova snapshots skip them, so "
                      "their contents are not migrated."))  # fmt: skip
    props = d.get("imageProperties") or {}
    if str(props.get("hw_firmware_type", "")).lower() == "uefi":
        out.append(
            _c(
                "openstack.firmware.uefi",
                "UEFI firmware",
                Category.INFORMATION,
                "The image asks for UEFI: the KubeVirt VM is created with EFI firmware.",
            )
        )
    return out
