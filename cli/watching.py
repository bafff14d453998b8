"""``hoist watch`` and ``hoist plans status``: a plan's migration as the planner reports it.

Everything comes from the planner's status routes: the VM summaries carry the VM's bytes,
rate and ETA (``progress``, ``rateBytesPerSecond``, ``etaSeconds``), and a VM's pipeline
has one DiskTransfer task per disk with the same fields, so one service answers all of it.
Pipelines are read only for VMs that are not final (and once more when one ends), so a
large plan costs a request per running VM per interval, not per VM.

A VM that waits to be admitted (the plan's VM or disk limits, a source's disk limit, its
turn, or the cutover) carries ``waiting`` in its summary: the orchestrator's note and
reason, its place in line and an estimated start. Every output shows it, as ``Queued —
waiting: ...`` while the VM has not started, so a long queue does not look like a hang.

A warm VM's copies (``cli.precopy``) come from its pipeline too: while it precopies or
makes its final copy, its state reads ``WarmPrecopy — precopy 3 done: 120.0 MiB; next at
15:04:00``, and its disks are those of the copy step when it has no DiskTransfer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from cli import precopy
from cli.client import Api, seg
from cli.output import duration, emit_json, emit_line, err, fields, out, size, styled, table
from cli.runner import Failure, json_mode, output_option, run, state

FINAL = ("Succeeded", "Failed", "Canceled")
TRANSFER = "DiskTransfer"
PIPELINE_FETCHES = 8  # concurrent pipeline reads per poll


async def all_vms(api: Api, plan: str, migration: str | None = None) -> list[dict[str, Any]]:
    """Every VM summary of the plan's current (or given) migration, following cursors."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await api.get(
            "planner",
            f"/api/v1/plans/{seg(plan)}/vms",
            migration=migration,
            limit=1000,
            cursor=cursor,
        )
        items.extend(page["items"])
        cursor = page.get("next")
        if not cursor:
            return items


