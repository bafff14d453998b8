"""The engine's objects, as plain data the XML renderer and the transfer logic share.

Names and enumerations follow the oVirt API model (``ovirt-engine-api-model``): disk format
``raw``/``cow``, status ``ok``/``locked``/``illegal``, storage type ``image``/``lun``/...,
VM status ``up``/``down``/``powering_down``/..., firmware by the BIOS type (``q35_ovmf`` is
UEFI), transfer phases ``initializing``/``transferring``/``finished_success``/...
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from sim.ovirt.images import ImageSpec
from sim.power import PowerTimeline, TracksPower

#: VM statuses in which no guest runs (``VmStatus``): the VM counts as down in its power
#: timeline. ``wait_for_launch`` is before qemu starts, ``paused`` and the suspend states
#: keep the guest stopped; ``removed`` is ours, for a VM ``Changes.remove_vm`` took away.
#: Every other status (``up``, ``powering_up``, ``powering_down``, ``migrating``,
#: ``not_responding``, ``unknown``...) has a guest that may be running.
DOWN_STATUSES = frozenset(
    {
        "down",
        "wait_for_launch",
        "image_locked",
        "paused",
        "suspended",
        "saving_state",
        "restoring_state",
        "removed",
    }
)


def guest_runs(status: str) -> bool:
    """Whether a VM in ``status`` is ``up`` in its power timeline."""
    return status not in DOWN_STATUSES


class Phase(enum.StrEnum):
    INITIALIZING = "initializing"
    TRANSFERRING = "transferring"
    PAUSED_SYSTEM = "paused_system"
    FINALIZING_SUCCESS = "finalizing_success"
    FINISHED_SUCCESS = "finished_success"
    CANCELLED_USER = "cancelled_user"
    CANCELLED_SYSTEM = "cancelled_system"
    FINALIZING_CLEANUP = "finalizing_cleanup"
    FINISHED_CLEANUP = "finished_cleanup"
    FINISHED_FAILURE = "finished_failure"


@dataclass
class DataCenter:
    id: str
    name: str
    status: str = "up"


@dataclass
class Cluster:
    id: str
    name: str
    data_center_id: str
    cpu_type: str = "Intel Cascadelake Server Family"


@dataclass
class Host:
    id: str
    name: str
    cluster_id: str
    address: str = "127.0.0.1"
    status: str = "up"


@dataclass
class Network:
    id: str
    name: str
    data_center_id: str
    vlan: int | None = None


@dataclass
class VnicProfile:
    id: str
    name: str
    network_id: str
    pass_through: bool = False


@dataclass
class StorageDomain:
    id: str
    name: str
    data_center_id: str
    storage_type: str = "nfs"
    available: int = 10 << 40
    used: int = 1 << 40


@dataclass
class DiskProfile:
    id: str
    name: str
    storage_domain_id: str


@dataclass
class Disk:
    id: str
    name: str
    storage_domain_id: str
    disk_profile_id: str
    image: ImageSpec
    status: str = "ok"  # ok | locked | illegal
    storage_type: str = "image"  # image | lun | cinder | managed_block_storage
    sparse: bool = True
    shareable: bool = False
    #: ``DiskBackup``: ``incremental`` (a qcow2 image whose bitmaps track the guest's
    #: writes between checkpoints) or ``none``.
    backup: str = "none"

    @property
    def format(self) -> str:
        return "cow" if self.image.fmt == "qcow2" else "raw"

    @property
    def provisioned_size(self) -> int:
        return self.image.virtual_size

    @property
    def actual_size(self) -> int:
        if self.image.source is not None:  # what the user's image really holds
            return self.image.source.data_bytes
        return int(self.image.virtual_size * self.image.data_share)


@dataclass
class Nic:
    id: str
    name: str
    mac: str
    vnic_profile_id: str | None  # None: oVirt's <empty> network
    interface: str = "virtio"  # virtio | e1000 | rtl8139 | pci_passthrough


@dataclass
class DiskAttachment:
    disk_id: str
    interface: str = "virtio_scsi"  # virtio_scsi | virtio | ide | sata
    bootable: bool = False
    active: bool = True


@dataclass
class Snapshot:
    """A VM snapshot the user made (the engine also lists an "Active VM" one per VM, which
    the renderer adds). ``status`` ``locked`` while the engine creates or removes it,
    ``in_preview`` while the VM runs a preview of it."""

    id: str
    description: str
    status: str = "ok"  # ok | locked | in_preview
    type: str = "regular"  # regular | preview | stateless
    date: float = field(default_factory=time.time)


@dataclass
class Vm(TracksPower):
    id: str
    name: str
    cluster_id: str
    host_id: str | None
    status: str = "up"
    memory: int = 4 << 30
    sockets: int = 1
    cores: int = 2
    threads: int = 1
    bios_type: str = "q35_sea_bios"  # q35_ovmf = UEFI, q35_secure_boot = UEFI + Secure Boot
    os_type: str = "rhel_8x64"
    nics: list[Nic] = field(default_factory=list)
    disk_attachments: list[DiskAttachment] = field(default_factory=list)
    ballooning: bool = False
    high_availability: bool = False
    description: str = ""
    snapshots: list[Snapshot] = field(default_factory=list)
    #: The guest honours an ACPI power button (``shutdown``); one that does not stays up
    #: and must be stopped (powered off) instead.
    acpi: bool = True
    #: Bytes per second the running guest writes into each of its incremental-backup disks
    #: (``sim/ovirt/guest.py``); 0: the guest writes nothing.
    guest_write_rate: int = 0
    #: Every change of ``status`` as up/down (``sim/power.py``), however it was made: the
    #: power actions, ``Changes.set_vm_status``, churn, or a test setting ``status``.
    power: PowerTimeline = field(
        default_factory=lambda: PowerTimeline(guest_runs), init=False, repr=False, compare=False
    )


@dataclass
class Event:
    id: int
    code: int
    description: str
    severity: str = "normal"
    time: float = field(default_factory=time.time)
    vm_id: str | None = None
    disk_id: str | None = None
    host_id: str | None = None
    cluster_id: str | None = None
    data_center_id: str | None = None
    storage_domain_id: str | None = None


class BackupPhase(enum.StrEnum):
    INITIALIZING = "initializing"
    STARTING = "starting"
    READY = "ready"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Checkpoint:
    """A VM checkpoint: its bitmap (named by its id) is in each of ``disk_ids``' images."""

    id: str
    vm_id: str
    parent_id: str | None
    disk_ids: list[str]
    state: str = "created"  # created | invalid
    date: float = field(default_factory=time.time)


