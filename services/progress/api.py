"""HTTP API of the progress service.

Owns ``/api/v1/progress``: per plan, VM and disk the latest bytes, percent, rate and ETA
(a disk with its downsampled history), and ``/api/v1/progress/events``, a server-sent-events
stream of the disk and VM progress events (optionally for one plan or VM). Every route
requires a bearer token (added by the runner).

Errors (answered by ``shared.service.errors``): 404 for a plan, VM or disk no populator pod
was ever seen for (``querying.NotFound``); 422 (``loc`` names the parameter) for an id that
cannot be one (empty, too long, characters outside ``[A-Za-z0-9._:-]``) or a bad query
parameter; 503 while the service is starting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.progress import querying
from services.progress.domain import Progress
from services.progress.views import DiskWithHistory, PlanProgress, VmProgress
from shared.service.answers import Answer, errors
from shared.service.app import domain_of

router = APIRouter(prefix="/api/v1/progress", tags=["progress"])

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
IdPath = Annotated[str, Path(min_length=1, max_length=253, pattern=ID_PATTERN)]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=253, pattern=ID_PATTERN)]


def _progress(request: Request) -> Progress:
    return domain_of(request, Progress, "PostgreSQL or NATS")


_UNSEEN = "No populator pod of it was ever seen"
Route = TypeVar("Route", bound=Callable[..., Awaitable[JSONResponse]])


def _reading(path: str, summary: str, model: type[Answer]) -> Callable[[Route], Route]:
    return router.get(
        path, summary=summary, response_model=model, responses=errors(404, e404=_UNSEEN)
    )


@_reading("/plans/{plan_id}", "Progress of a plan, per VM", PlanProgress)
async def get_plan(request: Request, plan_id: IdPath) -> JSONResponse:
    return JSONResponse(await querying.plan(_progress(request).engine, plan_id))


@_reading("/vms/{vm_id}", "Progress of a VM, per disk", VmProgress)
async def get_vm(request: Request, vm_id: IdPath) -> JSONResponse:
    return JSONResponse(await querying.vm(_progress(request).engine, vm_id))


@_reading("/disks/{disk_id}", "Progress of a disk, with its history", DiskWithHistory)
async def get_disk(
    request: Request,
    disk_id: IdPath,
    history_limit: Annotated[int, Query(alias="historyLimit", ge=0, le=100_000)] = 2000,
) -> JSONResponse:
    return JSONResponse(await querying.disk(_progress(request).engine, disk_id, history_limit))


@router.get(
    "/events",
    summary="Server-sent events: disk and VM progress as it changes",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "The stream: event and data lines per change",
        }
    },
)
async def events(request: Request, plan: IdQuery = None, vm: IdQuery = None) -> StreamingResponse:
    hub = _progress(request).hub
    return StreamingResponse(
        hub.frames(plan, vm, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
