"""The engine's XML: objects rendered as ``/ovirt-engine/api`` renders them.

Only what ovirtsdk4's readers need and Hoist reads: ``id``/``href`` attributes, nested
references (``<cluster id=.. href=..>``), ``<link rel=..>`` for sub-collections (what
``follow_link`` and ``follow=`` use), enumerations in lower case, sizes in bytes, times in
ISO 8601 with offset.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from sim.ovirt import entities as m

if TYPE_CHECKING:  # directory renders through this module: no import at run time
    from sim.ovirt.directory import Template, User

API = "/ovirt-engine/api"


def _ref(parent: ET.Element, tag: str, collection: str, obj_id: str | None) -> None:
    if obj_id is not None:
        ET.SubElement(parent, tag, id=obj_id, href=f"{API}/{collection}/{obj_id}")


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = str(value).lower() if isinstance(value, bool) else str(value)
    return el


def _root(tag: str, collection: str, obj_id: str, name: str | None = None) -> ET.Element:
    el = ET.Element(tag, id=obj_id, href=f"{API}/{collection}/{obj_id}")
    if name is not None:
        _text(el, "name", name)
    return el


def _links(el: ET.Element, base: str, rels: Iterable[str]) -> None:
    for rel in rels:
        ET.SubElement(el, "link", href=f"{base}/{rel}", rel=rel)


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


def data_center(dc: m.DataCenter) -> ET.Element:
    el = _root("data_center", "datacenters", dc.id, dc.name)
    _text(el, "status", dc.status)
    _text(el, "local", False)
    return el


def cluster(c: m.Cluster) -> ET.Element:
    el = _root("cluster", "clusters", c.id, c.name)
    cpu = ET.SubElement(el, "cpu")
    _text(cpu, "type", c.cpu_type)
    _ref(el, "data_center", "datacenters", c.data_center_id)
    return el


def host(h: m.Host) -> ET.Element:
    el = _root("host", "hosts", h.id, h.name)
    _text(el, "address", h.address)
    _text(el, "status", h.status)
    _ref(el, "cluster", "clusters", h.cluster_id)
    return el


def network(n: m.Network) -> ET.Element:
    el = _root("network", "networks", n.id, n.name)
    if n.vlan is not None:
        ET.SubElement(el, "vlan", id=str(n.vlan))
    _ref(el, "data_center", "datacenters", n.data_center_id)
    return el


def vnic_profile(p: m.VnicProfile) -> ET.Element:
    el = _root("vnic_profile", "vnicprofiles", p.id, p.name)
    _text(ET.SubElement(el, "pass_through"), "mode", "enabled" if p.pass_through else "disabled")
    _ref(el, "network", "networks", p.network_id)
    return el


def storage_domain(sd: m.StorageDomain) -> ET.Element:
    el = _root("storage_domain", "storagedomains", sd.id, sd.name)
    _text(el, "type", "data")
    _text(el, "available", sd.available)
    _text(el, "used", sd.used)
    storage = ET.SubElement(el, "storage")
    _text(storage, "type", sd.storage_type)
    dcs = ET.SubElement(el, "data_centers")
    _ref(dcs, "data_center", "datacenters", sd.data_center_id)
    _links(el, f"{API}/storagedomains/{sd.id}", ("disks", "diskprofiles"))
    return el


def disk_profile(p: m.DiskProfile) -> ET.Element:
    el = _root("disk_profile", "diskprofiles", p.id, p.name)
    _ref(el, "storage_domain", "storagedomains", p.storage_domain_id)
    return el


def disk(d: m.Disk) -> ET.Element:
    el = _root("disk", "disks", d.id, d.name)
    _text(el, "alias", d.name)
    _text(el, "provisioned_size", d.provisioned_size)
    _text(el, "actual_size", d.actual_size)
    _text(el, "total_size", d.actual_size)
    _text(el, "format", d.format)
    _text(el, "sparse", d.sparse)
    _text(el, "status", d.status)
    _text(el, "storage_type", d.storage_type)
    _text(el, "shareable", d.shareable)
    _text(el, "content_type", "data")
    _text(el, "backup", d.backup)
    _ref(el, "disk_profile", "diskprofiles", d.disk_profile_id)
    sds = ET.SubElement(el, "storage_domains")
    _ref(sds, "storage_domain", "storagedomains", d.storage_domain_id)
    return el


def nic(vm_id: str, n: m.Nic) -> ET.Element:
    el = ET.Element("nic", id=n.id, href=f"{API}/vms/{vm_id}/nics/{n.id}")
    _text(el, "name", n.name)
    _text(el, "interface", n.interface)
    mac = ET.SubElement(el, "mac")
    _text(mac, "address", n.mac)
    _text(el, "plugged", True)
    _text(el, "linked", True)
    _ref(el, "vnic_profile", "vnicprofiles", n.vnic_profile_id)
    _ref(el, "vm", "vms", vm_id)
    return el


def disk_attachment(vm_id: str, a: m.DiskAttachment, d: m.Disk | None) -> ET.Element:
    el = ET.Element(
        "disk_attachment", id=a.disk_id, href=f"{API}/vms/{vm_id}/diskattachments/{a.disk_id}"
    )
    _text(el, "active", a.active)
    _text(el, "bootable", a.bootable)
    _text(el, "interface", a.interface)
    if d is not None:
        el.append(disk(d))
    else:
        _ref(el, "disk", "disks", a.disk_id)
    _ref(el, "vm", "vms", vm_id)
    return el


def vm(
    v: m.Vm, follow: frozenset[str] = frozenset(), disks: dict[str, m.Disk] | None = None
) -> ET.Element:
    el = _root("vm", "vms", v.id, v.name)
    _links(
        el, f"{API}/vms/{v.id}", ("nics", "diskattachments", "snapshots", "backups", "checkpoints")
    )
    _text(el, "description", v.description)
    _text(el, "status", v.status)
    _text(el, "memory", v.memory)
    policy = ET.SubElement(el, "memory_policy")
    _text(policy, "ballooning", v.ballooning)
    _text(policy, "guaranteed", v.memory)
    cpu = ET.SubElement(el, "cpu")
    topo = ET.SubElement(cpu, "topology")
    _text(topo, "cores", v.cores)
    _text(topo, "sockets", v.sockets)
    _text(topo, "threads", v.threads)
    bios = ET.SubElement(el, "bios")
    _text(bios, "type", v.bios_type)
    os_el = ET.SubElement(el, "os")
    _text(os_el, "type", v.os_type)
    _text(el, "type", "server")
    ha = ET.SubElement(el, "high_availability")
    _text(ha, "enabled", v.high_availability)
    _text(ha, "priority", 50 if v.high_availability else 0)
    _ref(el, "cluster", "clusters", v.cluster_id)
    _ref(el, "host", "hosts", v.host_id)
    if "nics" in follow:
        nics = ET.SubElement(el, "nics")
        nics.extend(nic(v.id, n) for n in v.nics)
    if "disk_attachments" in follow or "disk_attachments.disk" in follow:
        atts = ET.SubElement(el, "disk_attachments")
        embed = disks if "disk_attachments.disk" in follow else None
        atts.extend(
            disk_attachment(v.id, a, embed.get(a.disk_id) if embed else None)
            for a in v.disk_attachments
        )
    return el


def snapshot(vm_id: str, s: m.Snapshot) -> ET.Element:
    el = ET.Element("snapshot", id=s.id, href=f"{API}/vms/{vm_id}/snapshots/{s.id}")
    _text(el, "description", s.description)
    _text(el, "date", iso(s.date))
    _text(el, "snapshot_status", s.status)
    _text(el, "snapshot_type", s.type)
    _text(el, "persist_memorystate", False)
    _ref(el, "vm", "vms", vm_id)
    return el


def snapshots(v: m.Vm) -> bytes:
    """The VM's snapshots as the engine lists them: its "Active VM" (the running state,
    always there, type ``active``) first, then those users made."""
    active = m.Snapshot(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{v.id}/active")), "Active VM")
    active.type = "active"
    return collection("snapshots", (snapshot(v.id, s) for s in (active, *v.snapshots)))


def event(e: m.Event) -> ET.Element:
    el = ET.Element("event", id=str(e.id), href=f"{API}/events/{e.id}")
    _text(el, "code", e.code)
    _text(el, "description", e.description)
    _text(el, "severity", e.severity)
    _text(el, "time", iso(e.time))
    _text(el, "origin", "oVirt")
    _ref(el, "vm", "vms", e.vm_id)
    _ref(el, "host", "hosts", e.host_id)
    _ref(el, "cluster", "clusters", e.cluster_id)
    _ref(el, "data_center", "datacenters", e.data_center_id)
    _ref(el, "storage_domain", "storagedomains", e.storage_domain_id)
    _ref(el, "disk", "disks", e.disk_id)
    return el


def transfer(t: m.Transfer) -> ET.Element:
    el = _root("image_transfer", "imagetransfers", t.id)
    _text(el, "phase", t.phase.value)
    _text(el, "direction", "download")
    _text(el, "format", t.fmt)
    _text(el, "active", t.phase == m.Phase.TRANSFERRING)
    _text(el, "inactivity_timeout", t.inactivity_timeout)
    _text(el, "transferred", t.transferred)
    _text(el, "shallow", False)
    if t.transfer_url:
        _text(el, "transfer_url", t.transfer_url)
    if t.proxy_url:
        _text(el, "proxy_url", t.proxy_url)
    _ref(el, "disk", "disks", t.disk_id)
    _ref(el, "image", "disks", t.disk_id)
    _ref(el, "host", "hosts", t.host_id)
    if t.backup_id is not None:
        ET.SubElement(el, "backup", id=t.backup_id)
    return el


def backup(b: m.Backup) -> ET.Element:
    base = f"{API}/vms/{b.vm_id}/backups/{b.id}"
    el = ET.Element("backup", id=b.id, href=base)
    _text(el, "creation_date", iso(b.created))
    if b.from_checkpoint_id is not None:
        _text(el, "from_checkpoint_id", b.from_checkpoint_id)
    _text(el, "modification_date", iso(b.modified))
    _text(el, "phase", b.phase.value)
    if b.to_checkpoint_id is not None:
        _text(el, "to_checkpoint_id", b.to_checkpoint_id)
    disks = ET.SubElement(el, "disks")
    for disk_id in b.disk_ids:
        _ref(disks, "disk", "disks", disk_id)
    _ref(el, "host", "hosts", b.host_id)
    _ref(el, "vm", "vms", b.vm_id)
    _links(el, base, ("disks",))
    return el


def backup_disk(b: m.Backup, d: m.Disk) -> ET.Element:
    """A disk as a backup lists it: the disk, with the mode this backup copies it in."""
    el = disk(d)
    el.set("href", f"{API}/vms/{b.vm_id}/backups/{b.id}/disks/{d.id}")
    _text(el, "backup_mode", b.modes.get(d.id, "full"))
    return el


def checkpoint(c: m.Checkpoint) -> ET.Element:
    base = f"{API}/vms/{c.vm_id}/checkpoints/{c.id}"
    el = ET.Element("checkpoint", id=c.id, href=base)
    _text(el, "creation_date", iso(c.date))
    if c.parent_id is not None:
        _text(el, "parent_id", c.parent_id)
    _text(el, "state", c.state)
    _ref(el, "vm", "vms", c.vm_id)
    _links(el, base, ("disks",))
    return el


def template(t: Template) -> ET.Element:
    """A template as the engine lists ``Blank``: a server-type base version 1 of itself, with
    the defaults a VM made from it starts with."""
    el = _root("template", "templates", t.id, t.name)
    _text(el, "description", t.description)
    _text(el, "creation_time", "2008-04-01T00:00:00.000+00:00")
    cpu = ET.SubElement(el, "cpu")
    _text(cpu, "architecture", "undefined")
    topology = ET.SubElement(cpu, "topology")
    for tag, count in (("cores", 1), ("sockets", 1), ("threads", 1)):
        _text(topology, tag, count)
    _text(el, "memory", 1024**3)
    os_el = ET.SubElement(el, "os")
    _text(os_el, "type", "other")
    _text(el, "stateless", False)
    _text(el, "type", "server")
    _text(el, "status", t.status)
    version = ET.SubElement(el, "version")
    _text(version, "version_name", "base version")
    _text(version, "version_number", 1)
    _ref(version, "base_template", "templates", t.id)
    _links(el, f"{API}/templates/{t.id}", ("diskattachments", "nics", "permissions", "tags"))
    return el


def user(u: User) -> ET.Element:
    el = _root("user", "users", u.id, u.name)
    _text(el, "namespace", "*")
    _text(el, "principal", u.principal)
    _text(el, "user_name", u.user_name)
    domain = ET.SubElement(el, "domain", id=u.domain_id, href=f"{API}/domains/{u.domain_id}")
    _text(domain, "name", u.domain)
    _links(el, f"{API}/users/{u.id}", ("groups", "permissions", "roles", "sshpublickeys", "tags"))
    return el


def collection(tag: str, items: Iterable[ET.Element]) -> bytes:
    root = ET.Element(tag)
    root.extend(items)
    return document(root)


def document(el: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + ET.tostring(el)


def fault(reason: str, detail: str) -> bytes:
    el = ET.Element("fault")
    _text(el, "reason", reason)
    _text(el, "detail", detail)
    return document(el)


def action(status: str = "complete") -> bytes:
    el = ET.Element("action")
    _text(el, "status", status)
    return document(el)


def api_root(product: str = "oVirt Engine", version: str = "4.5.7") -> bytes:
    el = ET.Element("api")
    _links(
        el,
        API,
        (
            "clusters",
            "datacenters",
            "disks",
            "diskprofiles",
            "events",
            "hosts",
            "imagetransfers",
            "networks",
            "storagedomains",
            "templates",
            "users",
            "vms",
            "vnicprofiles",
        ),
    )
    info = ET.SubElement(el, "product_info")
    _text(info, "name", product)
    ver = ET.SubElement(info, "version")
    major, minor, *_ = (int(part) for part in version.split("."))
    for tag, value in (("build", 0), ("full_version", version), ("major", major), ("minor", minor)):
        _text(ver, tag, value)
    return document(el)
