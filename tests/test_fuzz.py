"""Every service's OpenAPI document, fuzzed against the real service (issue 24).

Each of the four services runs as its own process on the session's PostgreSQL and NATS (and
a simulated cluster, for the inventory's Secrets and a kubevirt provider). Schemathesis
reads the document the service serves and sends what it generates from it, valid and
invalid, for a bounded number of examples per operation. Every answer must:

- not be a 5xx (``not_a_server_error``);
- have a status the document declares for the route (``status_code_conformance``);
- match the declared schema, content type and headers (``response_schema_conformance``,
  ``content_type_conformance``, ``response_headers_conformance``).

Server-sent-event streams are left out of generation (a stream that is valid never ends);
their refusals are covered by the services' own tests. Where an object exists (the
kubevirt provider) its routes are fuzzed again with its name in the path, so answers about
a real object are checked too, not only 404s.

``HOIST_TEST_FUZZ_EXAMPLES`` changes the number of examples per operation and mode (10 by
default: each service's run stays well under a minute on a loaded machine).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import SERVICES, TOKEN, eventually
from tests.test_services import forget
from tools.processes import ServiceProcess

EXAMPLES = int(os.environ.get("HOIST_TEST_FUZZ_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
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
        try:
            await asyncio.gather(*(p.start() for p in procs.values()))
            for p in procs.values():
                await eventually(p.ready, what=f"{p.name} /readyz", within=60)
            inventory = procs["inventory"]
            created = await inventory.client.post(
                "/api/v1/providers",
                json={"name": PROVIDER, "type": "kubevirt"},
                headers=inventory.auth(),
            )
            assert created.status_code == 201, created.text
            yield procs
        finally:
            await asyncio.gather(*(p.terminate() for p in procs.values()))
            await forget(servers.nats_url, "fuzz")


def fuzz(svc: ServiceProcess, document: dict[str, Any], statuses: Counter[int]) -> list[str]:
    """Run every operation of ``document`` against ``svc``; the failures, one line each.
    ``statuses`` counts the answers."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is not valid OpenAPI
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue
        runs: list[dict[str, Any] | None] = [None]
        if svc.name == "inventory" and "{ref}" in operation.path and operation.method != "delete":
            runs.append({"ref": PROVIDER})
        for path_parameters in runs:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                failures += _run(svc, operation.label, strategy, mode, statuses)
    return failures


def _run(
    svc: ServiceProcess, label: str, strategy: Any, mode: GenerationMode, statuses: Counter[int]
) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        try:
            case.headers = {**(case.headers or {}), **svc.auth()}  # 401s: test_limits
            answer = case.call(base_url=svc.url, timeout=30)
            statuses[answer.status_code] += 1
            case.validate_response(answer, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # with the curl to repeat it
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            failures.append(f"{label} [{mode.value}]: {' | '.join(lines[:14])}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
        assert mode is GenerationMode.NEGATIVE, label
    return failures


@pytest.mark.parametrize("name", SERVICES)
async def test_openapi_under_fuzzing(services: dict[str, ServiceProcess], name: str) -> None:
    svc = services[name]
    document = (await svc.client.get(f"/api/v1/{name}/openapi.json")).json()
    statuses: Counter[int] = Counter()
    failures = await asyncio.to_thread(fuzz, svc, document, statuses)
    assert not failures, "\n".join(dict.fromkeys(failures))  # each distinct failure once
    print(f"{name}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    operations = sum(len(ops) for ops in document["paths"].values())
    assert sum(statuses.values()) >= 2 * operations  # it really sent what it generated
    assert statuses[200] > 0, statuses


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
