"""HTTP API of the planner service.

Owns ``/api/v1/networkmaps``, ``/api/v1/storagemaps``, ``/api/v1/hooks`` (``hookroutes``)
and ``/api/v1/plans``: maps, hooks, plans,
their validation, start (and re-run), cancel, cutover, archive, and the status users read
(``statusroutes``: VMs, their pipelines, past migrations, and a server-sent-events stream).
Every route requires a bearer token (added by the runner).

Errors: the code a route calls raises the planner's errors (``errors.py``, the shared API
errors), and the handlers every service's app installs answer them; no route translates.
422 for input that is wrong in itself (``loc`` names the field; a start refused by
validation lists its ``problems``), 404 an unknown map, plan or VM, 409 a taken name, a map
in use or a plan running or archived, 412 ``If-Match`` naming an older revision, 503 (with
``Retry-After``) while the service starts or the inventory cannot be asked.

A disk's journey starts here: ``POST /api/v1/plans/{plan}/start`` validates the plan again
and starts its next migration.

Next: services/planner/launching.py
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.planner import hookroutes, launching, maps, plans, planvms, statusroutes
from services.planner.db import PlanRow
from services.planner.domain import Planner
from services.planner.errors import PreconditionFailed
from services.planner.model import (
    CancelRequest,
    CutoverRequest,
    NetworkMapCreate,
    NetworkMapUpdate,
    PlanCreate,
    PlanUpdate,
    StorageMapCreate,
    StorageMapUpdate,
)
from services.planner.status import current_migrations, plan_status
from services.planner.views import (
    CONTENT_TAG,
    CancelAnswer,
    NetworkMap,
    NetworkMapPage,
    Plan,
    PlanPage,
    PlanVmPage,
    PlanWithStatus,
    StartedPlan,
    StartRefused,
    StorageMap,
    StorageMapPage,
    answers,
)
from shared.service.app import domain_of

router = APIRouter(tags=["planner"])
router.include_router(statusroutes.router)
router.include_router(hookroutes.router)
# No control characters: PostgreSQL refuses NUL in text, and no id or name has them.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
RefPath = Annotated[str, Path(min_length=1, max_length=253, pattern=PRINTABLE)]
MapKind = Literal["network", "storage"]


def _planner(request: Request) -> Planner:
    return domain_of(request, Planner, "PostgreSQL or NATS")


def _revision(if_match: str | None) -> int | None:
    """``If-Match: "12"`` (or ``W/"12"``, or ``12``) -> 12."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise PreconditionFailed("If-Match must be a revision this API returned")
    return int(text)


def _tagged(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=code, headers={"ETag": f'"{body["revision"]}"'})


# --- maps -----------------------------------------------------------------------------------


