"""HTTP API of the orchestrator service: the execution state of migrations and their VMs.

The planner's ``/api/v1/plans/{plan}/...`` is what users read for status; these routes show
the orchestrator's own truth for operators: each VM's phase, current step, what the step is
waiting for, the lease (which replica runs it), the objects it made, and each step's and
task's row (a failed disk's populator log included).

Errors: 404 for an unknown migration or VM, 422 (``loc`` names the parameter) for a bad
parameter, 503 while the service is starting. Every route requires a bearer token (added by
the runner).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.orchestrator import naming
from services.orchestrator.db import VmRow, migrations, steps, vms
from services.orchestrator.views import MigrationList, MigrationWithVms, VmWithPipeline
from shared.pipeline import VmPhase
from shared.service.answers import errors
from shared.service.app import engine_of
from shared.service.errors import NotFound

router = APIRouter(tags=["orchestrator"])

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
MigrationId = Annotated[str, Path(min_length=1, max_length=36, pattern=PRINTABLE)]
VmId = Annotated[str, Path(min_length=1, max_length=255, pattern=PRINTABLE)]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _migration(row: Any, counts: dict[str, int]) -> dict[str, Any]:
    header = row.header or {}
    return {
        "id": row.id,
        "planId": row.plan_id,
        "planName": row.plan_name,
        "source": (header.get("source") or {}).get("id"),
        "target": (header.get("target") or {}).get("id"),
        "targetNamespace": header.get("target_namespace"),
        "parts": {"received": len(row.parts_seen or []), "total": row.parts},
        "vmsTotal": row.vms_total,
        "vms": counts,
        "cancelRequested": row.cancel_all,
        "createdAt": _iso(row.created_at),
    }


async def _counts(engine: AsyncEngine, ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return out
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(vms.c.migration_id, vms.c.phase, func.count())
            .where(vms.c.migration_id.in_(ids))
            .group_by(vms.c.migration_id, vms.c.phase)
        )
        for migration_id, phase, count in rows:
            out[migration_id][phase] = int(count)
    return out


@router.get(
    "/api/v1/migrations",
    summary="Migrations the orchestrator runs or ran",
    response_model=MigrationList,
)
async def list_migrations(
    request: Request,
    plan: Annotated[str | None, Query(min_length=1, max_length=36, pattern=PRINTABLE)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    engine = engine_of(request)
    query = select(migrations).order_by(migrations.c.created_at.desc()).limit(limit)
    if plan is not None:
        query = query.where(migrations.c.plan_id == plan)
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
    counts = await _counts(engine, [r.id for r in rows])
    return JSONResponse({"items": [_migration(r, counts[r.id]) for r in rows]})


@router.get(
    "/api/v1/migrations/{migration_id}",
    summary="One migration and its VMs",
    response_model=MigrationWithVms,
    responses=errors(404, e404="No such migration"),
)
async def get_migration(
    request: Request,
    migration_id: MigrationId,
    phase: Annotated[VmPhase | None, Query()] = None,
) -> JSONResponse:
    engine = engine_of(request)
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(migrations).where(migrations.c.id == migration_id))
        ).first()
        if row is None:
            raise NotFound(f"no migration {migration_id}")
        query = select(vms).where(vms.c.migration_id == migration_id).order_by(vms.c.position)
        if phase is not None:
            query = query.where(vms.c.phase == phase.value)
        members = list(await conn.execute(query))
    counts = await _counts(engine, [migration_id])
    items = [_vm(VmRow.of(v)) for v in members]
    return JSONResponse({**_migration(row, counts[migration_id]), "items": items})


@router.get(
    "/api/v1/migrations/{migration_id}/vms/{vm_id}",
    summary="One VM's pipeline: steps, tasks, errors, the objects made for it",
    response_model=VmWithPipeline,
    responses=errors(404, e404="No such VM in that migration"),
)
async def get_vm(request: Request, migration_id: MigrationId, vm_id: VmId) -> JSONResponse:
    engine = engine_of(request)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(vms).where(and_(vms.c.migration_id == migration_id, vms.c.vm_id == vm_id))
            )
        ).first()
        if row is None:
            raise NotFound(f"no VM {vm_id} in migration {migration_id}")
        rows = list(
            await conn.execute(
                select(steps)
                .where(and_(steps.c.migration_id == migration_id, steps.c.vm_id == vm_id))
                .order_by(steps.c.started_at.nulls_last(), steps.c.step, steps.c.task)
            )
        )
    pipeline: dict[str, dict[str, Any]] = {}
    for s in rows:
        entry = {
            "state": s.state,
            "startedAt": _iso(s.started_at),
            "completedAt": _iso(s.completed_at),
            "progress": (
                {"completed": s.progress_completed, "total": s.progress_total}
                if s.progress_total is not None
                else None
            ),
            "error": s.error,
            "detail": s.detail,
        }
        step = pipeline.setdefault(s.step, {"name": s.step, "tasks": []})
        if s.task:
            step["tasks"].append({"task": s.task, **entry})
        else:
            step.update(entry)
    spec = row.spec or {}
    objects = {
        "selector": naming.vm_selector(migration_id, vm_id),
        "claims": [d.get("pvc_name") for d in spec.get("disks") or []],
        "virtualMachine": (row.memory or {}).get("target_vm"),
    }
    return JSONResponse(
        {**_vm(VmRow.of(row)), "pipeline": list(pipeline.values()), "objects": objects}
    )


def _vm(row: VmRow) -> dict[str, Any]:
    memory = row.memory or {}
    return {
        "vmId": row.vm_id,
        "name": (row.spec or {}).get("name"),
        "targetName": (row.spec or {}).get("target_name"),
        "phase": row.phase,
        "step": row.step,
        "error": row.error,
        "cancelRequested": row.cancel_requested,
        "disksInFlight": row.holding,
        "holdsVmSlot": row.holds_vm,
        "admittedAt": _iso(row.admitted_at),
        "releasedAt": _iso(row.released_at),
        "sourcePowerState": memory.get("source_power"),
        "nextRunAt": _iso(row.next_run_at),
        "leasedBy": row.lease_owner,
        "startedAt": _iso(row.started_at),
        "finishedAt": _iso(row.finished_at),
    }
