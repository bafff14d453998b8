"""The simulated Nova, Cinder and Neutron objects, and their JSON as the real APIs render it.

Only what openstacksdk and an inventory read is kept; every object has real ids, timestamps
and status fields, and every disk is a real sparse file (``scenario.write_disk``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.openstack import scenario as sc
from sim.openstack import secgroups
from sim.power import PowerTimeline, TracksPower

GiB = 1 << 30


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def new_id() -> str:
    return str(uuid.uuid4())


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE): a snapshot of a sparse disk stays
    sparse, and costs only its data."""
    size = src.stat().st_size
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                break
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), end - pos, pos, pos)
                if n == 0:
                    break
                pos += n
            offset = end


@dataclass
class Flavor:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    extra_specs: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "vcpus": self.vcpus,
            "ram": self.ram,
            "disk": self.disk,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "swap": 0,
            "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0,
            "description": None,
            "extra_specs": dict(self.extra_specs),
            "links": [],
        }


@dataclass
class Network:
    id: str
    name: str
    project_id: str
    subnet: dict[str, Any]
    created_at: str = field(default_factory=now)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "status": "ACTIVE",
            "admin_state_up": True,
            "shared": False,
            "external": False,
            "router:external": False,
            "mtu": 1450,
            "subnets": [self.subnet["id"]],
            "provider:network_type": "geneve",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "tags": [],
        }


@dataclass
class Port:
    id: str
    network_id: str
    device_id: str
    mac: str
    ip: str
    subnet_id: str
    project_id: str
    vnic_type: str = "normal"
    security_groups: list[str] = field(default_factory=list)  # group ids

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": "",
            "network_id": self.network_id,
            "device_id": self.device_id,
            "device_owner": "compute:nova",
            "mac_address": self.mac,
            "fixed_ips": [{"subnet_id": self.subnet_id, "ip_address": self.ip}],
            "status": "ACTIVE",
            "admin_state_up": True,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "binding:vnic_type": self.vnic_type,
            "security_groups": list(self.security_groups),
            "port_security_enabled": True,
            "tags": [],
        }


