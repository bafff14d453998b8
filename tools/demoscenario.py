"""The demo's scenario file: what the simulated sources hold and what to migrate.

A scenario is one YAML document with up to four keys (``docs/demo.md`` has a full example)::

    ovirt: {...}          # the oVirt simulator's scenario (sim/ovirt/scenario.py), checked here
    openstack: {...}      # the OpenStack simulator's scenario (sim/openstack/scenario.py)
    namespace: migrated   # the default target namespace of the plans
    plans:
      - name: ovirt-demo
        source: ovirt                 # ovirt | openstack
        vms: [web-1, db-1]
        namespace: migrated           # optional, default: the top-level namespace
        targetPowerState: auto        # on | off | auto
        target: local                 # local (Hoist's cluster) | remote (a second cluster)
        networks: {ovirtmgmt: pod, storage: "multus:migrated/storage", backup: ignored}
        storage:
          data: {storageClass: standard, volumeMode: Block, accessMode: ReadWriteOnce}
    volumes:              # optional: static PersistentVolumes, for plans onto static classes
      - {name: pv-1, storageClass: local-static, size: 20GiB, node: node-1}

Everything is validated before anything starts, with ``extra="forbid"`` everywhere (a typo
is an error, never a silently ignored key), and across sections: every planned VM exists in
its source, every network and storage of those VMs is mapped, every storage class exists in
the simulated cluster. ``ScenarioError`` carries one readable message per problem.

A disk may hold a user's raw or qcow2 image (``image: PATH``, on oVirt disks and OpenStack
``root``/``volumes``): ``resolve_image`` turns the reference into a file (relative to the
scenario file's directory), and the file is probed with qemu-img now, so a missing or
unreadable file, or one qemu-img cannot read, is a problem named by its key path
(``ovirt.vms[0].disks[1].image``) before anything starts. The simulators receive absolute
paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sim import diskimage
from sim.kube.config import NO_PROVISIONER, default_storage_classes
from sim.openstack import scenario as os_sc
from sim.ovirt import scenario as ovirt_sc
from tools import guestimage

#: ``make demo`` without ``SCENARIO=``.
DEFAULT_PATH = Path(__file__).resolve().parent / "scenarios" / "demo.yaml"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: What ``hoist`` accepts as a map's network destination besides ``multus:NS/NAME``.
POD = "pod"
IGNORED = "ignored"
GLANCE = "glance"
_MULTUS = re.compile(r"^multus:([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
#: oVirt's simulated engine has one data storage domain, named so by its builder.
OVIRT_STORAGE_DOMAIN = "data"
OVIRT_DEFAULT_NETWORK = "ovirtmgmt"
GUEST_SCHEME = "guest:"


class ScenarioError(Exception):
    """A scenario that cannot run; the message lists every problem found."""


def _size(value: object) -> int | str:
    """A size as the oVirt simulator reads it (``64MiB``, ``20GiB``, bytes), checked now."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a size such as 64MiB, 20GiB or a number of bytes")
    ovirt_sc.size(value)  # raises ValueError with the simulator's own wording
    return value