def disks_of(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The disks of the copy step: DiskTransfer's (cold), else the warm copy step furthest
    along (FinalCopy once it started, else WarmPrecopy)."""
    steps = {s["name"]: s for s in view.get("pipeline") or []}
    if TRANSFER in steps:
        return list(steps[TRANSFER].get("tasks") or [])
    final = steps.get(precopy.FINAL_COPY)
    if final is not None and final["state"] != "Pending":
        return list(final.get("tasks") or [])
    return list((steps.get(precopy.WARM_PRECOPY) or {}).get("tasks") or [])


@dataclass
class Snapshot:
    plan: dict[str, Any]
    migration: dict[str, Any]
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    disks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: A warm VM's last copy (``cli.precopy.of``), by VM id.
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.migration["phase"] in FINAL


def _migration_of(plan: dict[str, Any], mid: str) -> dict[str, Any]:
    st = plan["status"]
    for m in [st.get("migration"), *st.get("history", [])]:
        if m and m["id"] == mid:
            return dict(m)
    raise Failure(f"plan {plan['name']} has no migration {mid}")


async def poll(api: Api, plan_id: str, mid: str, prev: Snapshot | None) -> Snapshot:
    plan = await api.get("planner", f"/api/v1/plans/{seg(plan_id)}")
    snap = Snapshot(plan, _migration_of(plan, mid))
    for vm in await all_vms(api, plan_id, mid):
        snap.vms[vm["id"]] = vm
    before = prev.vms if prev else {}
    wanted = [
        vid
        for vid, vm in snap.vms.items()
        if vm["phase"] not in FINAL or before.get(vid, {}).get("phase") not in FINAL
    ]
    if prev is not None:
        snap.disks = {k: v for k, v in prev.disks.items() if k not in wanted}
        snap.copies = {k: v for k, v in prev.copies.items() if k not in wanted}
    gate = asyncio.Semaphore(PIPELINE_FETCHES)

    async def fetch(vid: str) -> None:
        async with gate:
            view = await api.get(
                "planner", f"/api/v1/plans/{seg(plan_id)}/vms/{seg(vid)}", migration=mid
            )
        snap.disks[vid] = disks_of(view)
        found = precopy.of(view)
        if found is not None:
            snap.copies[vid] = found

    await asyncio.gather(*(fetch(v) for v in wanted))
    return snap


async def copies(api: Api, plan_id: str, mid: str, vms: list[dict[str, Any]]) -> dict[str, Any]:
    """The last copy of each VM at a warm copy step (a pipeline read each, only for them)."""
    found: dict[str, dict[str, Any]] = {}
    gate = asyncio.Semaphore(PIPELINE_FETCHES)

    async def fetch(vid: str) -> None:
        async with gate:
            view = await api.get(
                "planner", f"/api/v1/plans/{seg(plan_id)}/vms/{seg(vid)}", migration=mid
            )
        copy = precopy.of(view)
        if copy is not None:
            found[vid] = copy

    warm = [v["id"] for v in vms if v["step"] in precopy.WARM_STEPS and v["phase"] not in FINAL]
    await asyncio.gather(*(fetch(v) for v in warm))
    return found


def _rate(value: float | None) -> str:
    return f"{size(value)}/s" if value else "-"


def _bytes(p: dict[str, Any]) -> str:
    return f"{size(p['completed'])} / {size(p['total'])}"


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def wait_note(wait: dict[str, Any]) -> str:
    """The orchestrator's note, or one made of the wait's fields when it gave none."""
    note = wait.get("note")
    if isinstance(note, str) and note.strip():
        return note.strip()
    parts = [f"waiting: {wait.get('reason') or 'to be admitted'}"]
    if wait.get("held") is not None and wait.get("limit") is not None:
        parts.append(f"{wait['held']} of {wait['limit']} in flight")
    if isinstance(wait.get("place"), int):
        parts.append(f"{_ordinal(wait['place'])} in line")
    if wait.get("cutover"):
        parts.append(f"cutover {wait['cutover']}")
    if wait.get("estimatedStart"):
        parts.append(f"starts about {wait['estimatedStart']}")
    return "; ".join(parts)


def vm_state(vm: dict[str, Any], copy: dict[str, Any] | None = None) -> str:
    """What a VM is doing, for people: ``Queued — waiting: ...`` for one waiting to start,
    ``<step> — waiting: ...`` for one waiting later on, ``WarmPrecopy — precopy 3 done:
    ...`` for a warm one copying (``copy``: its last copy), else its step (or final phase)."""
    wait = vm.get("waiting") if vm["phase"] not in FINAL else None
    if wait:
        where = "Queued" if vm["phase"] == "Pending" else (vm["step"] or vm["phase"])
        return f"{where} — {wait_note(wait)}"
    if copy is not None and vm["phase"] not in FINAL and vm["step"] == copy.get("step"):
        return f"{vm['step']} — {precopy.text(copy)}"
    return str(vm["phase"] if vm["phase"] in FINAL or not vm["step"] else vm["step"])


def _vm_key(vm: dict[str, Any], copy: dict[str, Any] | None) -> tuple[Any, ...]:
    wait = vm.get("waiting")
    return (
        vm_state(vm, copy),
        vm["phase"],
        vm["step"],
        vm["progress"]["completed"],
        vm["progress"]["total"],
        vm["rateBytesPerSecond"],
        vm["etaSeconds"],
        vm["cancelRequested"],
        wait_note(wait) if wait else None,
    )


def _disk_key(d: dict[str, Any]) -> tuple[Any, ...]:
    return (
        d["state"],
        d["progress"]["completed"],
        d["progress"]["total"],
        d["rateBytesPerSecond"],
        d["etaSeconds"],
    )


def _vm_line(vm: dict[str, Any], copy: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "vm",
        "id": vm["id"],
        "name": vm["name"],
        "phase": vm["phase"],
        "step": vm["step"],
        "bytesDone": vm["progress"]["completed"],
        "bytesTotal": vm["progress"]["total"],
        "rateBytesPerSecond": vm["rateBytesPerSecond"],
        "etaSeconds": vm["etaSeconds"],
        "cancelRequested": vm["cancelRequested"],
        "error": vm["error"],
        "waiting": vm.get("waiting"),
        "precopy": copy,
        "state": vm_state(vm, copy),
    }


def _disk_line(vid: str, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "disk",
        "vm": vid,
        "id": d["id"],
        "name": d["name"],
        "state": d["state"],
        "bytesDone": d["progress"]["completed"],
        "bytesTotal": d["progress"]["total"],
        "rateBytesPerSecond": d["rateBytesPerSecond"],
        "etaSeconds": d["etaSeconds"],
    }


class Changes:
    """What changed since the last poll, per VM and per disk."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], tuple[Any, ...]] = {}

    def diff(self, snap: Snapshot) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for vid, vm in snap.vms.items():
            copy = snap.copies.get(vid)
            if self.seen.get(("vm", vid)) != (key := _vm_key(vm, copy)):
                self.seen[("vm", vid)] = key
                lines.append(_vm_line(vm, copy))
            for d in snap.disks.get(vid, []):
                if self.seen.get((vid, d["id"])) != (key := _disk_key(d)):
                    self.seen[(vid, d["id"])] = key
                    lines.append(_disk_line(vid, d))
        return lines


class Bars:
    """Rich progress bars: one per VM, its disks under it (a terminal only)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[bytes]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=out,
            refresh_per_second=4,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def _set(self, key: tuple[str, str], label: str, item: dict[str, Any]) -> None:
        p = item["progress"]
        values = dict(
            description=label,
            completed=p["completed"],
            total=p["total"] or None,
            bytes=_bytes(p),
            rate=_rate(item["rateBytesPerSecond"]),
            eta=duration(item["etaSeconds"]),
        )
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(**values)
        else:
            self.progress.update(self.tasks[key], **values)

    def show(self, snap: Snapshot) -> None:
        for vid, vm in snap.vms.items():
            what = escape(vm_state(vm, snap.copies.get(vid)))
            self._set(("vm", vid), f"[bold]{escape(vm['name'])}[/] {what}", vm)
            for d in snap.disks.get(vid, []):
                self._set((vid, d["id"]), f"  └ {d['name']} {d['state']}", d)


def _plain(changes: list[dict[str, Any]], names: dict[str, str]) -> None:
    """Log-friendly lines when stdout is not a terminal: phase and step changes only."""
    for c in changes:
        if c["type"] == "vm":
            done = f"{size(c['bytesDone'])}/{size(c['bytesTotal'])}"
            if c["waiting"] and c["phase"] not in FINAL:
                out.print(Text(f"{c['name']}: {c['state']} {done}"))
            elif c["precopy"] and c["phase"] not in FINAL:
                out.print(Text(f"{c['name']}: {c['phase']} {c['state']} {done}"))
            else:
                out.print(Text(f"{c['name']}: {c['phase']} {c['step'] or ''} {done}"))
        else:
            done = f"{size(c['bytesDone'])}/{size(c['bytesTotal'])}"
            out.print(f"{names.get(c['vm'], c['vm'])} disk {c['name']}: {c['state']} {done}")


def summary(snap: Snapshot, timed_out: bool) -> dict[str, Any]:
    vms = [
        {
            "id": vm["id"],
            "name": vm["name"],
            "phase": vm["phase"],
            "durationSeconds": _seconds(vm["startedAt"], vm["completedAt"]),
            "bytes": vm["progress"]["completed"],
            "error": vm["error"],
        }
        for vm in snap.vms.values()
    ]
    m = snap.migration
    ok = snap.ended and all(v["phase"] == "Succeeded" for v in vms) and not timed_out
    return {
        "type": "summary",
        "plan": snap.plan["name"],
        "planId": snap.plan["id"],
        "migration": {"id": m["id"], "number": m["number"], "phase": m["phase"]},
        "vms": vms,
        "skipped": m["vms"]["skipped"],
        "succeeded": ok,
        "timedOut": timed_out,
    }


def print_summary(doc: dict[str, Any]) -> None:
    m = doc["migration"]
    table(
        ("VM", "result", "duration", "bytes", "error"),
        (
            (
                v["name"],
                styled(v["phase"]),
                duration(v["durationSeconds"]),
                size(v["bytes"]),
                (v["error"] or {}).get("reason", "") if v["error"] else "",
            )
            for v in doc["vms"]
        ),
        title=f"plan {doc['plan']}, migration #{m['number']}: {m['phase']}",
    )
    if doc["skipped"]:
        out.print(f"{doc['skipped']} VMs skipped: an earlier run migrated them")


async def follow(
    api: Api, plan_ref: str, interval: float, timeout: float | None, verbose: bool
) -> int:
    """Follow the plan's current migration until it ends; 0 when every VM succeeded."""
    plan = await api.get("planner", f"/api/v1/plans/{seg(plan_ref)}")
    mid = plan.get("migrationId")
    if not mid:
        raise Failure(
            f"plan {plan['name']} has not been started (hoist plans start {plan['name']})"
        )
    deadline = time.monotonic() + timeout if timeout is not None else None
    changes, snap, timed_out = Changes(), None, False
    bars = Bars() if not json_mode() and out.is_terminal else None
    if bars:
        bars.progress.start()
    try:
        while True:
            snap = await poll(api, plan["id"], mid, snap)
            lines = changes.diff(snap)
            if json_mode():
                for line in lines:
                    emit_line(line)
            elif bars:
                bars.show(snap)
            else:
                _plain(lines, {k: v["name"] for k, v in snap.vms.items()})
            if snap.ended:
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            await asyncio.sleep(interval)
    finally:
        if bars:
            bars.progress.stop()
    doc = summary(snap, timed_out)
    if json_mode():
        emit_line(doc)
    else:
        print_summary(doc)
    if timed_out:
        err.print(
            f"gave up watching after {timeout:g}s: the migration is still {snap.migration['phase']}"
        )
    return 0 if doc["succeeded"] else 1


@click.command("watch")
@click.argument("plan")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds (exit 1).",
)
@output_option
def watch(plan: str, interval: float, timeout: float | None) -> None:
    """Follow a plan's migration with progress bars until it ends; exit 0 when every VM
    succeeded, 1 when any failed or was canceled (or on --timeout)."""

    async def work(api: Api) -> int:
        return await follow(api, plan, interval, timeout, state().verbose)

    run(work)