@dataclass
class Volume:
    id: str
    name: str
    path: Path
    project_id: str
    volume_type: str
    status: str = "available"
    bootable: bool = False
    snapshot_id: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    multiattach: bool = False
    encrypted: bool = False
    image_metadata: dict[str, str] = field(default_factory=dict)  # volume_image_metadata
    availability_zone: str = "nova"
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def size_gib(self) -> int:
        return max(1, -(-self.size_bytes // GiB))

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size_gib,
            "status": self.status,
            "bootable": "true" if self.bootable else "false",
            "volume_type": self.volume_type,
            "snapshot_id": self.snapshot_id,
            "source_volid": None,
            "attachments": self.attachments,
            "availability_zone": self.availability_zone,
            "encrypted": self.encrypted,
            "multiattach": self.multiattach,
            "metadata": self.metadata,
            **({"volume_image_metadata": self.image_metadata} if self.image_metadata else {}),
            "description": None,
            "os-vol-tenant-attr:tenant_id": self.project_id,
            "user_id": None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "links": [],
        }


@dataclass
class Snapshot:
    id: str
    name: str
    volume_id: str
    path: Path
    project_id: str
    status: str = "available"
    created_at: str = field(default_factory=now)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "volume_id": self.volume_id,
            "status": self.status,
            "size": max(1, -(-self.path.stat().st_size // GiB)),
            "description": None,
            "metadata": {},
            "os-extended-snapshot-attributes:project_id": self.project_id,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass
class Server(TracksPower):
    id: str
    name: str
    flavor: Flavor
    project_id: str
    boot: str  # image | volume
    root_path: Path | None  # the local root disk of an image-backed server
    volume_ids: list[str]
    port_ids: list[str]
    status: str = "ACTIVE"
    task_state: str | None = None
    #: The Glance image it booted from (``CloudState.boot_images``; image-backed only).
    image_id: str = field(default_factory=new_id)
    key_name: str | None = None
    availability_zone: str = "nova"
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    deleted_at: str | None = None  # kept, as Nova keeps soft-deleted rows: changes-since
    #: Every change of ``status`` as up/down (``sim/power.py``), however it was made:
    #: ``os-stop``/``os-start``, ``set_server_status``, a delete, or a test setting it.
    power: PowerTimeline = field(
        default_factory=lambda: PowerTimeline(guest_runs), init=False, repr=False, compare=False
    )

    def touch(self) -> None:
        self.updated_at = now()


@dataclass
class Keypair:
    """A Nova keypair (the scenario user's): an ssh-ed25519 public key made from the name,
    and Nova's fingerprint of it (MD5 of the key blob, colon-separated hex)."""

    name: str
    user_id: str | None
    id: int
    created_at: str = field(default_factory=now)

    @property
    def public_key(self) -> str:
        key = random.Random(sc.seed_of(self.name)).randbytes(32)
        algo = b"ssh-ed25519"
        blob = len(algo).to_bytes(4, "big") + algo + len(key).to_bytes(4, "big") + key
        return f"ssh-ed25519 {base64.b64encode(blob).decode()} Generated-by-Nova"

    @property
    def fingerprint(self) -> str:
        blob = base64.b64decode(self.public_key.split()[1])
        digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


@dataclass
class BootImage:
    """The Glance image image-backed servers boot from; ``registered`` once Glance has it
    (``boot_images.register``): ids are chosen here so a server has one at once."""

    id: str
    name: str
    properties: dict[str, str]
    registered: bool = False


# Nova status -> (vm_state, power_state), as nova/api/openstack/common.py maps them back.
VM_STATES: dict[str, tuple[str, int]] = {
    "ACTIVE": ("active", 1),
    "SHUTOFF": ("stopped", 4),
    "ERROR": ("error", 0),
    "PAUSED": ("paused", 3),
    "SUSPENDED": ("suspended", 7),
    "SHELVED": ("shelved", 4),
    "SHELVED_OFFLOADED": ("shelved_offloaded", 0),
    "RESIZE": ("active", 1),
    "DELETED": ("deleted", 0),
}


def guest_runs(status: str) -> bool:
    """Whether a server in ``status`` is ``up`` in its power timeline: its power_state is
    RUNNING (1), as for ``ACTIVE`` (``SHUTOFF``, ``PAUSED``, ``SHELVED``... are down)."""
    return VM_STATES.get(status, ("active", 1))[1] == 1


class CloudState:
    """Every simulated object, by id. One event loop touches it: no locks."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        datadir.mkdir(parents=True, exist_ok=True)
        self.flavors: dict[str, Flavor] = {}
        self.networks: dict[str, Network] = {}
        self.ports: dict[str, Port] = {}
        self.volume_types: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.servers: dict[str, Server] = {}
        self.volume_quota: int | None = None
        self.quotas: dict[str, dict[str, int]] = {}  # scenario overrides, by service
        self.security_groups: secgroups.Groups = {}
        self.keypairs: dict[str, Keypair] = {}
        self.boot_images: dict[str, BootImage] = {}

    def disk_path(self, kind: str, ident: str) -> Path:
        return self.datadir / f"{kind}-{ident}.img"

    def new_volume(
        self,
        name: str,
        project_id: str,
        vtype: str,
        *,
        disk: sc.Disk | None = None,
        seed: int = 0,
        source: Path | None = None,
        snapshot_id: str | None = None,
        size_bytes: int | None = None,
    ) -> Volume:
        """A volume from a scenario disk, from a snapshot's file, or empty (``size_bytes``)."""
        vid = new_id()
        path = self.disk_path("volume", vid)
        if disk is not None:
            sc.write_disk(path, disk, seed)
        elif source is not None:
            sparse_copy(source, path)
        else:
            with path.open("wb") as f:
                f.truncate(size_bytes or GiB)
        vol = Volume(vid, name, path, project_id, vtype, snapshot_id=snapshot_id)
        self.volumes[vid] = vol
        return vol

    def load(self, s: sc.Scenario, project_id: str) -> None:
        """Build the objects a scenario describes, owned by ``project_id``."""
        sc.resolve_images(s, None)  # every image checked before any disk is written
        self.volume_quota = s.volume_quota
        self.quotas = {k: dict(v) for k, v in s.quotas.items()}
        secgroups.default_group(self.security_groups, project_id)
        for g in s.security_groups:
            secgroups.add_group(self.security_groups, g, project_id)
        for f in s.flavors:
            fid = new_id()
            self.flavors[fid] = Flavor(
                fid, f.name, f.vcpus, f.ram_mib, f.disk_gib, dict(f.extra_specs)
            )
        for i, n in enumerate(s.networks):
            net = ipaddress.ip_network(n.cidr)
            subnet = {
                "id": new_id(),
                "name": f"{n.name}-subnet",
                "cidr": n.cidr,
                "ip_version": 4,
                "gateway_ip": str(net[1]),
                "enable_dhcp": True,
                "project_id": project_id,
                "tenant_id": project_id,
                "allocation_pools": [],
                "dns_nameservers": [],
                "host_routes": [],
                "tags": [],
                "next_ip": 10,
                "created_at": now(),
                "updated_at": now(),
                "index": i,
            }
            nid = new_id()
            subnet["network_id"] = nid
            self.networks[nid] = Network(nid, n.name, project_id, subnet)
        for t in s.volume_types:
            tid = new_id()
            self.volume_types[tid] = {
                "id": tid,
                "name": t,
                "is_public": True,
                "description": None,
                "extra_specs": {},
                "qos_specs_id": None,
                "os-volume-type-access:is_public": True,
            }
        for srv in s.servers:
            self.add_server(srv, project_id)

    def add_server(self, srv: sc.Server, project_id: str) -> Server:
        flavor = next((f for f in self.flavors.values() if f.name == srv.flavor), None)
        if flavor is None:
            raise ValueError(f"server {srv.name}: no flavor named {srv.flavor!r} in the scenario")
        for where, disk in srv.disks(f"server {srv.name}"):
            disk.resolve_image(where, None)
        group_ids = secgroups.group_ids(self.security_groups, srv.security_groups, project_id)
        sid = new_id()
        default_type = next(iter(self.volume_types.values()), {"name": "standard"})["name"]
        root_path: Path | None = None
        volume_ids: list[str] = []
        if srv.boot == "image":
            root_path = self.disk_path("ephemeral", sid)
            sc.write_disk(root_path, srv.root, sc.seed_of(srv.name))
        else:
            root = self.new_volume(
                f"{srv.name}-root",
                project_id,
                default_type,
                disk=srv.root,
                seed=sc.seed_of(srv.name),
            )
            root.bootable = True
            root.image_metadata = dict(srv.image_properties)
            root.availability_zone = srv.availability_zone
            volume_ids.append(root.id)
        for i, v in enumerate(srv.volumes):
            vol = self.new_volume(
                v.name or f"{srv.name}-data-{i}",
                project_id,
                v.type or default_type,
                disk=v,
                seed=sc.seed_of(f"{srv.name}/{i}"),
            )
            vol.availability_zone = srv.availability_zone
            volume_ids.append(vol.id)
        ports = [self._add_port(name, sid, project_id, group_ids) for name in srv.networks]
        server = Server(
            sid,
            srv.name,
            flavor,
            project_id,
            srv.boot,
            root_path,
            volume_ids,
            ports,
            status=srv.status,
            key_name=srv.key_name,
            availability_zone=srv.availability_zone,
        )
        if srv.boot == "image":
            server.image_id = self.boot_image(srv).id
        if srv.key_name is not None and srv.key_name not in self.keypairs:
            # Nova boots only with an existing keypair: the scenario's names make them.
            self.keypairs[srv.key_name] = Keypair(srv.key_name, None, len(self.keypairs) + 1)
        first = 1 if srv.boot == "image" else 0  # an image-backed root disk is /dev/vda
        for n, vid in enumerate(volume_ids, start=first):
            vol = self.volumes[vid]
            vol.status = "in-use"
            vol.attachments = [
                {
                    "id": vid,
                    "attachment_id": new_id(),
                    "volume_id": vid,
                    "server_id": sid,
                    "host_name": None,
                    "device": f"/dev/vd{chr(ord('a') + n)}",
                    "attached_at": now(),
                }
            ]
        self.servers[sid] = server
        return server

    def boot_image(self, srv: sc.Server) -> BootImage:
        """The image ``srv`` boots from: one per root ``image`` file and set of properties,
        shared as servers of one base image share it. Its bytes are not the server's
        (each root disk is its own), as a server's disk drifts from its image."""
        key = json.dumps([srv.root.image, sorted(srv.image_properties.items())])
        iid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hoist-sim-boot-image:{key}"))
        if iid not in self.boot_images:
            stem = Path(srv.root.image).stem if srv.root.image else "base-image"
            name = stem if not srv.image_properties else f"{stem}-{iid[:8]}"
            self.boot_images[iid] = BootImage(iid, name, dict(srv.image_properties))
        return self.boot_images[iid]

    def _add_port(
        self, network_name: str, server_id: str, project_id: str, group_ids: list[str]
    ) -> str:
        net = next((n for n in self.networks.values() if n.name == network_name), None)
        if net is None:
            raise ValueError(f"no network named {network_name!r} in the scenario")
        cidr = ipaddress.ip_network(net.subnet["cidr"])
        ip = str(cidr[net.subnet["next_ip"]])
        net.subnet["next_ip"] += 1
        pid = new_id()
        mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.UUID(pid).bytes[:3])
        self.ports[pid] = Port(
            pid, net.id, server_id, mac, ip, net.subnet["id"], project_id,
            security_groups=list(group_ids),
        )  # fmt: skip
        return pid

    def server_json(self, s: Server, base_url: str) -> dict[str, Any]:
        addresses: dict[str, list[dict[str, Any]]] = {}
        for pid in s.port_ids:
            port = self.ports[pid]
            addresses.setdefault(self.networks[port.network_id].name, []).append(
                {
                    "version": 4,
                    "addr": port.ip,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": port.mac,
                }
            )
        # Nova asks Neutron for the groups of the server's ports and names each once; a
        # server without ports has none, and then Nova leaves the key out.
        groups: list[str] = []
        for pid in s.port_ids:
            for gid in self.ports[pid].security_groups:
                g = self.security_groups.get(gid)
                if g is not None and g.name not in groups:
                    groups.append(g.name)
        f = s.flavor
        body: dict[str, Any] = {
            "id": s.id,
            "name": s.name,
            "status": s.status,
            "tenant_id": s.project_id,
            "user_id": None,
            "flavor": {
                "original_name": f.name,
                "vcpus": f.vcpus,
                "ram": f.ram,
                "disk": f.disk,
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": dict(f.extra_specs),
            },
            "image": {"id": s.image_id} if s.boot == "image" else "",
            "addresses": addresses,
            "os-extended-volumes:volumes_attached": [
                {"id": v, "delete_on_termination": False} for v in s.volume_ids
            ],
            "OS-EXT-STS:vm_state": VM_STATES.get(s.status, ("active", 1))[0],
            "OS-EXT-STS:task_state": s.task_state,
            "OS-EXT-STS:power_state": VM_STATES.get(s.status, ("active", 1))[1],
            "OS-EXT-AZ:availability_zone": s.availability_zone,
            "metadata": s.metadata,
            "key_name": s.key_name,
            "hostId": "sim",
            "created": s.created_at,
            "updated": s.updated_at,
            "links": [{"rel": "self", "href": f"{base_url}/servers/{s.id}"}],
        }
        if groups:
            body["security_groups"] = [{"name": n} for n in groups]
        return body

    # -- changing the cloud from a test or benchmark (another thread: attribute writes
    # only, which the serving loop sees whole; deletions go through the Nova API) --------

    def set_server_status(self, sid: str, status: str, task_state: str | None = None) -> None:
        """What Nova shows after a failure, a shelve, a pause...: ``ERROR``,
        ``SHELVED_OFFLOADED``, ``PAUSED``; ``updated`` moves, as in Nova."""
        s = self.servers[sid]
        s.status, s.task_state = status, task_state
        s.touch()

    def set_server_image(self, sid: str, image_id: str) -> None:
        """Point an image-backed server at a (real Glance) image, as a rebuild does."""
        s = self.servers[sid]
        s.image_id = image_id
        s.touch()

    def update_volume(self, vid: str, **fields: Any) -> None:
        """Change a volume as Cinder would (``status``, ``multiattach``, ``encrypted``,
        ``image_metadata``, ``metadata``); ``updated_at`` moves, the server's does not."""
        vol = self.volumes[vid]
        for key, value in fields.items():
            if not hasattr(vol, key) or key in ("id", "path"):
                raise ValueError(f"volume has no settable field {key!r}")
            setattr(vol, key, value)
        vol.updated_at = now()

    def delete_server(self, sid: str) -> None:
        """Nova's delete: volumes detached (available), the ports Nova made removed, the
        server kept as ``DELETED`` for ``changes-since``. Runs in the serving loop."""
        s = self.servers[sid]
        for vid in s.volume_ids:
            if vid in self.volumes:
                vol = self.volumes[vid]
                vol.status, vol.attachments, vol.updated_at = "available", [], now()
        for pid in s.port_ids:
            self.ports.pop(pid, None)
        s.volume_ids, s.port_ids = [], []
        s.status, s.task_state, s.deleted_at = "DELETED", None, now()
        s.touch()
