"""The plan-status routes and the server-sent-events stream, on a real PostgreSQL: views,
pages, precise 4xx, and a stream that misses no row however commits interleave."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import services.planner
from services.planner import db, statusroutes, streaming
from services.planner.launching import next_revision
from services.planner.projecting import Projector
from shared import payloads as p
from shared.devservices import DevServices, free_port
from shared.service.app import create_app
from shared.settings import HoistSettings
from tests.conftest import TOKEN, eventually
from tests.planner.statusdata import (
    GiB,
    finished,
    outbox,
    planner_database,
    seed_plan,
    start,
    vm_story,
)

S, St, Oc = p.Step, p.StepState, p.Outcome
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
async def status_db(servers: DevServices) -> AsyncIterator[AsyncEngine]:
    async for e in planner_database(servers):
        yield e


@pytest.fixture
def app(status_db: AsyncEngine, settings: HoistSettings) -> FastAPI:
    """The planner's app with only these routes, its runtime reduced to what they use."""
    spec = dataclasses.replace(services.planner.SPEC, router=statusroutes.router)
    application = create_app(spec, settings)
    started = asyncio.Event()
    started.set()
    application.state.runtime = SimpleNamespace(started=started, engine=status_db)
    return application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://planner") as c:
        yield c


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    return await client.get(f"/api/v1{path}", params=params, headers=AUTH)


async def seeded(
    status_db: AsyncEngine, vms: int, events: int = 0, runs: int = 1
) -> tuple[dict[str, Any], list[p.PlanStarted]]:
    """A plan started ``runs`` times; the first VM of the last run fully migrated."""
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        plan = await seed_plan(session)
        started = [
            await start(session, plan["plan_id"], vms=vms, disks=2, number=n + 1)
            for n in range(runs)
        ]
        projector = Projector(outbox(status_db))
        for e in vm_story(started[-1], 0, Oc.SUCCEEDED)[: events or None]:
            await projector.apply(e, session)
    return plan, started


# --- views --------------------------------------------------------------------------------------


async def test_a_vm_with_its_pipeline(client: httpx.AsyncClient, status_db: AsyncEngine) -> None:
    plan, [run] = await seeded(status_db, vms=2)
    resp = await get(client, f"/plans/{plan['name']}/vms/vm-0000")
    assert resp.status_code == 200, resp.text
    vm = resp.json()
    assert (vm["id"], vm["targetName"], vm["phase"], vm["step"]) == (
        "vm-0000",
        "vm-0000",
        "Succeeded",
        "Cleanup",
    )
    assert vm["migrationId"] == run.migration_id
    assert vm["migrationNumber"] == 1
    assert vm["progress"] == {"completed": 3 * GiB, "total": 3 * GiB}
    assert vm["targetVm"]["name"] == "vm-0000"
    assert vm["error"] is None
    assert vm["startedAt"].startswith("2025-03-01T12:00:10")
    names = [s["name"] for s in vm["pipeline"]]
    assert names == [
        "Initialize",
        "PowerOffSource",
        "DiskAllocation",
        "DiskTransfer",
        "VirtualMachineCreation",
        "Cleanup",
    ]
    transfer = vm["pipeline"][3]
    assert transfer["state"] == "Completed"
    assert transfer["progress"] == {"completed": 3 * GiB, "total": 3 * GiB}
    first, second = transfer["tasks"]
    assert (first["id"], first["name"], first["attempt"], first["state"]) == (
        "disk-0000-0",
        "disk0",
        2,
        "Completed",
    )
    assert second["progress"] == {"completed": 2 * GiB, "total": 2 * GiB}

    etag = resp.headers["etag"]
    again = await client.get(
        f"/api/v1/plans/{plan['plan_id']}/vms/vm-0000", headers={**AUTH, "If-None-Match": etag}
    )
    assert again.status_code == 304
    pending = (await get(client, f"/plans/{plan['name']}/vms/vm-0001")).json()
    assert (pending["phase"], pending["step"], pending["startedAt"]) == ("Pending", None, None)
    assert {s["state"] for s in pending["pipeline"]} == {"Pending"}


