"""The planner's OpenAPI document fuzzed on real maps and plans (issue 24).

``tests/test_fuzz.py`` fuzzes every service where nothing exists, so the planner's routes
answer mostly 404 there. Here the planner validates against a real inventory of a
simulated oVirt engine and cluster: a network map, a storage map and a plan exist, and every
route naming one is fuzzed again with its id in the path (``tests.fuzzing``): changes,
validation, start, cancel, cutover, archive, with generated bodies and parameters. No 5xx,
every status documented, every answer matching its schema.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.fuzzing import EXAMPLES, fuzz, report
from tests.inventory.conftest import api
from tests.planner.conftest import make_maps, plan_body
from tools.processes import ServiceProcess


async def test_planner_routes_on_real_objects_under_fuzzing(
    planner: ServiceProcess, providers: dict[str, str]
) -> None:
    network, storage = await make_maps(planner, providers)
    created = await api(
        planner, "POST", "/plans", json=plan_body(providers, (network, storage), [{"name": "db-1"}])
    )
    assert created.status_code == 201, created.text
    plan = created.json()["id"]

    def real(path: str) -> dict[str, Any] | None:
        if path.startswith("/api/v1/networkmaps/"):
            return {"ref": network}
        if path.startswith("/api/v1/storagemaps/"):
            return {"ref": storage}
        if path.startswith("/api/v1/plans/{ref}"):
            return {"ref": plan}
        if path.startswith("/api/v1/plans/{plan}"):
            return {"plan": plan}
        return None

    document = (await planner.client.get("/api/v1/planner/openapi.json")).json()
    statuses: Counter[int] = Counter()
    # The other routes, and these with random ids, are fuzzed by tests/test_fuzz.py. Half the
    # examples: each one validates a plan against the inventory, so the run stays well under
    # a minute.
    examples = max(1, EXAMPLES // 2)
    failures = await asyncio.to_thread(
        fuzz, planner, document, statuses, real, generic=False, examples=examples
    )
    report("planner (real objects)", document, statuses, failures)
