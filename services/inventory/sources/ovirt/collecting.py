"""The full load and the event-driven refresh of one engine.

Load: the newest event id first (so whatever changes while loading shows up in the next
refresh), then every collection with one call each, three at once on separate
connections: VMs with ``follow=nics,disk_attachments`` (one call for all VMs, their NICs
and attachments, instead of two calls per VM), all disks, and the small collections. VMs
are joined with the disk list here rather than asking the engine to embed every disk in
its VM: the disk list is needed anyway, and the engine would send each disk twice.

Refresh: ``/events?from=<last id>``, then reload only what the events name, the way the
engine's events name things:

- an event with a VM reference (almost all VM and VM-disk events; the engine's events
  have no disk reference) reloads that VM with ``follow=nics,disk_attachments.disk``, and
  so its disks; a VM that now answers 404 is deleted, and each of its former disks that
  is gone too;
- an event naming only a storage domain (a floating disk changed, a domain changed) reloads
  the domain, relists its disks and compares them with the last known ones: changed or
  gone disks are emitted or deleted, and the VMs they are attached to are reloaded (their
  embedded disk summary changed);
- an event naming only a host, cluster or data center reloads that object (a data center
  also relists networks and vNIC profiles, whose events name their data center).

More touched VMs than ``FULL_RELOAD_VMS`` (a mass change, or events missed during a long
outage) reload everything instead: one list is cheaper than thousands of single reads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import ovirtsdk4 as sdk

from services.inventory.items import KINDS_BY_TYPE, Batch, Item
from services.inventory.sources.ovirt import normalizing as norm
from shared.payloads import ProviderType
from shared.sources.ovirt_connect import EngineClient

T = TypeVar("T")

KINDS = KINDS_BY_TYPE[ProviderType.OVIRT]
VM_FOLLOW = "nics,disk_attachments"
VM_FOLLOW_DISKS = "nics,disk_attachments.disk"
FULL_RELOAD_VMS = 2000

_SMALL: tuple[tuple[str, str, Callable[[Any], Item]], ...] = (
    ("data_centers_service", "datacenter", norm.datacenter),
    ("clusters_service", "cluster", norm.cluster),
    ("hosts_service", "host", norm.host),
    ("networks_service", "network", norm.network),
    ("vnic_profiles_service", "nicprofile", norm.nic_profile),
    ("storage_domains_service", "storagedomain", norm.storage_domain),
    ("disk_profiles_service", "diskprofile", norm.disk_profile),
)


def _get_or_none(service: Any, **query: Any) -> Any | None:
    try:
        return service.get(**query)
    except sdk.NotFoundError:
        return None


def _newest_event(conn: sdk.Connection) -> int:
    events = conn.system_service().events_service().list(max=1)
    return max((int(e.id) for e in events), default=0)


def _chunks(ids: Sequence[str], parts: int) -> list[list[str]]:
    size = max(1, -(-len(ids) // parts))
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


class Collector:
    """The load/refresh state of one engine: the last event id and what VMs and disks were
    last seen (to re-emit the VMs of a changed disk, and to find disks gone with a VM)."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.lookups = norm.Lookups()
        self.last_event: int | None = None
        self._disks: dict[str, Item] = {}
        self._vm_disks: dict[str, list[str]] = {}

    # ---- full load -------------------------------------------------------------------------

    async def load(self) -> Batch:
        last = await self.client.run(_newest_event)

        def small(conn: sdk.Connection) -> dict[str, list[Any]]:
            system = conn.system_service()
            return {kind: getattr(system, name)().list() for name, kind, _ in _SMALL}

        def disks(conn: sdk.Connection) -> list[Any]:
            return list(conn.system_service().disks_service().list())

        def vms(conn: sdk.Connection) -> list[Any]:
            return list(conn.system_service().vms_service().list(follow=VM_FOLLOW))

        raw_small, raw_disks, raw_vms = await asyncio.gather(
            self.client.run(small), self.client.run(disks), self.client.run(vms)
        )
        # normalizing 10,000 VMs takes a few hundred ms of CPU: off the event loop too
        batch = await self.client.calls(self._normalize_all, raw_small, raw_disks, raw_vms)
        self.last_event = last
        return batch

    def _normalize_all(
        self, raw_small: dict[str, list[Any]], raw_disks: list[Any], raw_vms: list[Any]
    ) -> Batch:
        batch = Batch(complete=frozenset(KINDS))
        lookups = norm.Lookups()
        for _, kind, normalize in _SMALL:
            batch.extend(normalize(o) for o in raw_small[kind])
        lookups.add_profiles(raw_small["nicprofile"])
        lookups.cluster_bios = {
            str(c.id): bios for c in raw_small["cluster"] if (bios := norm.enum(c.bios_type))
        }
        disks = {}
        for d in raw_disks:
            summary = norm.disk_summary(d)
            item = norm.disk(d, summary)
            disks[item.id] = item
            lookups.disks[item.id] = summary
        batch.extend(disks.values())
        vm_disks: dict[str, list[str]] = {}
        for v in raw_vms:
            item = norm.vm(v, lookups)
            vm_disks[item.id] = [d["id"] for d in item.data["disks"]]
            batch.items.append(item)
        lookups.disks = {}  # only needed for the join; a refresh reads disks embedded
        self.lookups, self._disks, self._vm_disks = lookups, disks, vm_disks
        return batch

    # ---- refresh ---------------------------------------------------------------------------

    async def refresh(self) -> Batch:
        if self.last_event is None:
            return await self.load()
        since = self.last_event

        def read(conn: sdk.Connection) -> list[Any]:
            return list(conn.system_service().events_service().list(from_=since))

        events = await self.client.run(read)
        if not events:
            return Batch()
        newest = max(int(e.id) for e in events)
        vms: set[str] = set()
        other: dict[str, set[str]] = {"host": set(), "cluster": set(), "dc": set(), "sd": set()}
        for e in events:
            if e.vm is not None and e.vm.id:
                vms.add(str(e.vm.id))
                continue
            for key, obj in (
                ("host", e.host),
                ("cluster", e.cluster),
                ("dc", e.data_center),
                ("sd", e.storage_domain),
            ):
                if obj is not None and obj.id:
                    other[key].add(str(obj.id))
        if len(vms) > FULL_RELOAD_VMS:
            batch = await self.load()
            return batch
        batch = Batch()
        await self._objects(batch, other)
        vms |= await self._domains(batch, other["sd"])
        await self._vms(batch, sorted(vms))
        self.last_event = max(newest, since)
        return batch

    async def _each(
        self, ids: Sequence[str], fetch: Callable[[sdk.Connection, str], T]
    ) -> dict[str, T]:
        """``fetch(conn, id)`` for every id, spread over the client's connections."""
        if not ids:
            return {}

        def work(conn: sdk.Connection, chunk: list[str]) -> dict[str, T]:
            return {i: fetch(conn, i) for i in chunk}

        parts = await asyncio.gather(
            *(
                self.client.run(functools.partial(work, chunk=chunk))
                for chunk in _chunks(ids, self.client.size)
            )
        )
        return {k: v for part in parts for k, v in part.items()}

    async def _objects(self, batch: Batch, touched: dict[str, set[str]]) -> None:
        """Hosts, clusters and data centers the events name (without a VM)."""
        plan: tuple[tuple[str, str, str, Callable[[Any], Item]], ...] = (
            ("host", "hosts_service", "host_service", norm.host),
            ("cluster", "clusters_service", "cluster_service", norm.cluster),
            ("dc", "data_centers_service", "data_center_service", norm.datacenter),
        )
        for key, collection, single, normalize in plan:
            kind = {"dc": "datacenter"}.get(key, key)

            def fetch(
                conn: sdk.Connection, obj_id: str, c: str = collection, s: str = single
            ) -> Any:
                return _get_or_none(getattr(getattr(conn.system_service(), c)(), s)(obj_id))

            for obj_id, obj in (await self._each(sorted(touched[key]), fetch)).items():
                if obj is None:
                    batch.deleted.append((kind, obj_id))
                    continue
                item = normalize(obj)
                batch.items.append(item)
                if kind == "cluster" and item.data.get("bios_type"):
                    self.lookups.cluster_bios[item.id] = item.data["bios_type"]
        if touched["dc"]:
            await self._networks(batch)

    async def _networks(self, batch: Batch) -> None:
        """Networks and vNIC profiles, relisted (their events name only a data center)."""

        def lists(conn: sdk.Connection) -> tuple[list[Any], list[Any]]:
            system = conn.system_service()
            return (
                list(system.networks_service().list()),
                list(system.vnic_profiles_service().list()),
            )

        networks, profiles = await self.client.run(lists)
        batch.extend(norm.network(n) for n in networks)
        batch.extend(norm.nic_profile(p) for p in profiles)
        batch.complete |= {"network", "nicprofile"}
        self.lookups.profiles = {}
        self.lookups.add_profiles(profiles)

    async def _domains(self, batch: Batch, domains: set[str]) -> set[str]:
        """Reload storage domains and compare their disks; the VMs of changed disks."""
        if not domains:
            return set()

        def fetch(conn: sdk.Connection, sd_id: str) -> tuple[Any, list[Any]]:
            service = conn.system_service().storage_domains_service().storage_domain_service(sd_id)
            sd = _get_or_none(service)
            return sd, ([] if sd is None else list(service.disks_service().list()))

        def profiles(conn: sdk.Connection) -> list[Any]:
            return list(conn.system_service().disk_profiles_service().list())

        found = await self._each(sorted(domains), fetch)
        batch.extend(norm.disk_profile(p) for p in await self.client.run(profiles))
        batch.complete |= {"diskprofile"}
        changed: set[str] = set()
        for sd_id, (sd, disks) in found.items():
            if sd is None:
                batch.deleted.append(("storagedomain", sd_id))
            else:
                batch.items.append(norm.storage_domain(sd))
            seen = set()
            for d in disks:
                item = norm.disk(d)
                seen.add(item.id)
                if self._disks.get(item.id) != item:
                    self._disks[item.id] = item
                    batch.items.append(item)
                    changed.add(item.id)
            for disk_id in [k for k, v in self._disks.items() if v.parent == sd_id]:
                if disk_id not in seen:
                    del self._disks[disk_id]
                    batch.deleted.append(("disk", disk_id))
                    changed.add(disk_id)
        if not changed:
            return set()
        return {vm for vm, disks in self._vm_disks.items() if changed.intersection(disks)}

    async def _vms(self, batch: Batch, ids: list[str]) -> None:
        def fetch(conn: sdk.Connection, vm_id: str) -> Any:
            service = conn.system_service().vms_service().vm_service(vm_id)
            return _get_or_none(service, follow=VM_FOLLOW_DISKS)

        found = await self._each(ids, fetch)
        known = self.lookups.profiles
        if any(
            n.vnic_profile is not None and n.vnic_profile.id not in known
            for v in found.values()
            if v is not None
            for n in v.nics or ()
        ):
            await self._networks(batch)  # a NIC on a profile made since the load
        dropped: set[str] = set()
        for vm_id, v in found.items():
            before = self._vm_disks.pop(vm_id, [])
            if v is None:
                batch.deleted.append(("vm", vm_id))
                dropped.update(before)
                continue
            item = norm.vm(v, self.lookups)
            batch.items.append(item)
            disks = norm.vm_disks(v)
            self._vm_disks[vm_id] = [d.id for d in disks]
            for d in disks:
                self._disks[d.id] = d
            batch.extend(disks)
            dropped.update(set(before) - {d.id for d in disks})
        await self._recheck_disks(batch, dropped)

    async def _recheck_disks(self, batch: Batch, disk_ids: Iterable[str]) -> None:
        """Disks a VM no longer has: removed with it, or now floating."""

        def fetch(conn: sdk.Connection, disk_id: str) -> Any:
            return _get_or_none(conn.system_service().disks_service().disk_service(disk_id))

        for disk_id, d in (await self._each(sorted(disk_ids), fetch)).items():
            if d is None:
                self._disks.pop(disk_id, None)
                batch.deleted.append(("disk", disk_id))
            else:
                item = norm.disk(d)
                self._disks[disk_id] = item
                batch.items.append(item)
