"""HTTP routes of plan status: a plan's VMs (a page, or one with its pipeline), its
migrations, and the server-sent-events stream of status changes.

``{plan}`` is a plan's id or its name. Errors: 404 for an unknown plan, migration (by id or
number) or VM; 422 (``loc`` names the parameter) for a bad parameter or cursor; 503 while
the service is starting. The lookups raise the planner's errors (``errors.py``) and the
shared handlers answer them. Every route requires a bearer token (added by the runner).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from services.planner import status as st
from services.planner import streaming
from services.planner.errors import Invalid, NotFound
from services.planner.views import CONTENT_TAG, MigrationList, VmPage, VmWithPipeline, answers
from shared.pipeline import PlanVmPhase
from shared.service.app import engine_of

router = APIRouter(tags=["plan status"])

# No control characters: PostgreSQL refuses NUL in text, and no id or name has them.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
PlanRef = Annotated[
    str, Path(min_length=1, max_length=63, pattern=PRINTABLE, description="Plan id or name.")
]
VmId = Annotated[str, Path(min_length=1, max_length=253, pattern=PRINTABLE)]
MigrationRef = Annotated[
    str | None,
    Query(
        alias="migration",
        min_length=1,
        max_length=36,
        pattern=PRINTABLE,
        description="Migration id or number; default: the plan's current one.",
    ),
]
LAST_EVENT_ID = "not a revision of this stream"


@router.get(
    "/api/v1/plans/{plan}/vms",
    response_model=VmPage,
    responses=answers(200, "A page of VMs, by id", 404, 422, tag=None),
    summary="A page of the VMs of a plan's migration",
)
async def list_vms(
    request: Request,
    plan: PlanRef,
    migration: MigrationRef = None,
    phase: PlanVmPhase | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1400, pattern=PRINTABLE)] = None,
) -> JSONResponse:
    """VM summaries (no pipeline) ordered by VM id; follow ``next`` for the next page."""
    async with engine_of(request).connect() as conn:
        row = await st.find_plan(conn, plan)
        mig = await st.find_migration(conn, row, migration)
        page = await st.list_vms(
            conn,
            row["id"],
            mig["id"] if mig else None,
            phase.value if phase else None,
            limit,
            cursor,
        )
    return JSONResponse(page)


@router.get(
    "/api/v1/plans/{plan}/vms/{vm}",
    response_model=VmWithPipeline,
    responses=answers(200, "The VM with its pipeline", 304, 404, 422, tag=CONTENT_TAG),
    summary="A VM of a plan, with its pipeline",
)
async def get_vm(
    request: Request,
    plan: PlanRef,
    vm: VmId,
    migration: MigrationRef = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Phase, current step, times, error, target VM, bytes, rate, ETA and every step with
    its tasks. Without ``migration``: the plan's latest migration that has the VM."""
    async with engine_of(request).connect() as conn:
        row = await st.find_plan(conn, plan)
        mig = await st.find_migration(conn, row, migration) if migration else None
        view = await st.vm_status(conn, row["id"], vm, mig["id"] if mig else None)
    if view is None:
        where = f"migration {migration!r} of " if migration else ""
        raise NotFound(f"no VM {vm!r} in {where}plan {row['name']!r}")
    etag = f'"{view["revision"]}"'
    if if_none_match == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return JSONResponse(view, headers={"ETag": etag})


@router.get(
    "/api/v1/plans/{plan}/migrations",
    response_model=MigrationList,
    responses=answers(200, "The plan's migrations", 404, 422, tag=None),
    summary="Every migration of a plan",
)
async def list_migrations(request: Request, plan: PlanRef) -> JSONResponse:
    """Newest first, each with its phase, times, VM counts and bytes."""
    async with engine_of(request).connect() as conn:
        row = await st.find_plan(conn, plan)
        items = await st.migrations_of(conn, row["id"])
    return JSONResponse({"items": items})


@router.get(
    "/api/v1/planner/events",
    summary="Server-sent events: plan status as it changes",
    response_class=StreamingResponse,
    responses={
        **answers(200, "", 404, 422, tag=None),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "The stream: event, id and data lines per change"},
    },
)  # fmt: skip
async def events(
    request: Request,
    plan: Annotated[str | None, Query(min_length=1, max_length=63, pattern=PRINTABLE)] = None,
    since: Annotated[
        int | None,
        Query(ge=0, le=streaming.MAX_REVISION, description="Replay after this revision."),
    ] = None,
    pipeline: Annotated[bool, Query(description="VM frames carry their pipeline.")] = False,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Frames ``plan``, ``migration`` and ``vm`` with the row's revision as event id.
    ``since=0`` replays the current state of everything first; without ``since`` or
    ``Last-Event-ID`` the stream starts with the changes from now on."""
    engine = engine_of(request)
    plan_id = None
    if plan is not None:
        async with engine.connect() as conn:
            plan_id = str((await st.find_plan(conn, plan))["id"])
    start = since
    if start is None and last_event_id is not None:
        start = streaming.revision_of(last_event_id)
        if start is None:
            raise Invalid([(["header", "last-event-id"], "value_error", LAST_EVENT_ID)])
    if start is None:
        start = await streaming.current_revision(engine, plan_id)
    return StreamingResponse(
        streaming.changes(
            engine,
            start,
            plan_id=plan_id,
            pipeline=pipeline,
            disconnected=request.is_disconnected,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