Size = Annotated[int | str, BeforeValidator(_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- the oVirt simulator's scenario, as sim/ovirt/scenario.py reads it ----------------------


class OvirtCpu(_Strict):
    sockets: int = Field(1, ge=1, le=64)
    cores: int = Field(2, ge=1, le=256)
    threads: int = Field(1, ge=1, le=8)


class OvirtNic(_Strict):
    network: str = OVIRT_DEFAULT_NETWORK  # "": not connected
    model: Literal["virtio", "e1000", "e1000e", "rtl8139"] = "virtio"
    mac: str | None = Field(None, pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class OvirtDisk(_Strict):
    """Unset sizes and pattern keys are left to the simulator's defaults (``size`` 64MiB, or
    the image's virtual size; ``allocated`` 0.25, ``layout`` large, ``extent`` 8MiB)."""

    id: str | None = None
    name: str | None = None
    image: str | None = None  # a raw or qcow2 file: the disk's bytes (``resolve_image``)
    size: Size | None = None
    allocated: float | None = Field(None, ge=0, le=1)
    format: Literal["raw", "cow", "qcow2"] = "raw"
    layout: Literal["large", "scattered"] | None = None
    extent: Size | None = None
    interface: Literal["virtio", "virtio_scsi", "sata", "ide"] = "virtio_scsi"
    bootable: bool | None = None
    status: Literal["ok", "locked", "illegal"] = "ok"
    storage_type: Literal["image", "lun", "cinder", "managed_block_storage"] = "image"
    sparse: bool = True
    shareable: bool = False


class OvirtSnapshot(_Strict):
    description: str = "snapshot"
    status: Literal["ok", "locked", "in_preview"] = "ok"


class OvirtVm(_Strict):
    id: str | None = None
    name: str = Field(min_length=1, max_length=63)
    status: Literal["up", "down"] = "up"
    memory: Size = "4GiB"
    cpu: OvirtCpu = Field(default_factory=OvirtCpu)
    firmware: Literal["bios", "uefi", "uefi-secure-boot"] = "bios"
    ballooning: bool = False
    high_availability: bool = False
    description: str = ""
    acpi: bool = True
    snapshots: list[OvirtSnapshot] = Field(default_factory=list)
    os: str = "rhel_8x64"
    nics: list[OvirtNic] = Field(default_factory=lambda: [OvirtNic()])
    disks: list[OvirtDisk] = Field(default_factory=list)


class OvirtNetwork(_Strict):
    name: str = Field(min_length=1)
    vlan: int | None = Field(None, ge=0, le=4094)


class OvirtFault(_Strict):
    kind: Literal[ovirt_sc.FAULT_KINDS]  # type: ignore[valid-type]
    disk: str | None = None
    seconds: float = 0.0
    after_bytes: Size = 0
    bytes_per_second: Size = 0
    count: int = 1
    status: int = 503


class OvirtScenario(_Strict):
    users: dict[str, str] | None = None
    networks: list[OvirtNetwork] = Field(default_factory=list)
    vms: list[OvirtVm] = Field(default_factory=list)
    disks: list[OvirtDisk] = Field(default_factory=list)  # floating disks
    faults: list[OvirtFault] = Field(default_factory=list)

    def sim_dict(self) -> dict[str, Any]:
        """The document ``sim.ovirt.scenario.from_dict`` reads (unset keys left out, so its
        own defaults apply, such as the first disk being the bootable one)."""
        return self.model_dump(exclude_none=True)

    def network_names(self) -> set[str]:
        names = {OVIRT_DEFAULT_NETWORK, *(n.name for n in self.networks)}
        return names | {nic.network for vm in self.vms for nic in vm.nics if nic.network}


# --- what to migrate --------------------------------------------------------------------------


class StorageTarget(_Strict):
    #: "" is static provisioning without a class: the scenario's ``volumes`` must have them.
    storage_class: str = Field(alias="storageClass")
    volume_mode: Literal["Block", "Filesystem"] | None = Field(None, alias="volumeMode")
    access_mode: (
        Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] | None
    ) = Field(None, alias="accessMode")

    def cli(self) -> str:
        """``CLASS[:VOLUMEMODE[:ACCESSMODE]]`` as ``hoist maps create storage`` takes it."""
        parts = [self.storage_class]
        if self.volume_mode or self.access_mode:
            parts.append(self.volume_mode or "")
        if self.access_mode:
            parts.append(self.access_mode)
        return ":".join(parts)


class StaticVolume(_Strict):
    """A PersistentVolume an administrator made before the migration (``volumes``): a
    local directory of the simulated cluster, on one node when ``node`` is given, for a
    static class (``local-static``: ``kubernetes.io/no-provisioner``, or "" for none)."""

    name: str = Field(pattern=DNS_LABEL)
    storage_class: str = Field("local-static", alias="storageClass")
    size: Size
    volume_mode: Literal["Block", "Filesystem"] = Field("Filesystem", alias="volumeMode")
    access_modes: list[
        Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]
    ] = Field(["ReadWriteOnce"], alias="accessModes", min_length=1)
    node: str | None = Field(None, pattern=DNS_LABEL)

    def manifest(self, root: Path) -> dict[str, Any]:
        """The PersistentVolume, its directory under ``root`` (made by the caller)."""
        spec: dict[str, Any] = {
            "capacity": {"storage": str(ovirt_sc.size(self.size))},
            "accessModes": list(self.access_modes),
            "volumeMode": self.volume_mode,
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": self.storage_class,
            "local": {"path": str(root / self.name)},
        }
        if self.node:
            term = {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node]}
            spec["nodeAffinity"] = {
                "required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}
            }
        return {"metadata": {"name": self.name}, "spec": spec}