def _map_routes(
    kind: MapKind, create_model: Any, update_model: Any, view: type[Any], page: type[Any]
) -> None:
    base = f"/api/v1/{kind}maps"

    async def create_map(request: Request, body: Any) -> JSONResponse:
        p = _planner(request)
        row = await maps.create(p.engine, p.inventory, kind, body)
        return _tagged(maps.public(kind, row), 201)

    async def list_maps(
        request: Request,
        provider: Annotated[str | None, Query(max_length=253, pattern=PRINTABLE)] = None,
    ) -> JSONResponse:
        p = _planner(request)
        async with p.engine.connect() as conn:
            rows = await maps.listing(conn, kind, provider)
        return JSONResponse({"items": [maps.public(kind, r) for r in rows]})

    async def get_map(request: Request, ref: RefPath) -> JSONResponse:
        p = _planner(request)
        async with p.engine.connect() as conn:
            row = await maps.find(conn, kind, ref)
        return _tagged(maps.public(kind, row))

    async def update_map(
        request: Request,
        ref: RefPath,
        body: Any,
        if_match: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        p = _planner(request)
        revision = _revision(if_match)
        row = await maps.update(p.engine, p.inventory, kind, ref, body, revision)
        return _tagged(maps.public(kind, row))

    async def delete_map(request: Request, ref: RefPath) -> Response:
        p = _planner(request)
        await maps.remove(p.engine, kind, ref)
        return Response(status_code=204)

    # The body models differ per kind; FastAPI reads them from the annotations (strings
    # here, under ``from __future__ import annotations``, which a closure cannot resolve).
    create_map.__annotations__["body"] = create_model
    update_map.__annotations__["body"] = update_model
    title = f"{kind} map"
    the_map = f"The {title}"
    router.add_api_route(base, create_map, methods=["POST"], status_code=201,
                         response_model=view, responses=answers(201, the_map, 409, 422),
                         summary=f"Create a {title}")  # fmt: skip
    router.add_api_route(base, list_maps, methods=["GET"], response_model=page,
                         responses=answers(200, f"The {title}s, by name", 422, tag=None),
                         summary=f"List {title}s")  # fmt: skip
    router.add_api_route(f"{base}/{{ref}}", get_map, methods=["GET"], response_model=view,
                         responses=answers(200, the_map, 404, 422),
                         summary=f"Read a {title}")  # fmt: skip
    router.add_api_route(f"{base}/{{ref}}", update_map, methods=["PATCH"], response_model=view,
                         responses=answers(200, the_map, 404, 412, 422),
                         summary=f"Change a {title}'s description or entries")  # fmt: skip
    router.add_api_route(f"{base}/{{ref}}", delete_map, methods=["DELETE"], status_code=204,
                         response_class=Response,
                         responses=answers(204, "Deleted", 404, 409, tag=None),
                         summary=f"Delete a {title} no plan uses")  # fmt: skip


_map_routes("network", NetworkMapCreate, NetworkMapUpdate, NetworkMap, NetworkMapPage)
_map_routes("storage", StorageMapCreate, StorageMapUpdate, StorageMap, StorageMapPage)


# --- plans ----------------------------------------------------------------------------------


@router.post(
    "/api/v1/plans",
    status_code=201,
    response_model=Plan,
    responses=answers(201, "The plan, with the problems validation found", 409, 422),
    summary="Create a plan (validated at once)",
)
async def create_plan(request: Request, body: PlanCreate) -> JSONResponse:
    p = _planner(request)
    row = await plans.create(p.engine, p.inventory, body)
    return _tagged(plans.public(row, p.settings), 201)


@router.get(
    "/api/v1/plans",
    response_model=PlanPage,
    responses=answers(200, "A page of plans, by name", 422, tag=None),
    summary="List plans",
)
async def list_plans(
    request: Request,
    archived: bool = False,
    phase: Annotated[
        str | None, Query(pattern="^(NotReady|Ready|Running|Succeeded|Failed|Canceled)$")
    ] = None,
    provider: Annotated[str | None, Query(max_length=253, pattern=PRINTABLE)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=63, pattern=PRINTABLE, description="`next` of a page")
    ] = None,
) -> JSONResponse:
    p = _planner(request)
    async with p.engine.connect() as conn:
        rows = await plans.listing(
            conn, archived=archived, phase=phase, provider=provider, limit=limit, after=cursor
        )
        more = len(rows) > limit
        rows = rows[:limit]
        current = await current_migrations(conn, [r for r, _ in rows])
    items = []
    for r, count in rows:
        item = plans.public(r, p.settings, count)
        item["migration"] = current.get(r["id"])  # counts and bytes of the current run
        items.append(item)
    return JSONResponse({"items": items, "next": rows[-1][0]["name"] if more and rows else None})


