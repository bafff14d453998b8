"""The routes of ``/api/v1/hooks`` (what they store and check is ``hooks.py``).

Errors: 422 a field that is wrong in itself (``loc`` names it), 404 an unknown hook, 409 a
taken name or a hook a plan uses (delete), 412 ``If-Match`` naming an older revision.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.planner.domain import Planner
from services.planner.errors import PreconditionFailed
from services.planner.hooks import (
    Hook,
    HookCreate,
    HookPage,
    HookUpdate,
    create,
    find,
    public,
    remove,
    t,
    update,
    usage,
    users,
)
from services.planner.views import answers
from shared.service.app import domain_of

router = APIRouter(tags=["planner"])
HookPath = Annotated[str, Path(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _planner(request: Request) -> Planner:
    return domain_of(request, Planner, "PostgreSQL or NATS")


def _tagged(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=code, headers={"ETag": f'"{body["revision"]}"'})


@router.post(
    "/api/v1/hooks",
    status_code=201,
    response_model=Hook,
    responses=answers(201, "The hook", 409, 422),
    summary="Create a hook",
)
async def create_hook(request: Request, body: HookCreate) -> JSONResponse:
    row = await create(_planner(request), body)
    return _tagged(public(row), 201)


@router.get(
    "/api/v1/hooks",
    response_model=HookPage,
    responses=answers(200, "The hooks, by name", tag=None),
    summary="List hooks",
)
async def list_hooks(request: Request) -> JSONResponse:
    p = _planner(request)
    async with p.engine.connect() as conn:
        rows = list((await conn.execute(select(t).order_by(t.c.name))).mappings())
        using = await usage(conn)
        items = [public(r, using.get(r["name"], [])) for r in rows]
    return JSONResponse({"items": items})


@router.get(
    "/api/v1/hooks/{ref}",
    response_model=Hook,
    responses=answers(200, "The hook", 404, 422),
    summary="Read a hook (by id or name)",
)
async def get_hook(request: Request, ref: HookPath) -> JSONResponse:
    p = _planner(request)
    async with p.engine.connect() as conn:
        row = await find(conn, ref)
        return _tagged(public(row, await users(conn, row["name"])))


@router.patch(
    "/api/v1/hooks/{ref}",
    response_model=Hook,
    responses=answers(200, "The hook", 404, 412, 422),
    summary="Change a hook (plans running now keep the definition they started with)",
)
async def update_hook(
    request: Request,
    ref: HookPath,
    body: HookUpdate,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    revision = None
    if if_match is not None:
        text = if_match.strip().removeprefix("W/").strip('"')
        if not text.isdigit():
            raise PreconditionFailed("If-Match must be a revision this API returned")
        revision = int(text)
    row, using = await update(_planner(request), ref, body, revision)
    return _tagged(public(row, using))


@router.delete(
    "/api/v1/hooks/{ref}",
    status_code=204,
    responses=answers(204, "Deleted", 404, 409, 422, tag=None),
    summary="Delete a hook no plan uses",
)
async def delete_hook(request: Request, ref: HookPath) -> Response:
    await remove(_planner(request), ref)
    return Response(status_code=204)