class PlanSpec(_Strict):
    name: str = Field(pattern=DNS_LABEL)
    source: Literal["ovirt", "openstack"]
    vms: list[str] = Field(min_length=1)
    namespace: str | None = Field(None, pattern=DNS_LABEL)
    target_power_state: Literal["on", "off", "auto"] = Field("auto", alias="targetPowerState")
    #: The target cluster: Hoist's own, or a second simulated cluster registered as a remote
    #: ``kubevirt`` provider (docs/populator-controller.md, "Remote target clusters").
    target: Literal["local", "remote"] = "local"
    networks: dict[str, str] = Field(default_factory=dict)
    storage: dict[str, StorageTarget] = Field(default_factory=dict)
    #: Boot each migrated VM from its volumes and compare what the guest sees with its
    #: source (``tools/bootcheck.py``): for scenarios whose disks hold real guests.
    boot_check: bool = Field(False, alias="bootCheck")
    #: ConvertGuest: virt-v2v-in-place on each VM's volumes before its VirtualMachine is
    #: created (minutes per VM where the conversion appliance runs emulated).
    convert_guest: bool = Field(False, alias="convertGuest")
    #: Hooks every VM of the plan runs (``docs/hooks.md``): this repository's hook image
    #: (``tools.hookimage``), which logs what it sees of the VM; ``hoist plans logs --vm``
    #: shows it.
    pre_hook: bool = Field(False, alias="preHook")
    post_hook: bool = Field(False, alias="postHook")

    def multus(self) -> set[tuple[str, str]]:
        """(namespace, name) of every NetworkAttachmentDefinition the network map names."""
        out = set()
        for target in self.networks.values():
            match = _MULTUS.match(target)
            if match:
                out.add((match.group(1), match.group(3)))
        return out


class Scenario(_Strict):
    ovirt: OvirtScenario | None = None
    openstack: os_sc.Scenario | None = None
    namespace: str = Field("migrated", pattern=DNS_LABEL)
    #: Static PersistentVolumes made before the plans run (for plans onto static classes).
    volumes: list[StaticVolume] = Field(default_factory=list)
    plans: list[PlanSpec] = Field(min_length=1)

    def namespace_of(self, plan: PlanSpec) -> str:
        return plan.namespace or self.namespace

    def namespaces(self, target: str = "local") -> set[str]:
        """The namespaces the plans into one target cluster need there."""
        plans = [p for p in self.plans if p.target == target]
        return {self.namespace_of(p) for p in plans} | {ns for p in plans for ns, _ in p.multus()}

    def needs_remote(self) -> bool:
        return any(p.target == "remote" for p in self.plans)


def resolve_image(ref: str, base: Path) -> Path:
    """The file a disk's ``image`` names: ``~`` expanded, a relative path relative to
    ``base`` (the scenario file's directory). The one place a reference becomes a file, so
    that other kinds of reference can be added here.

    ``guest:NAME[.FORMAT]`` names one of the real guests ``tools/guestimage.py`` builds
    (``bios-root``, ``uefi-root``, ``data``; ``raw`` or ``qcow2``, default qcow2), built
    first if this machine has not cached them yet (a few minutes, once)."""
    if ref.startswith(GUEST_SCHEME):
        name, _, fmt = ref.removeprefix(GUEST_SCHEME).partition(".")
        if name not in guestimage.GUESTS or (fmt and fmt not in guestimage.FORMATS):
            raise ValueError(
                f"{ref}: expected {GUEST_SCHEME}NAME[.FORMAT] with NAME one of "
                f"{', '.join(guestimage.GUESTS)} and FORMAT raw or qcow2"
            )
        try:
            guests = guestimage.ensure()
        except guestimage.GuestBuildError as exc:
            raise ValueError(f"{ref}: the guests could not be built: {exc}") from None
        return guests.path(name, fmt or "qcow2")
    return diskimage.resolve(ref, base)