@dataclass
class Backup:
    """A VM backup; ``modes`` is each disk's ``backup_mode`` (``full`` | ``incremental``)."""

    id: str
    vm_id: str
    disk_ids: list[str]
    from_checkpoint_id: str | None
    to_checkpoint_id: str | None  # None when no disk of the backup is incremental
    host_id: str
    phase: BackupPhase = BackupPhase.INITIALIZING
    modes: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    message: str = ""

    def set_phase(self, phase: BackupPhase) -> None:
        self.phase, self.modified = phase, time.time()

    @property
    def active(self) -> bool:
        return self.phase not in (BackupPhase.SUCCEEDED, BackupPhase.FAILED)


@dataclass
class Transfer:
    """One image transfer; ``ticket`` is the imageio ticket id once the engine made one."""

    id: str
    disk_id: str
    host_id: str
    inactivity_timeout: int
    phase: Phase = Phase.INITIALIZING
    ticket: str | None = None
    transfer_url: str | None = None
    proxy_url: str | None = None
    transferred: int = 0
    message: str = ""
    backup_id: str | None = None
    #: The format asked for (the disk's when none was): ``raw`` | ``cow``.
    fmt: str = "raw"
    #: How the host serves it: ``nbd`` (qemu-nbd, the guest's raw view; asked ``raw``, or a
    #: backup) or ``file`` (the volume's file as stored; ``cow`` or no format asked).
    backend: str = "nbd"


@dataclass
class Inventory:
    """Everything one engine holds, keyed by id (dicts keep insertion order for listing)."""

    data_centers: dict[str, DataCenter] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    vnic_profiles: dict[str, VnicProfile] = field(default_factory=dict)
    storage_domains: dict[str, StorageDomain] = field(default_factory=dict)
    disk_profiles: dict[str, DiskProfile] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    backups: dict[str, Backup] = field(default_factory=dict)
    #: Every VM's checkpoints, oldest first (a chain: each one's parent is the one before).
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    #: VMs removed (``Changes.remove_vm``), kept for their power timelines only.
    removed_vms: dict[str, Vm] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=lambda: {"admin@internal": "secret"})

    def add_event(
        self,
        code: int,
        description: str,
        *,
        vm_id: str | None = None,
        disk_id: str | None = None,
        host_id: str | None = None,
        cluster_id: str | None = None,
        data_center_id: str | None = None,
        storage_domain_id: str | None = None,
    ) -> Event:
        """Log an event as the engine's audit log does; ``refs`` name the objects it is about
        (``disk_id`` is ours: the engine's API has no disk reference on events)."""
        event = Event(
            id=(self.events[-1].id + 1) if self.events else 1,
            code=code,
            description=description,
            vm_id=vm_id,
            disk_id=disk_id,
            host_id=host_id,
            cluster_id=cluster_id,
            data_center_id=data_center_id,
            storage_domain_id=storage_domain_id,
        )
        self.events.append(event)
        return event

    def vms_of_disk(self, disk_id: str) -> list[Vm]:
        return [
            vm for vm in self.vms.values() if any(a.disk_id == disk_id for a in vm.disk_attachments)
        ]

    def disk_by_name(self, name_or_id: str) -> Disk:
        if name_or_id in self.disks:
            return self.disks[name_or_id]
        for disk in self.disks.values():
            if disk.name == name_or_id:
                return disk
        raise KeyError(f"no disk named or with id {name_or_id!r}")
