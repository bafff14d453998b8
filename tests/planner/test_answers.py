"""The planner's error answers, byte for byte and header for header, as they were when
``api._guarded`` and ``statusroutes._guarded`` translated its errors into ``HTTPException``.

Each case asks the planner's own app twice: once through a real route (or a route raising
what the planner's code raises), answered by the shared handlers, and once through a
reference route running that old translation, copied below as it was, on the same call.
No database is needed: the inventory is a stub, and the cases fail before any query.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import httpx
import pytest
from fastapi import FastAPI, HTTPException, status

import services.planner
from services.planner import maps
from services.planner import status as st
from services.planner.domain import Planner
from services.planner.errors import (
    BadCursor,
    Conflict,
    Invalid,
    InventoryUnavailable,
    NotFound,
    NotStartable,
    PreconditionFailed,
)
from services.planner.model import NetworkMapCreate
from shared.pipeline import PlanVmPhase
from shared.service.app import create_app
from tests.conftest import TOKEN, make_settings

T = TypeVar("T")
HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "answers-test"}
PROBLEMS = [{"path": "vms[0]", "code": "locked", "severity": "error", "message": "locked"}]

# --- the translation the planner had, as it was ------------------------------------------------


async def _api_guarded(call: Callable[[], Awaitable[T]]) -> T:
    """``services/planner/api.py``'s ``_guarded`` before the shared handlers."""
    try:
        return await call()
    except Invalid as exc:
        raise HTTPException(
            422, [{"loc": loc, "type": t, "msg": msg} for loc, t, msg in exc.problems]
        ) from None
    except NotStartable as exc:
        raise HTTPException(422, {"message": str(exc), "problems": exc.problems}) from None
    except Conflict as exc:
        raise HTTPException(409, [{"loc": exc.loc, "type": "conflict", "msg": str(exc)}]) from None
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except PreconditionFailed as exc:
        raise HTTPException(status.HTTP_412_PRECONDITION_FAILED, str(exc)) from None
    except InventoryUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the inventory cannot be asked right now ({exc}); retry",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


def _invalid(where: str, param: str, msg: str) -> HTTPException:
    """``services/planner/statusroutes.py``'s ``_invalid``."""
    return HTTPException(
        422,
        [{"loc": [where, param], "type": "value_error", "msg": msg}],
    )


async def _status_guarded(call: Callable[[], Awaitable[T]]) -> T:
    """``services/planner/statusroutes.py``'s ``_guarded``."""
    try:
        return await call()
    except NotFound as exc:  # status.NotFound, now the planner's (the shared) NotFound
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except BadCursor as exc:
        raise _invalid("query", "cursor", str(exc)) from None


# --- the planner's app, with a stub inventory and the reference routes -------------------------


class Inventory:
    """Providers by name: ``down`` cannot be asked, ``missing`` does not exist."""

    async def provider(self, ref: str) -> dict[str, Any] | None:
        if ref == "down":
            raise InventoryUnavailable(
                "inventory at http://inventory.invalid/api/v1: ConnectError('refused')"
            )
        if ref == "missing":
            return None
        return {"id": f"id-{ref}", "name": ref, "type": "kubevirt"}