def load(path: Path) -> Scenario:
    """Read and check a scenario file; ``ScenarioError`` says what is wrong and where."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse(doc, str(path), path.parent)


def parse(doc: object, where: str = "scenario", base: Path | None = None) -> Scenario:
    """A scenario document checked; ``base``: where relative image paths are (default: the
    working directory)."""
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where}: expected a mapping with plans (and ovirt and/or openstack)")
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(f"{where}:\n" + _pydantic_problems(exc)) from None
    problems = check_images(scenario, base or Path.cwd()) + check(scenario)
    if problems:
        raise ScenarioError(f"{where}:\n" + "\n".join(f"  - {p}" for p in problems))
    return scenario


def _pydantic_problems(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown key (a typo?)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def check_images(s: Scenario, base: Path) -> list[str]:
    """Resolve and probe every disk's ``image`` (rewritten to its absolute path, which the
    simulators then read); the problems found, each naming its disk's key path."""
    problems: list[str] = []
    if s.ovirt is not None:
        disks = [
            (f"ovirt.vms[{i}].disks[{j}]", disk)
            for i, vm in enumerate(s.ovirt.vms)
            for j, disk in enumerate(vm.disks)
        ] + [(f"ovirt.disks[{j}]", disk) for j, disk in enumerate(s.ovirt.disks)]
        for where, disk in disks:
            if disk.image is None:
                continue
            try:
                disk.image = str(resolve_image(disk.image, base))
                ovirt_sc.image_source(disk.model_dump(exclude_none=True), where, None)
            except ValueError as exc:
                problems.append(str(exc))
    if s.openstack is not None:
        for i, srv in enumerate(s.openstack.servers):
            for where, os_disk in srv.disks(f"openstack.servers[{i}]"):
                if os_disk.image is None:
                    continue
                try:
                    os_disk.image = str(resolve_image(os_disk.image, base))
                    os_disk.resolve_image(where, None)
                except ValueError as exc:
                    problems.append(str(exc))
    return problems


def check(s: Scenario) -> list[str]:
    """Problems across sections: what the planner would refuse, said before anything runs."""
    problems: list[str] = []
    names = [p.name for p in s.plans]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"plans: two plans are named {dup!r}")
    known = default_storage_classes()
    classes = {sc["metadata"]["name"] for sc in known} | {""}
    static = {sc["metadata"]["name"] for sc in known if sc.get("provisioner") == NO_PROVISIONER}
    static.add("")
    volume_names = [v.name for v in s.volumes]
    for dup in sorted({n for n in volume_names if volume_names.count(n) > 1}):
        problems.append(f"volumes: two volumes are named {dup!r}")
    for i, volume in enumerate(s.volumes):
        if volume.storage_class not in static:
            problems.append(
                f"volumes[{i}] ({volume.name}): storageClass {volume.storage_class!r} is not "
                f"static (static: {', '.join(repr(c) for c in sorted(static))})"
            )
    for i, plan in enumerate(s.plans):
        where = f"plans[{i}] ({plan.name})"
        if plan.source == "ovirt":
            problems += _check_ovirt(where, plan, s.ovirt)
        else:
            problems += _check_openstack(where, plan, s.openstack)
        for src, target in plan.networks.items():
            if target not in (POD, IGNORED) and not _MULTUS.match(target):
                problems.append(
                    f"{where}.networks.{src}: {target!r}: expected pod, ignored or "
                    "multus:NAMESPACE/NAME"
                )
        for src, st in plan.storage.items():
            if st.storage_class not in classes:
                problems.append(
                    f"{where}.storage.{src}: no storage class {st.storage_class!r} in the "
                    f"simulated cluster (it has {', '.join(sorted(classes - {''}))})"
                )
            elif st.storage_class in static and plan.target == "remote":
                problems.append(
                    f"{where}.storage.{src}: storage class {st.storage_class!r} is static, and "
                    "the scenario's volumes are made in Hoist's own cluster, not the remote one"
                )
            elif st.storage_class in static and not any(
                v.storage_class == st.storage_class for v in s.volumes
            ):
                problems.append(
                    f"{where}.storage.{src}: storage class {st.storage_class!r} is static: "
                    "list the PersistentVolumes its disks need under volumes"
                )
    for a, b in _vm_in_two_plans(s.plans):
        problems.append(f"VM {a} is in plans {b}: a VM is migrated by one plan")
    return problems


