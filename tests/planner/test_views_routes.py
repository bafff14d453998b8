"""Every typed route of the planner: the OpenAPI schema names its answer (and the errors it
gives), and a real answer validates against it with no undocumented key, as it was before
the model (the route still writes its dict; the model must not filter or coerce it).

The planner's app runs in this process on a real PostgreSQL (``statusdata``): plans, maps,
migrations and VMs are rows the planner's own code wrote; only what needs the inventory
(creating, changing, validating and starting) is replaced by its result read from the
database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

import services.planner
from services.planner import api, db, launching, maps, plans
from services.planner import status as st
from services.planner.domain import Planner
from services.planner.errors import NotStartable
from services.planner.model import NetworkMapCreate, StorageMapCreate
from services.planner.planvms import VMS_SHOWN
from services.planner.problems import Problem
from services.planner.projecting import Projector
from services.planner.views import (
    CancelAnswer,
    Message,
    MigrationList,
    NetworkMap,
    NetworkMapPage,
    Plan,
    PlanPage,
    PlanVmPage,
    PlanWithStatus,
    Problems,
    StartedPlan,
    StartRefused,
    StorageMap,
    StorageMapPage,
    VmPage,
    VmWithPipeline,
)
from shared import payloads as p
from shared.devservices import DevServices
from shared.service.app import create_app
from shared.settings import HoistSettings
from tests.planner.statusdata import (
    outbox,
    planner_database,
    seed_plan,
    start,
    step_event,
    vm_story,
)
from tests.planner.test_views import HEADERS, assert_answer, openapi

S, St, Oc = p.Step, p.StepState, p.Outcome
V1 = "/api/v1"
NETWORK = NetworkMapCreate.model_validate(
    {
        "name": "n",
        "sourceProvider": "s",
        "targetProvider": "t",
        "entries": [
            {"source": {"name": "ovirtmgmt"}, "destination": {"type": "pod"}},
            {"source": {"id": "net-2"}, "destination": {"type": "ignored"}},
            {
                "source": {"id": "net-3"},
                "destination": {"type": "multus", "namespace": "demo", "name": "vlan-10"},
            },
        ],
    }
)
STORAGE = StorageMapCreate.model_validate(
    {
        "name": "s",
        "sourceProvider": "s",
        "targetProvider": "t",
        "entries": [
            {"source": {"type": "glance"}, "destination": {"storageClass": "fast"}},
            {
                "source": {"name": "data"},
                "destination": {
                    "storageClass": "slow",
                    "volumeMode": "Block",
                    "accessMode": "ReadWriteMany",
                },
            },
        ],
    }
)
MAP_PROBLEMS = [
    Problem("entries[0].destination", "not_found", "no class fast").as_dict(),
    Problem("entries[1]", "slow", "m", severity="warning", vm="vm-1").as_dict(),
]


@pytest.fixture(scope="module")
async def status_db(servers: DevServices) -> AsyncIterator[AsyncEngine]:
    async for e in planner_database(servers):
        yield e


@dataclass
class World:
    http: httpx.AsyncClient
    planner: Planner
    running: dict[str, Any]  # the plan row of a plan started, its VMs along
    idle: dict[str, Any]  # a plan never started, on the same source provider
    started: p.PlanStarted


@pytest.fixture
async def world(status_db: AsyncEngine, settings: HoistSettings) -> AsyncIterator[World]:
    """Two plans on one source: one running (a VM succeeded, one failed, one waiting for a
    slot), one never started; the running one's maps with entries and problems."""
    maker = async_sessionmaker(status_db, expire_on_commit=False)
    source = str(uuid.uuid4())
    async with maker() as session, session.begin():
        ids = [(await seed_plan(session))["plan_id"] for _ in range(2)]
        at = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)
        await session.execute(
            update(db.plans)
            .where(db.plans.c.id.in_(ids))
            .values(
                source_provider=source,
                vms=[{"id": "vm-0000", "targetName": "zero"}, {"name": "lost"}],
                selector={"names": ["vm-*"], "excludeConcerns": "Warning"},
                problems=[Problem("vms[1]", "not_found", "no VM", vm="lost").as_dict()],
                naming={"vm": "{name}", "pvc": "{vm}-{index}"},
                limits={"maxVmsInFlight": 2},
                cutover=at,
                validated_at=at,
            )
        )
        row = (await session.execute(select(db.plans).where(db.plans.c.id == ids[0]))).one()
        for table, body in ((db.network_maps, NETWORK), (db.storage_maps, STORAGE)):
            column = db.plans.c[f"{table.name.split('_')[0]}_map"]
            theirs = select(column).where(db.plans.c.id.in_(ids)).scalar_subquery()
            await session.execute(
                update(table).where(table.c.id.in_(theirs)).values(source_provider=source)
            )
            key = row.network_map if table is db.network_maps else row.storage_map
            await session.execute(
                update(table)
                .where(table.c.id == key)
                .values(entries=maps._entries(body), problems=MAP_PROBLEMS)
            )
        started = await start(session, ids[0], vms=3, disks=2)
        projector = Projector(outbox(status_db))
        # What the orchestrator's admission puts in a waiting VM's step (its wire form: the
        # planner reads events, never the orchestrator's code).
        waiting: dict[str, object] = {
            "note": "waiting: the plan's VMs in flight are at its limit; 1st in line",
            "waiting": {
                "reason": p.WaitReason.PLAN_VMS.value,
                "held": 2,
                "limit": 2,
                "place": 1,
                "estimatedStart": at.isoformat(),
                "cutover": None,
            },
        }
        events = [
            *vm_story(started, 0, Oc.SUCCEEDED),
            *vm_story(started, 1, Oc.FAILED),
            step_event(started, "vm-0002", S.INITIALIZE, St.PENDING, detail=waiting),
        ]
        for e in events:
            await projector.apply(e, session)
    app = create_app(services.planner.SPEC, settings)
    ready = asyncio.Event()
    ready.set()
    planner = Planner(
        engine=status_db,
        sessionmaker=maker,
        outbox=outbox(status_db),
        inventory=cast(Any, None),  # no route here asks it
        settings=settings.planner,
    )
    app.state.runtime = SimpleNamespace(domain=planner, started=ready, engine=status_db)
    async with status_db.connect() as conn:
        running, idle = [dict(await plans.find(conn, i)) for i in ids]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://planner") as c:
        yield World(c, planner, running, idle, started)


