"""Every service's OpenAPI document, fuzzed against the real service (issue 24).

Each of the four services runs as its own process on the session's PostgreSQL and NATS (and
a simulated cluster, for the inventory's Secrets and a kubevirt provider whose routes are
fuzzed again with its name in the path). ``tests.fuzzing`` says what is sent and checked:
no 5xx, every status documented, every answer matching its schema. The planner's routes on
real maps and plans are fuzzed by ``tests/planner/test_fuzz_plans.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import SERVICES, TOKEN, eventually
from tests.fuzzing import fuzz, report
from tests.test_services import forget
from tools.processes import ServiceProcess

PROVIDER = "fuzz-host"


@pytest.fixture(scope="module")
async def services(
    servers: DevServices, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, ServiceProcess]]:
    base = tmp_path_factory.mktemp("fuzz")
    async with Cluster(ClusterConfig(storage_root=base / "volumes")) as cluster:
        env = {
            "HOIST_NATS_URL": servers.nats_url,
            "HOIST_NATS_PREFIX": "fuzz",
            "HOIST_DATABASE_URL": database_url,
            "HOIST_KUBE_KUBECONFIG": str(cluster.kubeconfig(base / "kubeconfig")),
            "HOIST_LOG_FORMAT": "json",
            "HOIST_HTTP_SHUTDOWN_GRACE_SECONDS": "2",
            # A fuzzed URL names no real server: give up on it quickly.
            "HOIST_INVENTORY_CONNECT_TIMEOUT_SECONDS": "1",
        }
        procs = {name: ServiceProcess(name, env, base, TOKEN) for name in SERVICES}
        procs["planner"].env["HOIST_PLANNER_INVENTORY_URL"] = procs["inventory"].url
        before: dict[str, set[str]] = {}
        try:
            await asyncio.gather(*(p.start() for p in procs.values()))
            for p in procs.values():
                await eventually(p.ready, what=f"{p.name} /readyz", within=60)
            before = await _objects(procs)
            inventory = procs["inventory"]
            created = await inventory.client.post(
                "/api/v1/providers",
                json={"name": PROVIDER, "type": "kubevirt"},
                headers=inventory.auth(),
            )
            assert created.status_code == 201, created.text
            yield procs
        finally:
            if before:  # the session's database outlives the module: leave nothing in it
                await _remove(procs, before)
            await asyncio.gather(*(p.terminate() for p in procs.values()))
            await forget(servers.nats_url, "fuzz")


#: What a fuzzed request may have created, where: the service, and its list route.
LISTS = {
    "/api/v1/plans?archived=true&limit=1000": "planner",
    "/api/v1/plans?limit=1000": "planner",
    "/api/v1/networkmaps": "planner",
    "/api/v1/storagemaps": "planner",
    "/api/v1/providers": "inventory",
}


async def _objects(procs: dict[str, ServiceProcess]) -> dict[str, set[str]]:
    """The id of every object each list route lists now."""
    out: dict[str, set[str]] = {}
    for route, name in LISTS.items():
        svc = procs[name]
        listed = await svc.client.get(route, headers=svc.auth())
        assert listed.status_code == 200, listed.text
        out[route] = {item["id"] for item in listed.json()["items"]}
    return out


async def _remove(procs: dict[str, ServiceProcess], before: dict[str, set[str]]) -> None:
    """Delete what the module created (plans first: a map or provider in use stays)."""
    for route, ids in (await _objects(procs)).items():
        svc = procs[LISTS[route]]
        for new in ids - before[route]:
            gone = await svc.client.delete(f"{route.partition('?')[0]}/{new}", headers=svc.auth())
            assert gone.status_code in (204, 404), gone.text


@pytest.mark.parametrize("name", SERVICES)
async def test_openapi_under_fuzzing(services: dict[str, ServiceProcess], name: str) -> None:
    svc = services[name]
    document = (await svc.client.get(f"/api/v1/{name}/openapi.json")).json()
    statuses: Counter[int] = Counter()

    def real(path: str) -> dict[str, Any] | None:
        return {"ref": PROVIDER} if name == "inventory" and "{ref}" in path else None

    failures = await asyncio.to_thread(fuzz, svc, document, statuses, real)
    report(name, document, statuses, failures)


async def test_every_status_is_documented_for_every_route(
    services: dict[str, ServiceProcess],
) -> None:
    """What the app answers for any route is in each route's document: 401 without a token,
    413 for a body over the limit (refused unread), 422 for a NUL in the path or query."""
    for name, svc in services.items():
        document = (await svc.client.get(f"/api/v1/{name}/openapi.json")).json()
        for path, operations in document["paths"].items():
            for method, op in operations.items():
                declared = set(op["responses"])
                assert "422" in declared, (name, method, path)
                if path.startswith("/api/v1/"):
                    assert {"401", "503"} <= declared, (name, method, path)
                if "requestBody" in op:
                    assert "413" in declared, (name, method, path)
    planner = services["planner"]
    cases: list[tuple[Callable[[], Any], int]] = [
        (lambda: planner.client.get("/api/v1/plans"), 401),
        (lambda: planner.client.get("/api/v1/plans?provider=%00", headers=planner.auth()), 422),
        (
            lambda: planner.client.post(
                "/api/v1/plans",
                content=b"{" + b" " * (16 * 2**20 + 1) + b"}",
                headers={**planner.auth(), "Content-Type": "application/json"},
            ),
            413,
        ),
    ]
    for send, status in cases:
        answer: httpx.Response = await send()
        assert answer.status_code == status, answer.text
        assert isinstance(answer.json()["detail"], str | list)
    # Found by fuzzing: a body that is not even text was FastAPI's undocumented 400.
    garbled = await planner.client.post(
        "/api/v1/networkmaps",
        content=b"\x80\x81",
        headers={**planner.auth(), "Content-Type": "application/json"},
    )
    assert garbled.status_code == 422, garbled.text
    assert garbled.json()["detail"][0]["loc"] == ["body"]