def _vm_in_two_plans(plans: list[PlanSpec]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], list[str]] = {}
    for p in plans:
        for vm in p.vms:
            seen.setdefault((p.source, vm), []).append(p.name)
    return [(f"{src}/{vm}", " and ".join(ps)) for (src, vm), ps in seen.items() if len(ps) > 1]


def _check_map_keys(where: str, kind: str, mapped: set[str], known: set[str]) -> list[str]:
    return [
        f"{where}.{kind}: the source has no {kind[:-1] if kind == 'networks' else kind} "
        f"{key!r} (it has {', '.join(sorted(known)) or 'none'})"
        for key in sorted(mapped - known)
    ]


def _check_networks(
    where: str, plan: PlanSpec, nics: dict[str, list[str]], known: set[str]
) -> list[str]:
    """``nics``: each planned VM -> the source network of each of its NICs."""
    problems = _check_map_keys(where, "networks", set(plan.networks), known)
    used: set[str] = set()
    for vm, networks in nics.items():
        used |= set(networks)
        pod = [n for n in networks if plan.networks.get(n) == POD]
        if len(pod) > 1:
            problems.append(
                f"{where}: {vm} has {len(pod)} NICs mapped to the pod network; "
                "a KubeVirt VM has at most one"
            )
    problems += [
        f"{where}.networks: network {n!r} of the planned VMs is not mapped"
        for n in sorted(used - set(plan.networks))
    ]
    return problems


def _check_ovirt(where: str, plan: PlanSpec, ovirt: OvirtScenario | None) -> list[str]:
    if ovirt is None:
        return [f"{where}: source ovirt, but the scenario has no ovirt section"]
    problems: list[str] = []
    vms = {vm.name: vm for vm in ovirt.vms}
    nics: dict[str, list[str]] = {}
    for name in plan.vms:
        vm = vms.get(name)
        if vm is None:
            problems.append(f"{where}.vms: the oVirt scenario has no VM {name!r}")
            continue
        if not vm.disks:
            problems.append(f"{where}.vms: VM {name!r} has no disk to migrate")
        nics[f"VM {name!r}"] = [nic.network for nic in vm.nics if nic.network]
    problems += _check_networks(where, plan, nics, ovirt.network_names())
    domains = {OVIRT_STORAGE_DOMAIN}
    problems += _check_map_keys(where, "storage", set(plan.storage), domains)
    if plan.vms and OVIRT_STORAGE_DOMAIN not in plan.storage:
        problems.append(f"{where}.storage: storage domain {OVIRT_STORAGE_DOMAIN!r} is not mapped")
    return problems


def _check_openstack(where: str, plan: PlanSpec, cloud: os_sc.Scenario | None) -> list[str]:
    if cloud is None:
        return [f"{where}: source openstack, but the scenario has no openstack section"]
    problems: list[str] = []
    servers = {s.name: s for s in cloud.servers}
    flavors = {f.name for f in cloud.flavors}
    default_type = cloud.volume_types[0] if cloud.volume_types else "standard"
    nics: dict[str, list[str]] = {}
    used_storage: set[str] = set()
    for name in plan.vms:
        srv = servers.get(name)
        if srv is None:
            problems.append(f"{where}.vms: the OpenStack scenario has no server {name!r}")
            continue
        if srv.flavor not in flavors:
            problems.append(f"openstack.servers: {name!r} names no flavor of the scenario")
        nics[f"server {name!r}"] = list(srv.networks)
        used_storage.add(GLANCE if srv.boot == "image" else default_type)
        used_storage |= {v.type or default_type for v in srv.volumes}
    problems += _check_networks(where, plan, nics, {n.name for n in cloud.networks})
    known_storage = {*cloud.volume_types, GLANCE}
    problems += _check_map_keys(where, "storage", set(plan.storage), known_storage)
    problems += [
        f"{where}.storage: {s!r} (used by the planned servers) is not mapped"
        for s in sorted(used_storage - set(plan.storage))
    ]
    return problems
