"""Plans: what to migrate, where, with which maps, names and limits, and their validation.

A plan is written in one step: its providers and maps must exist (else 422), its VMs are
resolved to ids (names looked up, a selector listed once), then it is validated against the
inventory and stored with the problems found, ``NotReady`` if any is an error, ``Ready``
otherwise. A plan that is running cannot be changed (409; cancel it first) but for its
cutover time (``launching.set_cutover``), an archived one is read-only until unarchived.
``If-Match: <revision>`` makes a change conditional (412).

When the inventory says something changed about a plan's providers, the plan is marked
``stale`` and validated again by ``Revalidator`` within ``HOIST_PLANNER_REVALIDATE_SECONDS``,
so a plan's problems follow the world without the user asking.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.planner import db, hooks, maps, planvms, validating
from services.planner.db import PlanRow, plan_row
from services.planner.errors import Conflict, Invalid, NotFound, PreconditionFailed
from services.planner.inventoryclient import (
    LIST_THRESHOLD,
    InventoryClient,
    InventoryUnavailable,
    Obj,
)
from services.planner.model import (
    DEFAULT_PRECOPY_MINUTES,
    PlanCreate,
    PlanUpdate,
    VmRef,
    VmSelector,
)
from services.planner.planvms import VMS_SHOWN
from services.planner.problems import Result
from shared.ids import is_uuid
from shared.payloads import ProviderType
from shared.pipeline import PLAN_VM_IN_FLIGHT, PlanVmPhase
from shared.settings import PlannerSettings

log = logging.getLogger("hoist.planner.plans")

NOT_READY, READY, RUNNING = "NotReady", "Ready", "Running"


async def find(conn: AsyncConnection, ref: str, *, lock: bool = False) -> PlanRow:
    """A plan by id (when ``ref`` is a UUID) or by name; ``lock``: ``FOR UPDATE``."""
    p = db.plans
    column = p.c.id if is_uuid(ref) else p.c.name
    q = select(p).where(column == ref)
    if lock:
        q = q.with_for_update()
    row = (await conn.execute(q)).mappings().first()
    if row is None:
        raise NotFound(f"no plan {ref!r}")
    return plan_row(row)


def limits_of(row: Mapping[str, Any], settings: PlannerSettings) -> dict[str, int]:
    """The plan's limits, the service's defaults for those it leaves out (so a changed
    default applies to every plan that did not choose)."""
    given = row["limits"] or {}
    return {
        "maxDisksInFlight": given.get("maxDisksInFlight") or settings.max_disks_in_flight,
        "maxDisksInFlightPerSource": given.get("maxDisksInFlightPerSource")
        or settings.max_disks_in_flight_per_source,
        "maxVmsInFlight": given.get("maxVmsInFlight") or settings.max_vms_in_flight,
    }


def public(row: PlanRow, settings: PlannerSettings, vm_count: int | None = None) -> dict[str, Any]:
    """The plan as the API shows it (camelCase, ISO-8601 times, limits with defaults), its
    first ``VMS_SHOWN`` VMs only; ``vm_count``: how many it has, when ``row`` holds only the
    first (read with ``planvms.SHOWN``)."""
    count = len(row["vms"]) if vm_count is None else vm_count
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "sourceProvider": row["source_provider"],
        "targetProvider": row["target_provider"],
        "targetNamespace": row["target_namespace"],
        "networkMap": row["network_map"],
        "storageMap": row["storage_map"],
        "migrationType": row["migration_type"],
        "targetPowerState": row["target_power_state"],
        "transferNetwork": row["transfer_network"],
        "naming": row["naming"],
        "limits": limits_of(row, settings),
        "cutover": row["cutover"].isoformat() if row["cutover"] else None,
        "cutoverRevision": row["cutover_revision"],
        "precopyIntervalMinutes": row["precopy_interval_minutes"],
        "convertGuest": row["convert_guest"],
        "hooks": row["hooks"],
        "vmSelector": row["selector"],
        "vms": row["vms"][:VMS_SHOWN],
        "vmCount": count,
        "vmsNext": planvms.encode_cursor(VMS_SHOWN) if count > VMS_SHOWN else None,
        "phase": row["phase"],
        "archived": row["archived"],
        "problems": row["problems"],
        "ready": not any(p["severity"] == "error" for p in row["problems"]),
        "validatedAt": row["validated_at"].isoformat() if row["validated_at"] else None,
        "migrationId": row["migration_id"],
        "revision": row["revision"],
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


# --- resolving what a plan names ------------------------------------------------------------


async def _map_id(conn: AsyncConnection, kind: str, ref: str, loc: str) -> str:
    try:
        return str((await maps.find(conn, kind, ref))["id"])
    except NotFound:
        raise Invalid([(["body", loc], "not_found", f"no {kind} map {ref!r}")]) from None


def selector_filters(selector: Mapping[str, Any] | None) -> dict[str, str]:
    """The inventory list filters of a selector (as the API takes it, or as stored)."""
    return {
        k: str(selector[k]) for k in ("search", "status", "parent") if selector and selector.get(k)
    }


async def resolve_vms(
    inv: InventoryClient, source_id: str, refs: list[VmRef] | None, selector: VmSelector | None
) -> tuple[list[dict[str, Any]], dict[str, Obj]]:
    """The plan's VMs as ``[{id, name?, targetName?, targetPowerState?}]``; a name no VM has
    stays a name (validation reports it), a name two VMs share is refused (which one would
    it be?). Also the VM objects read on the way (id -> object), which validation need not
    read again."""
    if selector is not None:
        filters = selector_filters(selector.model_dump(by_alias=True, exclude_none=True))
        found = await inv.list(source_id, "vms", **filters)
        worst = {"Critical": ("Critical",), "Warning": ("Critical", "Warning")}.get(
            selector.exclude_concerns or "", ()
        )
        chosen = [
            {"id": vm["id"], "name": vm["name"]}
            for vm in found
            if selector.matches_name(vm["name"])
            and not any(c["category"] in worst for c in vm.get("concerns") or [])
        ]
        if not chosen:
            raise Invalid([(["body", "vmSelector"], "empty", "the selector matches no VM")])
        return chosen, {vm["id"]: vm for vm in found}
    refs = refs or []
    names = [r.name for r in refs if r.name is not None]
    by_name: dict[str, list[dict[str, Any]]] = {}
    if len(names) > LIST_THRESHOLD:
        for vm in await inv.list(source_id, "vms"):
            by_name.setdefault(vm["name"], []).append(vm)
    elif names:
        pages = await asyncio.gather(*(inv.list(source_id, "vms", name=n) for n in names))
        for n, page in zip(names, pages, strict=True):
            by_name[n] = page
    out: list[dict[str, Any]] = []
    problems: list[tuple[list[str | int], str, str]] = []
    for i, r in enumerate(refs):
        entry: dict[str, Any] = {}
        if r.id is not None:
            entry["id"] = r.id
        else:
            assert r.name is not None
            matches = by_name.get(r.name, [])
            if len(matches) > 1:
                problems.append(
                    (
                        ["body", "vms", i],
                        "ambiguous",
                        f"{len(matches)} VMs are named {r.name!r}; name this one by id",
                    )
                )
                continue
            if matches:
                entry["id"] = matches[0]["id"]
            entry["name"] = r.name
        if r.target_name:
            entry["targetName"] = r.target_name
        if r.target_power_state is not None:
            entry["targetPowerState"] = r.target_power_state.value
        if r.convert_guest is not None:
            entry["convertGuest"] = r.convert_guest
        if r.hooks is not None:
            entry["hooks"] = hooks.stored(r.hooks)
        out.append(entry)
    if problems:
        raise Invalid(problems)
    return out, {vm["id"]: vm for found in by_name.values() for vm in found}


async def _context(
    conn: AsyncConnection, plan: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], frozenset[str], dict[str, str]]:
    """The plan's maps, the VMs its earlier migrations migrated, and the target names other
    plans are migrating into the same namespace right now."""
    nm = dict((await conn.execute(select(db.network_maps).where(
        db.network_maps.c.id == plan["network_map"]))).mappings().one())  # fmt: skip
    sm = dict((await conn.execute(select(db.storage_maps).where(
        db.storage_maps.c.id == plan["storage_map"]))).mappings().one())  # fmt: skip
    done = frozenset(
        (
            await conn.execute(
                select(db.vms.c.vm_id)
                .where(
                    db.vms.c.plan_id == plan["id"], db.vms.c.phase == PlanVmPhase.SUCCEEDED.value
                )
                .distinct()
            )
        ).scalars()
    )
    taken_rows = await conn.execute(
        select(db.vms.c.target_name, db.plans.c.name)
        .join(db.plans, db.plans.c.id == db.vms.c.plan_id)
        .where(
            db.plans.c.id != plan["id"],
            db.plans.c.target_provider == plan["target_provider"],
            db.plans.c.target_namespace == plan["target_namespace"],
            db.vms.c.phase.in_([p.value for p in PLAN_VM_IN_FLIGHT]),
        )
    )
    taken = {str(n): str(p) for n, p in taken_rows.all()}
    return nm, sm, done, taken


async def check(
    conn: AsyncConnection,
    inv: InventoryClient,
    plan: dict[str, Any],
    known: dict[str, Obj] | None = None,
) -> Result:
    """Validate a plan (a row, or the values about to be written); ``known``: source VMs
    read from the inventory while resolving them, moments ago."""
    nm, sm, done, taken = await _context(conn, plan)
    return await validating.validate(
        inv,
        validating.PlanInput(
            id=plan["id"],
            name=plan["name"],
            source_provider=plan["source_provider"],
            target_provider=plan["target_provider"],
            target_namespace=plan["target_namespace"],
            migration_type=plan["migration_type"],
            transfer_network=plan["transfer_network"],
            naming=plan["naming"] or {},
            vms=plan["vms"],
            convert_guest=bool(plan.get("convert_guest")),
            hooks=list(plan.get("hooks") or []),
            hook_specs=await hooks.specs(conn, plan.get("hooks") or [], plan["vms"]),
            network_map=nm,
            storage_map=sm,
            done=done,
            taken=taken,
            known_vms=known or {},
            selector_filters=selector_filters(plan.get("selector")),
        ),
    )


def outcome(plan: dict[str, Any], res: Result, keep_phase: bool) -> dict[str, Any]:
    """Columns a validation sets: problems, names found, and the phase it implies."""
    vms = [dict(v, name=res.names[v["id"]]) if v.get("id") in res.names else v for v in plan["vms"]]
    phase = plan.get("phase")
    if not keep_phase or phase in (None, NOT_READY, READY):
        phase = READY if res.ok else NOT_READY
    return {
        "vms": vms,
        "problems": [p.as_dict() for p in res.problems],
        "validated_at": datetime.now(UTC),
        "stale": False,
        "phase": phase,
    }


# --- writing --------------------------------------------------------------------------------


async def create(engine: AsyncEngine, inv: InventoryClient, body: PlanCreate) -> PlanRow:
    source = await maps.provider(inv, body.source_provider, "sourceProvider", maps.SOURCE_TYPES)
    target = await maps.provider(
        inv, body.target_provider, "targetProvider", (ProviderType.KUBEVIRT,)
    )
    async with engine.connect() as conn:
        nm = await _map_id(conn, "network", body.network_map, "networkMap")
        sm = await _map_id(conn, "storage", body.storage_map, "storageMap")
    vms, known = await resolve_vms(inv, source["id"], body.vms, body.vm_selector)
    plan: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": body.name,
        "description": body.description,
        "source_provider": source["id"],
        "target_provider": target["id"],
        "target_namespace": body.target_namespace,
        "network_map": nm,
        "storage_map": sm,
        "migration_type": body.migration_type.value,
        "target_power_state": body.target_power_state.value,
        "transfer_network": body.transfer_network,
        "naming": body.naming.model_dump(),
        "limits": body.limits.model_dump(by_alias=True, exclude_none=True),
        "cutover": body.cutover,
        "precopy_interval_minutes": body.precopy_interval_minutes,
        "convert_guest": body.convert_guest,
        "hooks": hooks.stored(body.hooks),
        "selector": body.vm_selector.model_dump(by_alias=True, exclude_none=True)
        if body.vm_selector
        else None,
        "vms": vms,
    }
    async with engine.connect() as conn:
        await hooks.check_refs(conn, plan["hooks"], plan["vms"])
        res = await check(conn, inv, plan, known)
    plan.update(outcome(plan, res, keep_phase=False))
    try:
        async with engine.begin() as conn:
            created = await conn.execute(
                sa.insert(db.plans)
                .values(**plan, revision=db.revision_seq.next_value())
                .returning(db.plans)
            )
            return plan_row(created.mappings().one())
    except IntegrityError:
        raise Conflict(["body", "name"], f"a plan named {body.name!r} exists") from None


def _writable(row: Mapping[str, Any], cutover: bool = False) -> None:
    """Refuse a change of an archived or running plan; ``cutover``: the change sets the
    cutover, which a running plan takes from its own route (it must reach the migration)."""
    if row["archived"]:
        raise Conflict(["path", "plan"], "the plan is archived; unarchive it to change it")
    if row["phase"] == RUNNING and cutover:
        raise Conflict(
            ["body", "cutover"],
            f"the plan is running; change its cutover with PUT /api/v1/plans/{row['name']}"
            "/cutover (hoist plans cutover), which tells the running migration",
        )
    if row["phase"] == RUNNING:
        raise Conflict(
            ["path", "plan"],
            "the plan is running; cancel it or wait for it to finish before changing it",
        )


async def update(
    engine: AsyncEngine,
    inv: InventoryClient,
    ref: str,
    body: PlanUpdate,
    if_match: int | None,
    *,
    keep_phase: bool = False,
) -> PlanRow:
    """Change a plan and validate it again; ``keep_phase``: only validate (an empty
    ``body``), which updates the problems but leaves the phase a migration gave the plan
    (Succeeded, Failed, Canceled) as it is, as revalidation in the background does."""
    async with engine.connect() as conn:
        given = body.model_fields_set
        current: dict[str, Any] = dict(await find(conn, ref))
        _writable(current, "cutover" in given)
        plan = dict(current)
        for field, column in (
            ("description", "description"),
            ("target_namespace", "target_namespace"),
            ("migration_type", "migration_type"),
            ("target_power_state", "target_power_state"),
        ):
            value = getattr(body, field)
            if field in given and value is not None:
                plan[column] = getattr(value, "value", value)
        if "transfer_network" in given:
            plan["transfer_network"] = body.transfer_network or None
        if body.network_map is not None:
            plan["network_map"] = await _map_id(conn, "network", body.network_map, "networkMap")
        if body.storage_map is not None:
            plan["storage_map"] = await _map_id(conn, "storage", body.storage_map, "storageMap")
        if body.naming is not None:
            plan["naming"] = body.naming.model_dump()
        if body.limits is not None:
            plan["limits"] = body.limits.model_dump(by_alias=True, exclude_none=True)
        if "precopy_interval_minutes" in given:
            plan["precopy_interval_minutes"] = (
                body.precopy_interval_minutes or DEFAULT_PRECOPY_MINUTES
            )
        if "convert_guest" in given and body.convert_guest is not None:
            plan["convert_guest"] = body.convert_guest
        if "hooks" in given and body.hooks is not None:
            plan["hooks"] = hooks.stored(body.hooks)
        if "cutover" in given and body.cutover != current["cutover"]:
            plan["cutover"] = body.cutover
            plan["cutover_revision"] = current["cutover_revision"] + 1
    known: dict[str, Obj] = {}
    if body.vms is not None or body.vm_selector is not None:
        plan["vms"], known = await resolve_vms(
            inv, plan["source_provider"], body.vms, body.vm_selector
        )
        plan["selector"] = (
            body.vm_selector.model_dump(by_alias=True, exclude_none=True)
            if body.vm_selector
            else None
        )
    async with engine.connect() as conn:
        if "hooks" in given or body.vms is not None:
            await hooks.check_refs(conn, plan["hooks"], plan["vms"])
        res = await check(conn, inv, plan, known)
    plan.update(outcome(plan, res, keep_phase=keep_phase))
    async with engine.begin() as conn:
        row = await find(conn, current["id"], lock=True)
        _writable(row, "cutover" in given)
        expected = if_match if if_match is not None else current["revision"]
        if row["revision"] != expected:
            raise PreconditionFailed(
                f"the plan changed (revision {row['revision']}, not {expected}); read it again"
            )
        changed = {k: v for k, v in plan.items() if k not in ("id", "name", "created_at")}
        changed.update(revision=db.revision_seq.next_value(), updated_at=datetime.now(UTC))
        updated = await conn.execute(
            sa.update(db.plans)
            .where(db.plans.c.id == row["id"])
            .values(**changed)
            .returning(db.plans)
        )
        return plan_row(updated.mappings().one())


async def set_archived(engine: AsyncEngine, ref: str, archived: bool) -> PlanRow:
    async with engine.begin() as conn:
        row = await find(conn, ref, lock=True)
        if row["phase"] == RUNNING:
            raise Conflict(["path", "plan"], "a running plan cannot be archived; cancel it first")
        if row["archived"] == archived:
            return row
        updated = await conn.execute(
            sa.update(db.plans)
            .where(db.plans.c.id == row["id"])
            .values(
                archived=archived,
                revision=db.revision_seq.next_value(),
                updated_at=datetime.now(UTC),
            )
            .returning(db.plans)
        )
        return plan_row(updated.mappings().one())


async def remove(engine: AsyncEngine, ref: str) -> None:
    async with engine.begin() as conn:
        row = await find(conn, ref, lock=True)
        if row["phase"] == RUNNING:
            raise Conflict(["path", "plan"], "a running plan cannot be deleted; cancel it first")
        await conn.execute(sa.delete(db.plans).where(db.plans.c.id == row["id"]))


async def listing(
    conn: AsyncConnection,
    *,
    archived: bool = False,
    phase: str | None = None,
    provider: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[tuple[PlanRow, int]]:
    """A page of plans by name (``limit + 1`` rows: one more says there is a next page),
    each with its first VMs and their count (``planvms.shown``)."""
    p = db.plans
    q = select(*planvms.SHOWN).where(p.c.archived.is_(archived)).order_by(p.c.name).limit(limit + 1)
    if phase is not None:
        q = q.where(p.c.phase == phase)
    if provider is not None:
        q = q.where((p.c.source_provider == provider) | (p.c.target_provider == provider))
    if after is not None:
        q = q.where(p.c.name > after)
    return [planvms.shown(r) for r in (await conn.execute(q)).mappings()]


# --- following the inventory ----------------------------------------------------------------


async def mark_stale(engine: AsyncEngine, provider_id: str) -> int:
    """Plans of this provider that may no longer be valid (cheap: one indexed update)."""
    p = db.plans
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(p)
            .where(
                (p.c.source_provider == provider_id) | (p.c.target_provider == provider_id),
                ~p.c.stale,
                ~p.c.archived,
                p.c.phase != RUNNING,
            )
            .values(stale=True)
        )
    return int(result.rowcount or 0)


class Revalidator:
    """Validates stale plans again, each at most once per ``revalidate_seconds``.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so replicas share the work without
    validating one plan twice."""

    def __init__(self, engine: AsyncEngine, inv: InventoryClient, settings: PlannerSettings):
        self.engine = engine
        self.inv = inv
        self.every = settings.revalidate_seconds

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except InventoryUnavailable as exc:
                log.warning("revalidation waits for the inventory: %s", exc)
            except Exception:
                log.exception("revalidation round failed; trying again next round")
            await asyncio.sleep(min(self.every, 5.0))

    async def round(self) -> int:
        p = db.plans
        due = datetime.now(UTC) - timedelta(seconds=self.every)
        async with self.engine.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        select(p.c.id)
                        .where(
                            p.c.stale,
                            ~p.c.archived,
                            p.c.phase != RUNNING,
                            sa.or_(p.c.validated_at.is_(None), p.c.validated_at < due),
                        )
                        .limit(50)
                    )
                )
                .scalars()
                .all()
            )
        for pid in ids:
            await self.one(pid)
        return len(ids)

    async def one(self, plan_id: str) -> None:
        async with self.engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        select(db.plans)
                        .where(db.plans.c.id == plan_id)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .first()
            )
            if row is None or not row["stale"] or row["phase"] == RUNNING:
                return
            plan = dict(row)
            res = await check(conn, self.inv, plan)
            found = outcome(plan, res, keep_phase=True)
            if found["problems"] == row["problems"] and found["phase"] == row["phase"]:
                await conn.execute(
                    sa.update(db.plans)
                    .where(db.plans.c.id == plan_id)
                    .values(stale=False, validated_at=found["validated_at"])
                )
                return
            await conn.execute(
                sa.update(db.plans)
                .where(db.plans.c.id == plan_id)
                .values(**found, revision=db.revision_seq.next_value())
            )
            log.info("plan %s validated again: %d problems", row["name"], len(res.problems))
