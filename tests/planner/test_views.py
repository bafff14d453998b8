"""The typed answers of the planner's API (``services/planner/views.py``): the OpenAPI
schema names them, and what a route answers validates against them, every key documented.

The planner's app runs in this process with a stub in place of the database (no query is
made); ``test_cutover`` checks the answers of the real planner the same way
(``assert_plan_answer``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import cache
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

import services.planner
from services.planner import launching, plans
from services.planner.db import PlanRow
from services.planner.domain import Planner
from services.planner.model import CutoverRequest
from services.planner.views import Plan
from shared.service.app import create_app
from tests.answers import closed
from tests.conftest import TOKEN, make_settings

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
M = TypeVar("M", bound=BaseModel)
CUTOVER = "/api/v1/plans/{ref}/cutover"


def _app() -> FastAPI:
    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    return create_app(services.planner.SPEC, settings)


@cache
def openapi() -> dict[str, Any]:
    """The planner's OpenAPI schema, as this checkout's code makes it."""
    return _app().openapi()


def assert_answer(body: Any, model: type[M]) -> M:
    """``body`` validates against the documented ``model``: the pydantic model, and its
    OpenAPI schema (the component of its name) with every key it has documented there."""
    spec = openapi()
    ref = f"#/components/schemas/{model.__name__}"
    schema = {"$ref": ref, "components": closed(spec["components"])}
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    return model.model_validate(body)


def assert_plan_answer(body: Any) -> Plan:
    """``body`` validates against the documented plan (``assert_answer``)."""
    return assert_answer(body, Plan)


def plan_row(**over: Any) -> PlanRow:
    at = datetime(2030, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    row: dict[str, Any] = {
        "id": "4f0c2c9e-6d7a-4c1e-9a51-0d6f3f6d2b10",
        "name": "web",
        "description": "",
        "source_provider": "p-src",
        "target_provider": "p-dst",
        "target_namespace": "migrated",
        "network_map": "nm-1",
        "storage_map": "sm-1",
        "migration_type": "warm",
        "target_power_state": "auto",
        "transfer_network": None,
        "naming": {"vm": "{name}", "pvc": "{vm}-{index}"},
        "limits": {"maxVmsInFlight": 3},
        "cutover": datetime(2030, 5, 1, 20, 0, tzinfo=UTC),
        "cutover_revision": 4,
        "precopy_interval_minutes": 60,
        "convert_guest": False,
        "hooks": [],
        "selector": {"search": "web", "excludeConcerns": "Critical"},
        "vms": [
            {"id": "vm-1", "name": "web-1", "targetName": "web-one", "targetPowerState": "on"},
            {"name": "web-9"},
        ],
        "problems": [
            {
                "path": "vms[1]",
                "code": "not_found",
                "severity": "error",
                "message": "no VM",
                "vm": "web-9",
            },
            {"path": "transferNetwork", "code": "slow", "severity": "warning", "message": "m"},
        ],
        "validated_at": at,
        "stale": False,
        "phase": "Running",
        "archived": False,
        "migration_id": "m-1",
        "revision": 17,
        "created_at": at,
        "updated_at": at,
    }
    row.update(over)
    return cast(PlanRow, row)


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, Planner]]:
    app = _app()
    started = asyncio.Event()
    started.set()
    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    planner = Planner(
        engine=cast(Any, None),
        sessionmaker=cast(Any, None),
        outbox=cast(Any, None),
        inventory=cast(Any, None),
        settings=settings.planner,
    )
    app.state.runtime = SimpleNamespace(domain=planner, started=started, engine=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://planner") as c:
        yield c, planner


def test_the_cutover_route_names_its_answer() -> None:
    spec = openapi()
    ok = spec["paths"][CUTOVER]["put"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Plan"}
    assert "ETag" in ok["headers"]
    plan = spec["components"]["schemas"]["Plan"]
    assert set(plan["properties"]) == {f.alias for f in Plan.model_fields.values()}
    assert {"id", "name", "cutover", "cutoverRevision", "revision"} <= set(plan["required"])
    assert {"type": "null"} in plan["properties"]["cutover"]["anyOf"]
    assert {"type": "string", "format": "date-time"} in plan["properties"]["cutover"]["anyOf"]


@pytest.mark.parametrize(
    "row",
    [
        plan_row(),
        plan_row(
            cutover=None,
            selector=None,
            validated_at=None,
            migration_id=None,
            phase="Ready",
            problems=[],
            limits={},
        ),
    ],
    ids=["running", "at-once"],
)
async def test_the_cutover_answer_is_the_plan_as_before(
    client: tuple[httpx.AsyncClient, Planner], row: PlanRow, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, planner = client
    asked: list[tuple[str, CutoverRequest]] = []

    async def set_cutover(
        sessionmaker: Any, outbox: Any, ref: str, body: CutoverRequest
    ) -> PlanRow:
        asked.append((ref, body))
        return row

    monkeypatch.setattr(launching, "set_cutover", set_cutover)
    r = await http.put(CUTOVER.format(ref="web"), json={"at": None}, headers=HEADERS)
    assert r.status_code == 200, r.text
    assert [(ref, body.at) for ref, body in asked] == [("web", None)]
    # The JSON is the plan as every plan route shows it, untouched by the model (times as
    # ``isoformat`` writes them, limits with the defaults, no key dropped or added).
    expected = plans.public(row, planner.settings)
    assert r.json() == expected
    assert r.headers["ETag"] == f'"{row["revision"]}"'
    plan = assert_plan_answer(r.json())
    assert plan.cutover == row["cutover"]
    assert plan.model_dump(by_alias=True, mode="json").keys() == expected.keys()


def test_an_undocumented_key_is_caught() -> None:
    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    body = plans.public(plan_row(), settings.planner)
    assert_plan_answer(body)
    places: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
        lambda b: b,
        lambda b: b["vms"][0],
        lambda b: b["problems"][0],
        lambda b: b["limits"],
        lambda b: b["vmSelector"],
    ]
    for place in places:
        changed = copy.deepcopy(body)
        place(changed)["surprise"] = 1
        with pytest.raises(jsonschema.ValidationError, match="surprise"):
            assert_plan_answer(changed)