def _raising(make: Callable[[], Exception]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        raise make()

    return call


#: Errors the planner's code raises, by case name (the new side raises them as they are).
RAISED: dict[str, tuple[Callable[[], Exception], Callable[..., Awaitable[Any]]]] = {
    "not startable": (
        lambda: NotStartable("the plan has 1 problem(s) that block a start", PROBLEMS),
        _api_guarded,
    ),
    "conflict": (
        lambda: Conflict(["path", "plan"], "the plan is running (migration m); wait for it"),
        _api_guarded,
    ),
    "map not found": (lambda: NotFound("no network map 'nets'"), _api_guarded),
    "revision": (lambda: PreconditionFailed("the plan changed (revision 7, not 6)"), _api_guarded),
    "plan not found": (lambda: NotFound("no plan 'prüfung'"), _status_guarded),
    "cursor": (lambda: BadCursor("not a cursor of this list; use the 'next'"), _status_guarded),
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    app = create_app(services.planner.SPEC, settings)
    started = asyncio.Event()
    started.set()
    planner = Planner(
        engine=cast(Any, None),
        sessionmaker=cast(Any, None),
        outbox=cast(Any, None),
        inventory=cast(Any, Inventory()),
        settings=settings.planner,
    )
    app.state.runtime = SimpleNamespace(domain=planner, started=started, engine=None)
    _reference_routes(app, planner)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://planner") as c:
        yield c


def _reference_routes(app: FastAPI, planner: Planner) -> None:
    @app.post("/old/networkmaps", status_code=201)
    async def create_map(body: NetworkMapCreate) -> None:
        await _api_guarded(lambda: maps.create(planner.engine, planner.inventory, "network", body))

    @app.patch("/old/networkmaps/{ref}")
    async def update_map() -> None:
        raise HTTPException(
            status.HTTP_412_PRECONDITION_FAILED, "If-Match must be a revision this API returned"
        )

    @app.get("/old/events")
    async def events() -> None:
        raise _invalid("header", "last-event-id", "not a revision of this stream")

    @app.get("/old/cursor")
    async def cursor() -> None:
        await _status_guarded(lambda: _decode("!!"))

    @app.get("/new/cursor")
    async def new_cursor() -> None:
        await _decode("!!")

    @app.get("/old/raised/{case}")
    async def old_raised(case: str) -> None:
        make, guarded = RAISED[case]
        await guarded(_raising(make))

    @app.get("/new/raised/{case}")
    async def new_raised(case: str) -> None:
        raise RAISED[case][0]()


async def _decode(cursor: str) -> str:
    return st.decode_cursor(cursor)


async def _same(new: httpx.Response, old: httpx.Response, code: int) -> None:
    assert new.status_code == old.status_code == code, new.text
    assert new.content == old.content
    assert new.headers.multi_items() == old.headers.multi_items()


# --- the cases ---------------------------------------------------------------------------------

MAP = {"name": "nets", "targetProvider": "host", "entries": []}


async def test_inventory_unavailable(client: httpx.AsyncClient) -> None:
    body = {**MAP, "sourceProvider": "down"}
    new = await client.post("/api/v1/networkmaps", json=body, headers=HEADERS)
    old = await client.post("/old/networkmaps", json=body, headers=HEADERS)
    await _same(new, old, 503)
    assert new.headers["Retry-After"] == "5"
    assert new.json()["detail"].startswith("the inventory cannot be asked right now (inventory at")


async def test_invalid_input(client: httpx.AsyncClient) -> None:
    body = {**MAP, "sourceProvider": "missing"}
    new = await client.post("/api/v1/networkmaps", json=body, headers=HEADERS)
    old = await client.post("/old/networkmaps", json=body, headers=HEADERS)
    await _same(new, old, 422)
    assert new.json()["detail"][0]["loc"] == ["sourceProvider"]


async def test_if_match_that_is_no_revision(client: httpx.AsyncClient) -> None:
    headers = {**HEADERS, "If-Match": '"abc"'}
    new = await client.patch("/api/v1/networkmaps/nets", json={}, headers=headers)
    old = await client.patch("/old/networkmaps/nets", json={}, headers=headers)
    await _same(new, old, 412)


async def test_last_event_id_that_is_no_revision(client: httpx.AsyncClient) -> None:
    headers = {**HEADERS, "Last-Event-ID": "x1"}
    new = await client.get("/api/v1/planner/events", headers=headers)
    old = await client.get("/old/events", headers=headers)
    await _same(new, old, 422)


async def test_bad_cursor(client: httpx.AsyncClient) -> None:
    await _same(
        await client.get("/new/cursor", headers=HEADERS),
        await client.get("/old/cursor", headers=HEADERS),
        422,
    )


@pytest.mark.parametrize("case", sorted(RAISED))
async def test_raised(client: httpx.AsyncClient, case: str) -> None:
    new = await client.get(f"/new/raised/{case}", headers=HEADERS)
    old = await client.get(f"/old/raised/{case}", headers=HEADERS)
    expected = {"not startable": 422, "conflict": 409, "revision": 412, "cursor": 422}
    await _same(new, old, expected.get(case, 404))


def test_the_inventory_is_unavailable_for_five_seconds() -> None:
    down = InventoryUnavailable("timeout")
    assert (str(down), down.retry_after, down.headers) == ("timeout", 5, {"Retry-After": "5"})


async def test_the_vm_phase_parameter_keeps_its_values(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/planner/openapi.json", headers=HEADERS)).json()
    [phase] = [
        p for p in spec["paths"]["/api/v1/plans/{plan}/vms"]["get"]["parameters"]
        if p["name"] == "phase"
    ]  # fmt: skip
    ref = phase["schema"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
    values = ["Pending", "Running", "Succeeded", "Failed", "Canceled"]
    assert spec["components"]["schemas"][ref]["enum"] == values == list(PlanVmPhase)