async def call(w: World, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {**HEADERS, **kw.pop("headers", {})}
    return await w.http.request(method, V1 + path, headers=headers, **kw)


def answered(r: httpx.Response, code: int, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON of ``r``, checked: its status, and valid against ``model`` with every key
    documented (the model's dump has the same keys: nothing dropped or added)."""
    assert r.status_code == code, r.text
    body: dict[str, Any] = r.json()
    assert_answer(body, model)
    return body


# --- the schema ----------------------------------------------------------------------------

ROUTES: list[tuple[str, str, int, type[BaseModel], set[int], bool]] = [
    # method, path, success, model, the errors documented, ETag
    ("post", "/networkmaps", 201, NetworkMap, {409, 422}, True),
    ("get", "/networkmaps", 200, NetworkMapPage, {422}, False),
    ("get", "/networkmaps/{ref}", 200, NetworkMap, {404, 422}, True),
    ("patch", "/networkmaps/{ref}", 200, NetworkMap, {404, 412, 422}, True),
    ("post", "/storagemaps", 201, StorageMap, {409, 422}, True),
    ("get", "/storagemaps", 200, StorageMapPage, {422}, False),
    ("get", "/storagemaps/{ref}", 200, StorageMap, {404, 422}, True),
    ("patch", "/storagemaps/{ref}", 200, StorageMap, {404, 412, 422}, True),
    ("post", "/plans", 201, Plan, {409, 422}, True),
    ("get", "/plans", 200, PlanPage, {422}, False),
    ("get", "/plans/{ref}", 200, PlanWithStatus, {304, 404, 422}, True),
    ("get", "/plans/{ref}/definition/vms", 200, PlanVmPage, {404, 422}, False),
    ("patch", "/plans/{ref}", 200, Plan, {404, 409, 412, 422}, True),
    ("post", "/plans/{ref}/validate", 200, Plan, {404, 409, 422}, True),
    ("post", "/plans/{ref}/start", 202, StartedPlan, {404, 409, 422}, True),
    ("post", "/plans/{ref}/archive", 200, Plan, {404, 409, 422}, True),
    ("post", "/plans/{ref}/unarchive", 200, Plan, {404, 409, 422}, True),
    ("post", "/plans/{ref}/cancel", 202, CancelAnswer, {404, 409, 422}, False),
    ("put", "/plans/{ref}/cutover", 200, Plan, {404, 409, 422}, True),
    ("get", "/plans/{plan}/vms", 200, VmPage, {404, 422}, False),
    ("get", "/plans/{plan}/vms/{vm}", 200, VmWithPipeline, {304, 404, 422}, True),
    ("get", "/plans/{plan}/migrations", 200, MigrationList, {404, 422}, False),
]
ERROR_MODELS = {
    **{code: "Message" for code in (401, 403, 404, 412, 413, 503)},
    **{code: "Problems" for code in (409, 422)},
}


@pytest.mark.parametrize(
    ("method", "path", "code", "model", "errors", "tagged"),
    ROUTES,
    ids=[f"{m} {path}" for m, path, *_ in ROUTES],
)
def test_the_route_names_its_answer_and_errors(
    method: str, path: str, code: int, model: type[BaseModel], errors: set[int], tagged: bool
) -> None:
    operation = openapi()["paths"][V1 + path][method]
    responses = operation["responses"]
    # What the app answers for any route (shared.service.answers): 401, 403 and 503 under
    # /api/v1 (403: Kubernetes identities, shared.service.access), 413 where a body is read.
    errors = errors | {401, 403, 503} | ({413} if "requestBody" in operation else set())
    ok = responses[str(code)]
    ref = f"#/components/schemas/{model.__name__}"
    assert ok["content"]["application/json"]["schema"] == {"$ref": ref}
    assert ("ETag" in ok.get("headers", {})) is tagged
    assert set(responses) == {str(code), *map(str, errors)}
    for error in errors - {304}:
        name = "StartRefused" if path.endswith("/start") and error == 422 else ERROR_MODELS[error]
        schema = responses[str(error)]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}, error
    if 304 in errors:
        assert "content" not in responses["304"]
        assert "ETag" in responses["304"]["headers"]


def test_every_json_route_of_the_planner_is_typed() -> None:
    """No route answering JSON is left without a model (the event stream, the deletes and
    the service's own routes aside)."""
    spec = openapi()
    untyped = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        if path.startswith(V1) and "/planner/" not in path
        for method, op in ops.items()
        if method != "delete"
        and not any(
            "$ref" in r.get("content", {}).get("application/json", {}).get("schema", {})
            for r in op["responses"].values()
        )
    ]
    assert untyped == []


# --- maps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "view", "page"),
    [("network", NetworkMap, NetworkMapPage), ("storage", StorageMap, StorageMapPage)],
)
async def test_a_map_answers_as_before(
    world: World,
    kind: str,
    view: type[BaseModel],
    page: type[BaseModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world
    ref = w.running[f"{kind}_map"]
    async with w.planner.engine.connect() as conn:
        row = await maps.find(conn, kind, ref)
        listed = await maps.listing(conn, kind, w.running["source_provider"])
    expected = maps.public(kind, row)
    assert expected["entries"]
    assert expected["problems"]

    r = await call(w, "GET", f"/{kind}maps/{ref}")
    assert answered(r, 200, view) == expected
    assert r.headers["ETag"] == f'"{row["revision"]}"'

    r = await call(w, "GET", f"/{kind}maps", params={"provider": w.running["source_provider"]})
    body = answered(r, 200, page)
    assert body == {"items": [maps.public(kind, m) for m in listed]}
    assert len(body["items"]) == 2

    async def written(*args: Any) -> Any:
        return row

    monkeypatch.setattr(maps, "create", written)
    monkeypatch.setattr(maps, "update", written)
    create = NETWORK if kind == "network" else STORAGE
    r = await call(w, "POST", f"/{kind}maps", json=create.model_dump(by_alias=True))
    assert answered(r, 201, view) == expected
    r = await call(w, "PATCH", f"/{kind}maps/{ref}", json={"description": "d"})
    assert answered(r, 200, view) == expected
    assert r.headers["ETag"] == f'"{row["revision"]}"'


# --- plans ---------------------------------------------------------------------------------


async def test_a_plan_read_with_its_status_answers_as_before(world: World) -> None:
    w = world
    name = w.running["name"]
    expected, etag, _ = await api._plan_view(w.planner, name)
    r = await call(w, "GET", f"/plans/{name}")
    body = answered(r, 200, PlanWithStatus)
    assert body == expected
    assert r.headers["ETag"] == etag
    assert body["status"]["migration"]["vms"]["succeeded"] == 1
    assert body["vmSelector"]
    assert body["cutover"]
    assert body["problems"]

    r = await call(w, "GET", f"/plans/{name}", headers={"If-None-Match": etag})
    assert (r.status_code, r.headers["ETag"], r.content) == (304, etag, b"")

    r = await call(w, "GET", f"/plans/{w.idle['name']}")
    assert answered(r, 200, PlanWithStatus)["status"]["migration"] is None


async def test_a_page_of_plans_answers_as_before(world: World) -> None:
    w = world
    params = {"provider": w.running["source_provider"]}
    async with w.planner.engine.connect() as conn:
        rows = await plans.listing(conn, provider=params["provider"])
        current = await st.current_migrations(conn, [r for r, _ in rows])
    expected = [
        {**plans.public(r, w.planner.settings, n), "migration": current.get(r["id"])}
        for r, n in rows
    ]
    r = await call(w, "GET", "/plans", params=params)
    body = answered(r, 200, PlanPage)
    assert body == {"items": expected, "next": None}
    assert {i["name"]: i["migration"] is None for i in body["items"]} == {
        w.running["name"]: False,
        w.idle["name"]: True,
    }

    r = await call(w, "GET", "/plans", params={**params, "limit": 1})
    assert answered(r, 200, PlanPage) == {"items": expected[:1], "next": expected[0]["name"]}


async def test_a_plan_written_answers_as_before(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create, change and validate need the inventory: their result is the plan read back,
    the JSON the route makes of it is the route's own."""
    w = world
    name = w.idle["name"]
    async with w.planner.engine.connect() as conn:
        row = await plans.find(conn, name)
    expected = plans.public(row, w.planner.settings)
    tag = f'"{row["revision"]}"'

    async def written(*args: Any, **kw: Any) -> Any:
        return row

    monkeypatch.setattr(plans, "create", written)
    monkeypatch.setattr(plans, "update", written)
    create = {
        "name": "web",
        "sourceProvider": "s",
        "targetProvider": "t",
        "targetNamespace": "demo",
        "networkMap": "n",
        "storageMap": "s",
        "vms": [{"name": "a"}],
    }
    r = await call(w, "POST", "/plans", json=create)
    assert (answered(r, 201, Plan), r.headers["ETag"]) == (expected, tag)
    _, etag, _ = await api._plan_view(w.planner, name)
    r = await call(w, "PATCH", f"/plans/{name}", json={}, headers={"If-Match": etag})
    assert (answered(r, 200, Plan), r.headers["ETag"]) == (expected, tag)
    r = await call(w, "POST", f"/plans/{name}/validate")
    assert (answered(r, 200, Plan), r.headers["ETag"]) == (expected, tag)


async def test_a_large_plan_answers_its_first_vms_and_pages_the_rest(world: World) -> None:
    """A plan of more VMs than an answer shows: its first ``VMS_SHOWN``, ``vmCount`` and
    ``vmsNext``, in every answer of the plan; ``/definition/vms`` pages through them all in
    the order given. A small plan lists them all (``vmsNext`` null)."""
    w = world
    name = w.idle["name"]
    small = answered(await call(w, "GET", f"/plans/{name}"), 200, PlanWithStatus)
    assert (small["vmCount"], small["vmsNext"], len(small["vms"])) == (2, None, 2)
    many = [{"id": f"vm-{i:05d}", "name": f"n{i}"} for i in range(2 * VMS_SHOWN + 5)]
    async with w.planner.engine.begin() as conn:
        await conn.execute(update(db.plans).where(db.plans.c.name == name).values(vms=many))
    body = answered(await call(w, "GET", f"/plans/{name}"), 200, PlanWithStatus)
    assert body["vms"] == many[:VMS_SHOWN]
    assert (body["vmCount"], body["vmsNext"]) == (len(many), str(VMS_SHOWN))
    listed = answered(await call(w, "GET", "/plans"), 200, PlanPage)["items"]
    [item] = [i for i in listed if i["name"] == name]
    assert (item["vms"], item["vmCount"]) == (many[:VMS_SHOWN], len(many))
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 70, **({"cursor": cursor} if cursor else {})}
        r = await call(w, "GET", f"/plans/{name}/definition/vms", params=params)
        page = answered(r, 200, PlanVmPage)
        assert page["total"] == len(many)
        got += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert got == many
    r = await call(w, "GET", f"/plans/{name}/definition/vms", params={"cursor": body["vmsNext"]})
    assert answered(r, 200, PlanVmPage)["items"] == many[VMS_SHOWN : 2 * VMS_SHOWN]
    r = await call(w, "GET", f"/plans/{name}/definition/vms", params={"cursor": "0999"})
    assert r.status_code == 422
    r = await call(w, "GET", "/plans/nobody/definition/vms")
    assert r.status_code == 404


async def test_archive_and_unarchive_answer_the_plan_as_before(world: World) -> None:
    w = world
    name = w.idle["name"]
    for action, archived in (("archive", True), ("unarchive", False)):
        r = await call(w, "POST", f"/plans/{name}/{action}")
        body = answered(r, 200, Plan)
        async with w.planner.engine.connect() as conn:
            row = await plans.find(conn, name)
        assert body == plans.public(row, w.planner.settings)
        assert (body["archived"], r.headers["ETag"]) == (archived, f'"{row["revision"]}"')


async def test_a_start_answers_the_plan_and_its_migration_as_before(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start validates against the inventory: its result is the running plan and its
    migration row, as the real start returns them."""
    w = world
    async with w.planner.engine.connect() as conn:
        row = await plans.find(conn, w.running["name"])
        mig = (
            (
                await conn.execute(
                    select(db.migrations).where(db.migrations.c.id == row["migration_id"])
                )
            )
            .mappings()
            .one()
        )

    async def started(*args: Any) -> Any:
        return row, mig

    monkeypatch.setattr(launching, "start", started)
    r = await call(w, "POST", f"/plans/{row['name']}/start")
    body = answered(r, 202, StartedPlan)
    assert body == {
        **plans.public(row, w.planner.settings),
        "migration": {
            "id": mig["id"],
            "number": 1,
            "vms": 3,
            "skipped": 0,
            "startedAt": mig["started_at"].isoformat(),
        },
    }
    assert r.headers["ETag"] == f'"{row["revision"]}"'


async def test_a_cancel_answers_as_before(world: World) -> None:
    w = world
    r = await call(w, "POST", f"/plans/{w.running['name']}/cancel", json={"vms": ["vm-0002"]})
    body = answered(r, 202, CancelAnswer)
    assert body == {
        "migrationId": w.started.migration_id,
        "canceling": ["vm-0002"],
        "alreadyFinished": [],
    }
    r = await call(w, "POST", f"/plans/{w.running['name']}/cancel")
    assert answered(r, 202, CancelAnswer) == {
        "migrationId": w.started.migration_id,
        "canceling": ["vm-0002"],
        "alreadyFinished": ["vm-0000", "vm-0001"],
    }


# --- a plan's VMs and migrations -----------------------------------------------------------


async def test_the_vms_and_migrations_of_a_plan_answer_as_before(world: World) -> None:
    w = world
    plan_id, mid = w.running["id"], w.started.migration_id
    async with w.planner.engine.connect() as conn:
        page = await st.list_vms(conn, plan_id, mid, None, 2, None)
        rest = await st.list_vms(conn, plan_id, mid, None, 2, page["next"])
        views = {v: await st.vm_status(conn, plan_id, v) for v in ("vm-0000", "vm-0001", "vm-0002")}
        migrations = await st.migrations_of(conn, plan_id)

    path = f"/plans/{w.running['name']}"
    r = await call(w, "GET", f"{path}/vms", params={"limit": 2})
    assert answered(r, 200, VmPage) == page
    assert page["next"]
    assert page["total"] == 3
    r = await call(w, "GET", f"{path}/vms", params={"limit": 2, "cursor": page["next"]})
    assert answered(r, 200, VmPage) == rest
    assert rest["items"][0]["waiting"]["reason"] == "PlanVmLimit"
    r = await call(w, "GET", f"/plans/{w.idle['name']}/vms")
    assert answered(r, 200, VmPage) == {"migrationId": None, "items": [], "next": None, "total": 0}

    for vm, view in views.items():
        assert view is not None
        r = await call(w, "GET", f"{path}/vms/{vm}")
        assert answered(r, 200, VmWithPipeline) == view
        etag = r.headers["ETag"]
        assert etag == f'"{view["revision"]}"'
        r = await call(w, "GET", f"{path}/vms/{vm}", headers={"If-None-Match": etag})
        assert (r.status_code, r.headers["ETag"]) == (304, etag)
    assert all(views.values())
    assert views["vm-0000"]["targetVm"]  # type: ignore[index]
    assert views["vm-0001"]["error"]  # type: ignore[index]
    assert views["vm-0002"]["waiting"]  # type: ignore[index]

    r = await call(w, "GET", f"{path}/migrations")
    assert answered(r, 200, MigrationList) == {"items": migrations}
    assert len(migrations) == 1


# --- errors --------------------------------------------------------------------------------


async def test_the_errors_answer_as_documented(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    running, idle = w.running["name"], w.idle["name"]
    answered(await call(w, "GET", "/plans/nope"), 404, Message)
    answered(await call(w, "GET", f"/plans/{running}/vms/nope"), 404, Message)
    answered(await call(w, "GET", f"/plans/{running}/migrations", params={}), 200, MigrationList)
    answered(await call(w, "POST", f"/plans/{running}/archive"), 409, Problems)
    answered(await call(w, "POST", f"/plans/{idle}/cancel"), 409, Problems)
    r = await call(w, "PATCH", f"/networkmaps/{w.running['network_map']}", json={},
                   headers={"If-Match": "x"})  # fmt: skip
    answered(r, 412, Message)
    answered(await call(w, "GET", f"/plans/{running}/vms", params={"cursor": "x"}), 422, Problems)
    answered(await call(w, "GET", "/plans", params={"phase": "Nope"}), 422, Problems)
    r = await call(w, "POST", f"/plans/{running}/cancel", json={"vms": ["nope"]})
    answered(r, 422, Problems)

    async def refused(*args: Any) -> Any:
        raise NotStartable("no", [Problem("vms[0]", "locked", "locked", vm="a").as_dict()])

    monkeypatch.setattr(launching, "start", refused)
    body = answered(await call(w, "POST", f"/plans/{idle}/start"), 422, StartRefused)
    assert body["detail"]["problems"][0]["code"] == "locked"