async def show_status(api: Api, ref: str, verbose: bool) -> None:
    plan = await api.get("planner", f"/api/v1/plans/{seg(ref)}")
    m = plan["status"].get("migration")
    vms = await all_vms(api, plan["id"]) if m else []
    disks: dict[str, list[dict[str, Any]]] = {}
    warm: dict[str, dict[str, Any]] = {}
    if verbose and m:
        snap = await poll(api, plan["id"], m["id"], None)
        vms, disks, warm = list(snap.vms.values()), snap.disks, snap.copies
    elif m:
        warm = await copies(api, plan["id"], m["id"], vms)
    if json_mode():
        doc: dict[str, Any] = {
            "plan": plan["name"],
            "planId": plan["id"],
            "phase": plan["phase"],
            "migration": m,
            "vms": [dict(v, precopy=warm.get(v["id"])) for v in vms],
        }
        if verbose:
            doc["disks"] = disks
        emit_json(doc)
        return
    fields([("plan", plan["name"]), ("phase", styled(plan["phase"]))])
    if not m:
        out.print("not started")
        return
    counts = m["vms"]
    out.print(
        f"migration #{m['number']} {m['phase']}: {counts['total']} VMs, {counts['succeeded']} "
        f"succeeded, {counts['failed']} failed, {counts['canceled']} canceled, "
        f"{counts['running']} running, {counts['pending']} pending, {counts['skipped']} skipped; "
        f"{_bytes(m['progress'])}"
    )
    rows: list[tuple[Any, ...]] = []
    for vm in vms:
        error = vm["error"] or {}
        rows.append(
            (
                vm["name"],
                styled(vm["phase"]),
                vm_state(vm, warm.get(vm["id"]))
                if vm.get("waiting") or vm["id"] in warm
                else vm["step"] or "",
                _bytes(vm["progress"]),
                _rate(vm["rateBytesPerSecond"]),
                duration(vm["etaSeconds"]),
                Text(f"{error.get('reason', '')} {error.get('message', '')}".strip(), style="red"),
            )
        )
        for d in disks.get(vm["id"], []):
            rows.append(
                (
                    f"  └ {d['name']}",
                    styled(d["state"]),
                    (warm.get(vm["id"]) or {}).get("step") or TRANSFER,
                    _bytes(d["progress"]),
                    _rate(d["rateBytesPerSecond"]),
                    duration(d["etaSeconds"]),
                    "",
                )
            )
    table(("VM", "phase", "step", "bytes", "rate", "ETA", "error"), rows)