@router.get(
    "/api/v1/plans/{ref}",
    response_model=PlanWithStatus,
    responses=answers(200, "The plan with its status", 304, 404, 422, tag=CONTENT_TAG),
    summary="Read a plan: definition, problems, phase",
)
async def get_plan(
    request: Request, ref: RefPath, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    p = _planner(request)
    body, etag, _ = await _plan_view(p, ref)
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(body, headers={"ETag": etag})


PlanVmCursor = Annotated[
    str | None,
    Query(max_length=9, pattern=r"^[0-9]+$", description="`vmsNext` of the plan, or `next`"),
]


@router.get("/api/v1/plans/{ref}/definition/vms", response_model=PlanVmPage,
            summary="A page of the VMs a plan names (its definition; /vms has its migration's)",
            responses=answers(200, "A page of the plan's VMs, in the order given", 404, 422,
                              tag=None))  # fmt: skip
async def list_plan_vms(
    request: Request, ref: RefPath, cursor: PlanVmCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:  # fmt: skip
    async with _planner(request).engine.connect() as conn:
        return JSONResponse(await planvms.page(conn, ref, cursor, limit))


async def _plan_view(p: Planner, ref: str) -> tuple[dict[str, Any], str, PlanRow]:
    """A plan with its status, and its tag (and its row, first VMs only). The plan's
    revision does not move with its VMs' progress, so the tag hashes the body (weak: equal
    content, not equal bytes); the body lists the first VMs and their count, so a VM
    beyond them that changes changes ``vmCount`` or the plan's revision."""
    async with p.engine.connect() as conn:
        row, count = await planvms.find(conn, ref)
        summary = await plan_status(conn, row)
    body = plans.public(row, p.settings, count)
    body["status"] = summary
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    return body, f'W/"{digest}"', row


async def _plan_revision(p: Planner, ref: str, if_match: str | None) -> int | None:
    """``If-Match`` as a plan revision: a revision as given, or a tag of ``GET`` checked
    against the plan as it is now (412 if it changed)."""
    if if_match is None or if_match.strip().strip('"').isdigit():
        return _revision(if_match)
    _, etag, row = await _plan_view(p, ref)
    if if_match.strip() != etag:
        raise PreconditionFailed("the plan changed since it was read; read it again")
    return int(row["revision"])


@router.patch(
    "/api/v1/plans/{ref}",
    response_model=Plan,
    responses=answers(200, "The plan, validated again", 404, 409, 412, 422),
    summary="Change a plan (validated again)",
)
async def update_plan(
    request: Request,
    ref: RefPath,
    body: PlanUpdate,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    p = _planner(request)
    revision = await _plan_revision(p, ref, if_match)
    row = await plans.update(p.engine, p.inventory, ref, body, revision)
    return _tagged(plans.public(row, p.settings))


@router.delete(
    "/api/v1/plans/{ref}",
    status_code=204,
    response_class=Response,
    responses=answers(204, "Deleted", 404, 409, tag=None),
    summary="Delete a plan not running",
)
async def delete_plan(request: Request, ref: RefPath) -> Response:
    p = _planner(request)
    await plans.remove(p.engine, ref)
    return Response(status_code=204)


@router.post(
    "/api/v1/plans/{ref}/validate",
    response_model=Plan,
    responses=answers(200, "The plan with the problems found now", 404, 409, 422),
    summary="Validate a plan against the inventory now",
)
async def validate_plan(request: Request, ref: RefPath) -> JSONResponse:
    p = _planner(request)
    empty = PlanUpdate()
    row = await plans.update(p.engine, p.inventory, ref, empty, None, keep_phase=True)
    return _tagged(plans.public(row, p.settings))


@router.post(
    "/api/v1/plans/{ref}/start",
    status_code=202,
    response_model=StartedPlan,
    responses={
        **answers(202, "The plan, Running, and the migration started", 404, 409),
        422: {
            "model": StartRefused,
            "description": "Validation refused the start (detail: message and problems), or "
            "a bad parameter",
        },
    },
    summary="Start the plan, or re-run it: VMs an earlier run migrated are skipped",
)
async def start_plan(request: Request, ref: RefPath) -> JSONResponse:
    p = _planner(request)
    row, migration = await launching.start(
        p.engine, p.sessionmaker, p.outbox, p.inventory, p.settings, ref
    )
    body = plans.public(row, p.settings)
    body["migration"] = {
        "id": migration["id"],
        "number": migration["number"],
        "vms": migration["vms_total"],
        "skipped": migration["vms_skipped"],
        "startedAt": migration["started_at"].isoformat(),
    }
    return _tagged(body, 202)


@router.post(
    "/api/v1/plans/{ref}/cancel",
    status_code=202,
    response_model=CancelAnswer,
    responses=answers(202, "What was asked to stop", 404, 409, 422, tag=None),
    summary="Cancel the running migration, or chosen VMs of it",
)
async def cancel_plan(
    request: Request, ref: RefPath, body: CancelRequest | None = None
) -> JSONResponse:
    p = _planner(request)
    canceled = await launching.cancel(p.sessionmaker, p.outbox, ref, body or CancelRequest())
    return JSONResponse(canceled, status_code=202)


@router.put(
    "/api/v1/plans/{ref}/cutover",
    response_model=Plan,
    responses=answers(200, "The plan", 404, 409, 422),
    summary="Set or clear the cutover time; while the plan runs, its migration is told",
)
async def set_cutover(request: Request, ref: RefPath, body: CutoverRequest) -> JSONResponse:
    """``{"at": "<RFC 3339>"}``, ``{"at": "now"}`` (the server's time) or ``{"at": null}``
    (at once): no source VM is powered off before it. Answers the plan (200); 404 an
    unknown plan, 409 an archived one, 422 a bad body."""
    p = _planner(request)
    row = await launching.set_cutover(p.sessionmaker, p.outbox, ref, body)
    return _tagged(plans.public(row, p.settings))


@router.post(
    "/api/v1/plans/{ref}/archive",
    response_model=Plan,
    responses=answers(200, "The plan, archived", 404, 409, 422),
    summary="Archive a plan (read-only, hidden)",
)
async def archive_plan(request: Request, ref: RefPath) -> JSONResponse:
    p = _planner(request)
    row = await plans.set_archived(p.engine, ref, True)
    return _tagged(plans.public(row, p.settings))


@router.post(
    "/api/v1/plans/{ref}/unarchive",
    response_model=Plan,
    responses=answers(200, "The plan, unarchived", 404, 409, 422),
    summary="Bring an archived plan back",
)
async def unarchive_plan(request: Request, ref: RefPath) -> JSONResponse:
    p = _planner(request)
    row = await plans.set_archived(p.engine, ref, False)
    return _tagged(plans.public(row, p.settings))
