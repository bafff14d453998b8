"""HTTP API of the inventory service.

Owns ``/api/v1/providers`` (providers, their credentials as Kubernetes Secrets, connection
tests and status) and the inventory each provider exposes beneath it (VMs, disks, networks,
storage, concerns), plus ``/api/v1/inventory/events``, a server-sent-events stream of
changes. Every route here requires a bearer token (added by the runner).

Errors, raised as ``shared.service.errors`` classes and answered by its handlers: 422 lists
every problem of a definition at once (``loc`` names the field, ``type`` the reason; a
failed connection test carries the server's certificate for the user to confirm), 409 a
duplicate name, 404 an unknown provider, collection or object, 400 a bad query parameter,
503 while the service is still starting or Kubernetes Secrets cannot be used.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.inventory import providers, querying, streaming
from services.inventory.domain import Inventory
from services.inventory.items import COLLECTIONS, KINDS, KINDS_BY_TYPE, Category
from services.inventory.providers import ProviderCreate, ProviderUpdate
from services.inventory.sources.contract import ConnectionProblem, ProviderInfo, check_tls
from services.inventory.views import (
    NOT_MODIFIED,
    TAG,
    DryRun,
    InventoryObject,
    ObjectPage,
    Provider,
    ProviderPage,
    Refreshing,
    ServerCertificate,
)
from shared.payloads import ProviderPhase, ProviderType
from shared.service.answers import errors
from shared.service.app import domain_of
from shared.service.errors import BadQuery, Invalid, NotFound
from shared.tls import TrustOptions
from shared.urls import url_problem

router = APIRouter(tags=["inventory"])
# Bounds on what a path may name: a provider's id (a UUID) or name (a DNS-1123 label), a
# collection's name, an object's id as its source spells it (a namespaced one has a "/").
RefPath = Annotated[str, Path(min_length=1, max_length=253, description="Provider id or name.")]
CollectionPath = Annotated[str, Path(min_length=1, max_length=64)]
ObjectPath = Annotated[str, Path(min_length=1, max_length=1024)]


def _inventory(request: Request) -> Inventory:
    return domain_of(request, Inventory, "PostgreSQL, NATS or Kubernetes")


# --- providers ------------------------------------------------------------------------------


_INVALID = "The definition is wrong, or the connection test failed (every problem; a failed "
_INVALID += "test carries the server's certificate)"
_NO_PROVIDER = "No such provider"


@router.post(
    "/api/v1/providers",
    status_code=201,
    response_model=Provider,
    responses={
        200: {"model": DryRun, "description": "dryRun: the connection test passed"},
        **errors(409, 422, e409="A provider has that name", e422=_INVALID),
    },
)
async def create_provider(
    request: Request,
    body: ProviderCreate,
    test_connection: Annotated[bool, Query(alias="testConnection")] = True,
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
) -> JSONResponse:
    """Create a provider (connection tested first), or with ``dryRun`` only test it."""
    inv = _inventory(request)
    if dry_run:

        async def probe() -> dict[str, Any]:
            providers.check_definition(body.type, body.url, body.credentials, body.tls)
            info = ProviderInfo("dry-run", body.name, body.type, body.url, {})
            secret = providers.secret_data(body.url, body.credentials, body.tls)
            return await inv.registry.test_connection(providers.new_id(), info, secret)

        facts = await probe()
        return JSONResponse({"connection": "ok", "facts": facts}, status_code=200)
    row = await inv.registry.create(body, test=test_connection)
    return JSONResponse(providers.as_public(row), status_code=201)


@router.get("/api/v1/providers", response_model=ProviderPage)
async def list_providers(
    request: Request,
    type: ProviderType | None = None,
    phase: ProviderPhase | None = None,
) -> JSONResponse:
    inv = _inventory(request)
    rows = await inv.list_providers(type, phase)
    return JSONResponse({"items": [providers.as_public(r) for r in rows]})


@router.get(
    "/api/v1/providers/certificate",
    response_model=ServerCertificate,
    responses=errors(400, 422, e400="Not an https URL", e422="No server at that URL"),
)
async def server_certificate(
    request: Request, url: Annotated[str, Query(min_length=8, max_length=2048)]
) -> JSONResponse:
    """The certificate an https server presents, with its SHA-256 and SHA-1 fingerprints,
    for the user to confirm before pinning it; and whether the system CAs trust it."""
    inv = _inventory(request)
    if not url.startswith("https://"):
        raise BadQuery("url", "not an https URL")
    bad = url_problem(url)
    if bad:
        raise Invalid([(["query", "url"], "value_error", bad)])
    timeout = inv.settings.inventory.connect_timeout_seconds
    trusted, reason = True, ""
    try:
        cert = await check_tls(url, TrustOptions(), timeout)
    except ConnectionProblem as problem:
        if problem.certificate is None:
            raise Invalid([(["query", "url"], problem.reason.value, problem.message)]) from None
        cert, trusted, reason = problem.certificate, False, problem.message
    assert cert is not None
    body = {"url": url, "certificate": cert.as_dict(), "trustedBySystem": trusted, "reason": reason}
    return JSONResponse(body)


@router.get(
    "/api/v1/providers/{ref}",
    response_model=Provider,
    responses={200: {"description": "The provider", "headers": {"ETag": TAG}},
               **errors(404, e404=_NO_PROVIDER)},
)  # fmt: skip
async def get_provider(request: Request, ref: RefPath) -> JSONResponse:
    inv = _inventory(request)
    row = await inv.provider(ref)
    return JSONResponse(providers.as_public(row), headers={"ETag": f'"{row["revision"]}"'})


@router.patch(
    "/api/v1/providers/{ref}",
    response_model=Provider,
    responses=errors(404, 409, 422, e404=_NO_PROVIDER, e409="A provider has that name",
                     e422=_INVALID),
)  # fmt: skip
async def update_provider(
    request: Request,
    ref: RefPath,
    body: ProviderUpdate,
    test_connection: Annotated[bool, Query(alias="testConnection")] = True,
) -> JSONResponse:
    inv = _inventory(request)
    row = await inv.registry.update(ref, body, test=test_connection)
    return JSONResponse(providers.as_public(row))


@router.delete(
    "/api/v1/providers/{ref}",
    status_code=204,
    response_class=Response,
    responses=errors(404, e404=_NO_PROVIDER),
)
async def delete_provider(request: Request, ref: RefPath) -> Response:
    inv = _inventory(request)
    await inv.registry.delete(ref)
    return Response(status_code=204)


@router.post(
    "/api/v1/providers/{ref}/refresh",
    status_code=202,
    response_model=Refreshing,
    responses=errors(404, e404=_NO_PROVIDER),
)
async def refresh_provider(request: Request, ref: RefPath) -> dict[str, Any]:
    """Reconnect and reload the provider's whole inventory now (it refreshes by itself
    anyway), whichever replica collects it."""
    inv = _inventory(request)
    pid = await inv.registry.reload(ref)
    return {"id": pid, "accepted": True}


# --- inventory --------------------------------------------------------------------------------


def _kind(row: Any, collection: str) -> str:
    kind = KINDS.get(collection)
    if kind is None or kind not in KINDS_BY_TYPE[ProviderType(row["type"])]:
        offered = ", ".join(COLLECTIONS[k] for k in KINDS_BY_TYPE[ProviderType(row["type"])])
        raise NotFound(
            f"{ProviderType(row['type']).phrase()} has no collection {collection!r}; "
            f"it has: {offered}"
        )
    return kind


@router.get(
    "/api/v1/providers/{ref}/{collection}",
    response_model=ObjectPage,
    responses={200: {"description": "A page of objects", "headers": {"ETag": TAG}},
               **NOT_MODIFIED,
               **errors(400, 404, e400="A cursor this API did not hand out, or one of "
                        "another sort", e404="No such provider, or no such collection in it")},
)  # fmt: skip
async def list_collection(
    request: Request,
    ref: RefPath,
    collection: CollectionPath,
    name: str | None = Query(None, max_length=1024),
    search: str | None = Query(None, max_length=256, description="Substring of the name."),
    status_: str | None = Query(None, alias="status", max_length=64),
    parent: str | None = Query(None, max_length=253),
    concern: Category | None = Query(None, description="VMs with a concern of this category."),
    sort: str = Query("name", pattern="^-?(name|status|revision|concerns)$"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=2048),
    detail: int = Query(0, ge=0, le=2),
    if_none_match: str | None = Header(None),
) -> Response:
    inv = _inventory(request)
    q = querying.Query(name, search, status_, parent, concern, sort, limit, cursor, detail)

    async def run() -> Response:
        async with inv.engine.connect() as conn:
            row = await providers.find(conn, ref)
            kind = _kind(row, collection)
            revision = await querying.collection_revision(conn, row["id"], kind)
            etag = f'W/"{revision}-{q.fingerprint()}"'
            if if_none_match == etag:
                return Response(status_code=304, headers={"ETag": etag})
            items, next_cursor, total = await querying.page(conn, row["id"], kind, q)
        return JSONResponse(
            {"items": items, "next": next_cursor, "total": total, "revision": revision},
            headers={"ETag": etag},
        )

    return await run()


# ``:path``: the ids of namespaced target objects are ``namespace/name``, and a ``%2F``
# would not help (the server decodes the path before routing).
@router.get(
    "/api/v1/providers/{ref}/{collection}/{object_id:path}",
    response_model=InventoryObject,
    responses={200: {"description": "The object", "headers": {"ETag": TAG}},
               **NOT_MODIFIED,
               **errors(404, e404="No such provider, collection or object")},
)  # fmt: skip
async def get_object(
    request: Request,
    ref: RefPath,
    collection: CollectionPath,
    object_id: ObjectPath,
    detail: int = Query(2, ge=0, le=2),
    if_none_match: str | None = Header(None),
) -> Response:
    inv = _inventory(request)

    async def run() -> Response:
        async with inv.engine.connect() as conn:
            row = await providers.find(conn, ref)
            kind = _kind(row, collection)
            obj = await querying.one(conn, row["id"], kind, object_id)
        if obj is None:
            raise NotFound(f"no {kind} {object_id!r} in provider {row['name']!r}")
        etag = f'"{obj["revision"]}"'
        if if_none_match == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(querying.view(obj, detail), headers={"ETag": etag})

    return await run()


@router.get(
    "/api/v1/inventory/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "The stream: event, id and data lines per change"},
        **errors(400, 404, e400="An unknown kind", e404=_NO_PROVIDER),
    },
)  # fmt: skip
async def events(
    request: Request,
    provider: str | None = Query(None, description="Provider id or name; all if omitted."),
    kind: list[str] = Query(
        default_factory=list, max_length=64, description="Kinds (vm, disk, ...)."
    ),
    since: int | None = Query(
        None, ge=0, le=streaming.MAX_REVISION, description="Replay changes after this revision."
    ),
    last_event_id: str | None = Header(None),
) -> StreamingResponse:
    """Server-sent events: ``object`` (created, changed, deleted) and ``provider`` (status),
    each with its revision as the event id; reconnect with ``Last-Event-ID`` to resume."""
    inv = _inventory(request)
    unknown = [k for k in kind if k not in COLLECTIONS]
    if unknown:
        raise BadQuery("kind", f"unknown kinds {unknown}")
    provider_id = None
    if provider:
        async with inv.engine.connect() as conn:
            provider_id = (await providers.find(conn, provider))["id"]
    start = since
    if start is None and last_event_id:
        start = streaming.revision_of(last_event_id)
        if start is None:
            loc: list[str | int] = ["header", "last-event-id"]
            raise Invalid([(loc, "value_error", "not a revision of this stream")])
    if start is None:
        start = await streaming.current_revision(inv.engine)
    frames = streaming.changes(
        inv.engine,
        start,
        provider_id=provider_id,
        kinds=kind,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