async def test_pages_of_vms(client: httpx.AsyncClient, status_db: AsyncEngine) -> None:
    plan, [run] = await seeded(status_db, vms=5)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await get(client, f"/plans/{plan['name']}/vms", **params)).json()
        assert page["total"] == 5
        assert page["migrationId"] == run.migration_id
        assert all("pipeline" not in v for v in page["items"])
        seen += [v["id"] for v in page["items"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert seen == [f"vm-{i:04d}" for i in range(5)]
    pending = (await get(client, f"/plans/{plan['name']}/vms", phase="Pending")).json()
    assert pending["total"] == 4
    assert "vm-0000" not in [v["id"] for v in pending["items"]]
    by_number = (await get(client, f"/plans/{plan['name']}/vms", migration="1")).json()
    assert by_number["total"] == 5


async def test_migrations_newest_first(client: httpx.AsyncClient, status_db: AsyncEngine) -> None:
    plan, runs = await seeded(status_db, vms=2, runs=2)
    resp = await get(client, f"/plans/{plan['name']}/migrations")
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [m["id"] for m in items] == [runs[1].migration_id, runs[0].migration_id]
    latest = items[0]
    assert latest["vms"] == {
        "total": 2,
        "pending": 1,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "canceled": 0,
        "skipped": 0,
    }
    assert latest["progress"] == {"completed": 3 * GiB, "total": 6 * GiB}
    older = (await get(client, f"/plans/{plan['name']}/vms/vm-0000", migration="1")).json()
    assert (older["migrationNumber"], older["phase"]) == (1, "Pending")


async def test_precise_errors(client: httpx.AsyncClient, status_db: AsyncEngine) -> None:
    plan, _ = await seeded(status_db, vms=1, events=1)
    name = plan["name"]
    not_found = [
        "/plans/no-such-plan/vms",
        "/plans/00000000-0000-0000-0000-000000000000/migrations",
        f"/plans/{name}/vms/vm-9999",
        f"/plans/{name}/vms?migration=7",
        f"/plans/{name}/vms/vm-0000?migration=not-a-migration",
        "/planner/events?plan=no-such-plan",
    ]
    for path in not_found:
        resp = await client.get(f"/api/v1{path}", headers=AUTH)
        assert resp.status_code == 404, path
        assert "no " in resp.json()["detail"]
    invalid = [
        (f"/plans/{name}/vms?limit=0", "limit"),
        (f"/plans/{name}/vms?limit=1001", "limit"),
        (f"/plans/{name}/vms?phase=Sleeping", "phase"),
        (f"/plans/{name}/vms?cursor=%21%21", "cursor"),
        (f"/plans/{name}/vms?migration={'x' * 37}", "migration"),
        (f"/plans/{'p' * 64}/migrations", "plan"),
        ("/planner/events?since=-1", "since"),
        # Above PostgreSQL's bigint: refused before the stream starts (issue 24).
        (f"/planner/events?since={2**63}", "since"),
    ]
    for path, param in invalid:
        resp = await client.get(f"/api/v1{path}", headers=AUTH)
        assert resp.status_code == 422, path
        assert param in resp.json()["detail"][0]["loc"], resp.json()
    # Beyond a bigint, or a digit int() refuses (superscript two, as latin-1 on the wire).
    for last_event_id in (b"x1", str(2**63).encode(), b"\xb2", b"99999999999999999999"):
        headers = {k.encode(): v.encode() for k, v in AUTH.items()}
        headers[b"Last-Event-ID"] = last_event_id
        resp = await client.get("/api/v1/planner/events", headers=headers)
        assert resp.status_code == 422, last_event_id
        assert resp.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    assert (await client.get(f"/api/v1/plans/{name}/vms")).status_code == 401


async def test_starting_service_answers_503(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.runtime.started = asyncio.Event()
    resp = await get(client, "/plans/any/vms")
    assert resp.status_code == 503
    assert resp.headers["retry-after"]


# --- the stream ---------------------------------------------------------------------------------


def parse(frame: str) -> dict[str, Any]:
    fields = dict(line.split(": ", 1) for line in frame.strip().split("\n"))
    return {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}


async def poll_once(status_db: AsyncEngine, cursor: streaming.Cursor, plan_id: str) -> list[Any]:
    async with status_db.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            return [parse(f) for f in await streaming.poll(conn, cursor, plan_id, True)]


async def test_stream_replays_then_follows(status_db: AsyncEngine) -> None:
    plan, [run] = await seeded(status_db, vms=2, events=3)
    cursor = streaming.Cursor(floor=0)
    frames = await poll_once(status_db, cursor, plan["plan_id"])
    kinds = [f["event"] for f in frames]
    assert sorted(kinds) == ["migration", "plan", "vm", "vm"]
    assert [f["id"] for f in frames] == sorted(f["id"] for f in frames)
    plan_frame = next(f["data"] for f in frames if f["event"] == "plan")
    assert (plan_frame["phase"], plan_frame["migration"]["id"]) == ("Running", run.migration_id)
    vm = next(f["data"] for f in frames if f["event"] == "vm" and f["data"]["id"] == "vm-0000")
    assert vm["phase"] == "Running"
    assert vm["pipeline"][0]["state"] == "Completed"
    assert await poll_once(status_db, cursor, plan["plan_id"]) == []

    maker = async_sessionmaker(status_db, expire_on_commit=False)
    async with maker() as session, session.begin():
        await Projector(outbox(status_db)).apply(finished(run, "vm-0001", Oc.CANCELED), session)
    frames = await poll_once(status_db, cursor, plan["plan_id"])
    assert {(f["event"], f["data"]["id"]) for f in frames} == {
        ("vm", "vm-0001"),
        ("migration", run.migration_id),
    }


async def test_stream_misses_no_late_commit(status_db: AsyncEngine) -> None:
    """A revision taken before another but committed after it still goes out."""
    plan, [run] = await seeded(status_db, vms=2)
    cursor = streaming.Cursor(floor=0)
    await poll_once(status_db, cursor, plan["plan_id"])
    v = db.vms

    async def touch(session: AsyncSession, vm: str) -> int:
        rev = await next_revision(session)
        await session.execute(
            update(v)
            .where(v.c.migration_id == run.migration_id, v.c.vm_id == vm)
            .values(step=f"touched-{rev}", revision=rev)
        )
        return rev

    async with AsyncSession(status_db) as slow, AsyncSession(status_db) as quick:
        async with slow.begin():
            early = await touch(slow, "vm-0000")
            async with quick.begin():
                late = await touch(quick, "vm-0001")
            frames = await poll_once(status_db, cursor, plan["plan_id"])
            assert [(f["id"], f["data"]["id"]) for f in frames] == [(late, "vm-0001")]
        assert early < late
    frames = await poll_once(status_db, cursor, plan["plan_id"])
    assert [(f["id"], f["data"]["step"]) for f in frames] == [(early, f"touched-{early}")]


async def test_stream_over_http(app: FastAPI, status_db: AsyncEngine) -> None:
    plan, [run] = await seeded(status_db, vms=1, events=2)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn to listen")
    got: list[dict[str, Any]] = []
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
            http.stream(
                "GET",
                "/api/v1/planner/events",
                params={"plan": plan["name"], "since": 0},
                headers=AUTH,
            ) as resp,
        ):
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines: list[str] = []
            async for line in resp.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                if lines and lines[0].startswith("id: "):
                    got.append(parse("\n".join(lines)))
                lines = []
                if len(got) == 3:
                    break
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    assert {f["event"] for f in got} == {"plan", "migration", "vm"}
    vm = next(f["data"] for f in got if f["event"] == "vm")
    assert (vm["id"], vm["migrationId"], vm["phase"]) == ("vm-0000", run.migration_id, "Running")
    assert "pipeline" not in vm
