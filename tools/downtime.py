"""How many source VMs a migration had down at once, from the simulators' power timelines.

Why: a plan admits a VM for migration before its source is touched, and the point of
admission is to bound how many source VMs are down at the same moment. The simulators record
every VM's power changes (``sim/power.py``) and serve them as ``GET /sim/power-timeline``;
the functions here fetch them (``ovirt_power_timelines``, ``openstack_power_timelines``,
``Stack.power_timelines`` for both) and count them (``down_at``, ``max_down``,
``down_intervals``). The counting is pure: a timeline is any sequence of ``(at, state)``
tuples (or ``Change``), oldest first, ``state`` ``"up"`` or ``"down"``, times in epoch
seconds. Before its first entry a VM's state is unknown (it did not exist yet): it is
counted neither up nor down.
"""

from __future__ import annotations

import bisect
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

UP, DOWN = "up", "down"
TIMELINE_PATH = "/sim/power-timeline"

Entry = tuple[float, str] | tuple[float, str, str]
Timeline = Sequence[Entry]


class Change(NamedTuple):
    """One timeline entry as a simulator serves it: ``status`` is the raw status."""

    at: float
    state: str
    status: str


@dataclass(frozen=True)
class VmPower:
    """One source VM's timeline, with what identifies it to a reader."""

    vm_id: str
    name: str
    source: str  # "ovirt" | "openstack"
    changes: tuple[Change, ...]

    @property
    def timeline(self) -> list[tuple[float, str]]:
        return [(c.at, c.state) for c in self.changes]


# ---- counting ------------------------------------------------------------------------------


def state_at(timeline: Timeline, t: float) -> str | None:
    """The VM's state at ``t`` (its last entry at or before ``t``), or None before its first
    entry."""
    i = bisect.bisect_right(timeline, t, key=lambda e: e[0])
    return timeline[i - 1][1] if i else None


def down_at(timelines: Mapping[str, Timeline], t: float) -> int:
    """How many VMs are down at ``t``."""
    return sum(state_at(tl, t) == DOWN for tl in timelines.values())


def down_intervals(timeline: Timeline, since: float) -> list[tuple[float, float | None]]:
    """The VM's down time from ``since`` on, as ``(start, end)`` intervals (``end`` None:
    still down). An interval that began before ``since`` starts at ``since``."""
    out: list[tuple[float, float | None]] = []
    start: float | None = None
    for entry in timeline:
        at, state = entry[0], entry[1]
        if state == DOWN and start is None:
            start = at
        elif state == UP and start is not None:
            if at > since:
                out.append((max(start, since), at))
            start = None
    if start is not None:
        out.append((max(start, since), None))
    return out


def max_down(
    timelines: Mapping[str, Timeline],
    since: float,
    until: float | None = None,
    vms: Iterable[str] | None = None,
    ignore_initially_down: bool = True,
) -> int:
    """The most VMs down at the same moment between ``since`` and ``until`` (None: the end
    of the timelines). ``vms`` limits the count to those ids (a plan's VMs); with
    ``ignore_initially_down`` only VMs that were up at ``since`` count, since a VM already
    off before the migration was not taken down by it. Changes at the same instant are
    applied together (a VM coming up as another goes down is not two down at once)."""
    chosen = list(timelines) if vms is None else list(vms)
    unknown = [v for v in chosen if v not in timelines]
    if unknown:
        raise KeyError(f"no timeline for VMs {unknown}")
    current = 0
    deltas: dict[float, int] = {}
    for vm in chosen:
        tl = timelines[vm]
        first = state_at(tl, since)
        if ignore_initially_down and first != UP:
            continue
        was_down = first == DOWN
        current += was_down
        for entry in tl[bisect.bisect_right(tl, since, key=lambda e: e[0]) :]:
            at, is_down = entry[0], entry[1] == DOWN
            if until is not None and at > until:
                break
            if is_down != was_down:
                deltas[at] = deltas.get(at, 0) + (1 if is_down else -1)
                was_down = is_down
    best = current
    for at in sorted(deltas):
        current += deltas[at]
        best = max(best, current)
    return best


def as_users_see(timeline: Timeline, target_up_at: float | None) -> list[tuple[float, str]]:
    """The VM as its users see it: the source's timeline until ``target_up_at`` (when its
    migrated VM took over; None: never), then up for good. A migrated source stays off, but
    the VM is no longer down: what a plan's downtime counts is power-off to target."""
    out = [(e[0], e[1]) for e in timeline if target_up_at is None or e[0] < target_up_at]
    if target_up_at is not None:
        out.append((target_up_at, UP))
    return out


def timelines_of(vms: Mapping[str, VmPower]) -> dict[str, list[tuple[float, str]]]:
    """The bare ``(at, state)`` timelines of what a fetch returned, by VM id."""
    return {vid: vm.timeline for vid, vm in vms.items()}


# ---- fetching ------------------------------------------------------------------------------


def parse(body: Mapping[str, Any], source: str) -> dict[str, VmPower]:
    """A ``/sim/power-timeline`` body as ``VmPower`` by VM id."""
    return {
        vid: VmPower(
            vid,
            str(vm["name"]),
            source,
            tuple(
                Change(float(e["at"]), str(e["state"]), str(e["status"])) for e in vm["timeline"]
            ),
        )
        for vid, vm in body["vms"].items()
    }


async def fetch_power_timelines(
    sim_url: str, *, source: str, headers: Mapping[str, str], verify: ssl.SSLContext | bool
) -> dict[str, VmPower]:
    """``GET {sim_url}/sim/power-timeline`` with the simulator's credentials in
    ``headers``."""
    async with httpx.AsyncClient(verify=verify, timeout=30) as client:
        r = await client.get(sim_url.rstrip("/") + TIMELINE_PATH, headers=dict(headers))
        r.raise_for_status()
        return parse(r.json(), source)


async def ovirt_power_timelines(
    engine_url: str, *, user: str, password: str, ca_file: Path
) -> dict[str, VmPower]:
    """The oVirt engine simulator's timelines (``engine_url`` is ``Engine.url`` or its
    ``api_url``): an SSO token as any engine client gets one, logged out afterwards."""
    base = engine_url.removesuffix("/").removesuffix("/ovirt-engine/api")
    verify = ssl.create_default_context(cafile=str(ca_file))
    async with httpx.AsyncClient(verify=verify, timeout=30) as client:
        form = {
            "grant_type": "password",
            "scope": "ovirt-app-api",
            "username": user,
            "password": password,
        }
        r = await client.post(f"{base}/ovirt-engine/sso/oauth/token", data=form)
        r.raise_for_status()
        token = str(r.json()["access_token"])
        try:
            r = await client.get(base + TIMELINE_PATH, headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            return parse(r.json(), "ovirt")
        finally:
            await client.post(f"{base}/ovirt-engine/services/sso-logout", data={"token": token})


async def openstack_power_timelines(
    sim_url: str, *, token: str, ca_file: Path
) -> dict[str, VmPower]:
    """The OpenStack simulator's timelines (``sim_url`` is ``Cloud.sim_url``); ``token`` is
    any token the cloud's Keystone accepts, as for ``/sim/faults``."""
    verify = ssl.create_default_context(cafile=str(ca_file))
    return await fetch_power_timelines(
        sim_url, source="openstack", headers={"X-Auth-Token": token}, verify=verify
    )
