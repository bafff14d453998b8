"""Each service as a real process: boot, health, readiness, auth, errors, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared import catalog
from shared.bus import Bus
from shared.db import migrating
from shared.devservices import (
    DevServices,
    restart_nats,
    restart_postgres,
    start_nats,
    start_postgres,
    stop_nats,
    stop_postgres,
)
from shared.settings import NatsSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import SERVICES, TOKEN, eventually
from tools.processes import ServiceProcess


async def launch(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    """Start a service process and wait until it answers /healthz (not necessarily ready)."""
    svc = ServiceProcess(
        name,
        {"HOIST_LOG_FORMAT": "json", "HOIST_HTTP_SHUTDOWN_GRACE_SECONDS": "5", **env},
        log_dir,
        TOKEN,
    )
    await svc.start()
    await eventually(svc.healthy, what=f"{name} /healthz", within=30)
    return svc


async def forget(nats_url: str, prefix: str) -> None:
    """Remove the streams a test's services declared under its prefix."""
    bus = Bus(NatsSettings(url=nats_url, prefix=prefix), source="/tests")
    await bus.connect()
    await bus.delete_streams()
    await bus.drain()


@pytest.fixture(scope="module")
async def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """A simulated cluster for the services that keep things in Kubernetes (Secrets)."""
    base = tmp_path_factory.mktemp("kube")
    async with Cluster(ClusterConfig(storage_root=base / "volumes")) as cluster:
        yield cluster.kubeconfig(base / "kubeconfig")


@pytest.fixture(scope="module")
async def fleet(
    servers: DevServices,
    database_url: str,
    kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """All four services against the shared test servers, under one NATS prefix."""
    env = {
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": "fleet",
        "HOIST_DATABASE_URL": database_url,
        "HOIST_KUBE_KUBECONFIG": str(kubeconfig),
    }
    logs = tmp_path_factory.mktemp("fleet")
    started = await asyncio.gather(*(launch(name, env, logs) for name in SERVICES))
    procs = {proc.name: proc for proc in started}
    for proc in procs.values():
        await eventually(proc.ready, what=f"{proc.name} ready", within=30)
    yield procs
    await asyncio.gather(*(proc.terminate() for proc in procs.values()))
    await forget(servers.nats_url, "fleet")


@pytest.mark.parametrize("name", SERVICES)
async def test_service_is_healthy_and_ready(fleet: dict[str, ServiceProcess], name: str) -> None:
    svc = fleet[name]
    health = (await svc.client.get("/healthz")).json()
    assert health == {"status": "ok", "service": name, "version": "0.1.0"}
    ready = await svc.readyz()
    assert ready["http_status"] == 200
    assert ready["checks"] == {"nats": "ok", "database": "ok", "startup": "ok"}


@pytest.mark.parametrize("name", SERVICES)
async def test_api_requires_a_token(fleet: dict[str, ServiceProcess], name: str) -> None:
    svc = fleet[name]
    path = f"/api/v1/{name}/status"
    missing = await svc.client.get(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in missing.json()["detail"]
    wrong = await svc.client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid bearer token"}
    basic = await svc.client.get(path, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    ok = await svc.client.get(path, headers=svc.auth())
    assert ok.status_code == 200


@pytest.mark.parametrize("name", SERVICES)
async def test_status_shows_declared_subscriptions(
    fleet: dict[str, ServiceProcess], name: str
) -> None:
    svc = fleet[name]
    status = (await svc.client.get(f"/api/v1/{name}/status", headers=svc.auth())).json()
    assert status["phase"] == "running"
    head = migrating.head(importlib.import_module(f"services.{name}").SPEC.migrations)
    assert status["database_revision"] == status["database_head"] == head
    assert status["outbox_pending"] == 0
    expected = {
        "inventory": set(),
        "planner": {"fleet-planner-inventory", "fleet-planner-migrations"},
        "orchestrator": {"fleet-orchestrator-plans"},
        "progress": {"fleet-progress-populators"},
    }[name]
    assert {s["name"] for s in status["subscriptions"]} == expected
    assert all(s["declared"] for s in status["subscriptions"])


@pytest.mark.parametrize("name", SERVICES)
async def test_openapi_and_metrics(fleet: dict[str, ServiceProcess], name: str) -> None:
    svc = fleet[name]
    spec = (await svc.client.get(f"/api/v1/{name}/openapi.json")).json()
    assert spec["info"]["title"] == f"Hoist {name.capitalize()}"
    assert f"/api/v1/{name}/deadletters" in spec["paths"]
    assert (await svc.client.get(f"/api/v1/{name}/docs")).status_code == 200
    metrics = (await svc.client.get("/metrics")).text
    assert "hoist_http_requests_total" in metrics


async def test_errors_are_precise_json(fleet: dict[str, ServiceProcess]) -> None:
    svc = fleet["planner"]
    missing = await svc.client.get("/api/v1/nothing-here", headers=svc.auth())
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    bad = await svc.client.get("/api/v1/planner/deadletters?limit=0", headers=svc.auth())
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "limit"]
    wrong_method = await svc.client.delete("/api/v1/planner/status", headers=svc.auth())
    assert wrong_method.status_code == 405


@pytest.mark.parametrize("name", SERVICES)
async def test_nul_characters_are_refused(fleet: dict[str, ServiceProcess], name: str) -> None:
    """PostgreSQL refuses NUL in text: every service says so with a 4xx before a handler
    could fail on it with a 500."""
    svc = fleet[name]
    path = await svc.client.get(f"/api/v1/{name}/deadletters/%00", headers=svc.auth())
    assert path.status_code == 422
    assert path.json()["detail"][0]["loc"] == ["path"]
    query = await svc.client.get(f"/api/v1/{name}/deadletters?x=%00", headers=svc.auth())
    assert query.status_code == 422
    assert query.json()["detail"][0]["loc"] == ["query"]
    body = await svc.client.post(
        f"/api/v1/{name}/deadletters/x/replay", json={"a": "b\x00"}, headers=svc.auth()
    )
    assert body.status_code == 422
    assert body.json()["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize("name", SERVICES)
async def test_dead_letter_sequences_outside_nats_range(
    fleet: dict[str, ServiceProcess], name: str
) -> None:
    """JetStream sequences are 1..2^64-1: any other is a 422 naming the parameter before
    NATS is asked (issue 24: NATS failed on them, a 500); one in range but absent is a 404."""
    svc = fleet[name]
    base = f"/api/v1/{name}/deadletters"
    for after in (-1, 2**64 - 1, 2**64):
        resp = await svc.client.get(f"{base}?after={after}", headers=svc.auth())
        assert resp.status_code == 422, after
        assert resp.json()["detail"][0]["loc"] == ["query", "after"]
    last = await svc.client.get(f"{base}?after={2**64 - 2}", headers=svc.auth())
    assert last.status_code == 200
    assert last.json() == []
    for sequence in (-1, 0, 2**64):
        for method, path in (
            ("DELETE", f"{base}/{sequence}"),
            ("POST", f"{base}/{sequence}/replay"),
        ):
            resp = await svc.client.request(method, path, headers=svc.auth())
            assert resp.status_code == 422, (method, path)
            assert resp.json()["detail"][0]["loc"] == ["path", "sequence"]
    for method, path in (("DELETE", f"{base}/{2**64 - 1}"), ("POST", f"{base}/{2**64 - 1}/replay")):
        resp = await svc.client.request(method, path, headers=svc.auth())
        assert resp.status_code == 404, (method, path)


async def test_dead_letters_can_be_listed_replayed_and_discarded(
    fleet: dict[str, ServiceProcess], servers: DevServices
) -> None:
    svc = fleet["orchestrator"]
    bus = Bus(NatsSettings(url=servers.nats_url, prefix="fleet"), source="/tests")
    await bus.connect()
    try:
        original = bus.subject("plan.p1.cancel")
        for n in (1, 2):
            await bus.js.publish(
                bus.subject("dlq.fleet-orchestrator-plans"),
                json.dumps({"n": n}).encode(),
                headers={
                    "Nats-Msg-Id": f"dl-{n}",
                    "Hoist-Dlq-Subject": original,
                    "Hoist-Dlq-Consumer": "fleet-orchestrator-plans",
                    "Hoist-Dlq-Deliveries": "5",
                    "Hoist-Dlq-Reason": "MaxDeliveries",
                    "Hoist-Dlq-Error": "boom",
                },
            )
        # A dead letter of another service's consumer is not this one's to show.
        await bus.js.publish(
            bus.subject("dlq.fleet-planner-migrations"),
            b"{}",
            headers={"Hoist-Dlq-Consumer": "fleet-planner-migrations"},
        )
        listed = (
            await svc.client.get("/api/v1/orchestrator/deadletters", headers=svc.auth())
        ).json()
        assert [(d["reason"], d["event"], d["deliveries"]) for d in listed] == [
            ("MaxDeliveries", {"n": 1}, 5),
            ("MaxDeliveries", {"n": 2}, 5),
        ]
        first, second = listed[0]["sequence"], listed[1]["sequence"]

        replayed = await svc.client.post(
            f"/api/v1/orchestrator/deadletters/{first}/replay", headers=svc.auth()
        )
        assert replayed.status_code == 202
        assert replayed.json()["subject"] == original
        last = await bus.js.get_last_msg(bus.stream_name(catalog.PLANS), original)
        assert json.loads(last.data or b"") == {"n": 1}

        gone = await svc.client.delete(
            f"/api/v1/orchestrator/deadletters/{second}", headers=svc.auth()
        )
        assert gone.status_code == 204
        after = (
            await svc.client.get("/api/v1/orchestrator/deadletters", headers=svc.auth())
        ).json()
        # Both are gone. (The replayed one is no envelope: the consumer, which handles the
        # subject, puts it back as a new dead letter.)
        assert [d for d in after if d["sequence"] in (first, second)] == []
        again = await svc.client.post(
            f"/api/v1/orchestrator/deadletters/{first}/replay", headers=svc.auth()
        )
        assert again.status_code == 404
    finally:
        # A client left connected would keep reconnecting to the fleet's NATS after it stops.
        await bus.drain()


async def test_readiness_follows_nats_and_postgres(
    database_url: str, tmp_path: Path, prefix: str
) -> None:
    """Starts before NATS is up, becomes ready, and reports each outage while it lasts."""
    # Our own directories (so a stop keeps the data for the restart), reachable by the
    # postgres user: pytest's tmp_path is private to root.
    work = Path(tempfile.mkdtemp(prefix="hoist-dev-"))
    work.chmod(0o755)
    nats = await start_nats(work / "nats")
    postgres = await start_postgres(work / "pg")
    await stop_nats(nats)
    env = {
        "HOIST_NATS_URL": nats.url,
        "HOIST_NATS_PREFIX": prefix,
        "HOIST_NATS_RECONNECT_WAIT": "0.5",
        "HOIST_DATABASE_URL": postgres.url,
    }
    svc = await launch("progress", env, tmp_path)

    async def outage(check: str, stop: Any, restart: Any, server: Any) -> Any:
        await stop(server)
        down = await svc.readyz()
        assert down["http_status"] == 503
        assert down["checks"][check] != "ok"
        assert [k for k, v in down["checks"].items() if v != "ok"] == [check]
        server = await restart(server)
        await eventually(svc.ready, what=f"ready again after {check} restart", within=30)
        return server

    try:
        waiting = await svc.readyz()
        assert waiting["http_status"] == 503
        assert "connect to NATS" in waiting["checks"]["startup"]

        nats = await restart_nats(nats)
        await eventually(svc.ready, what="ready once NATS is up", within=30)

        nats = await outage("nats", stop_nats, restart_nats, nats)
        postgres = await outage("database", stop_postgres, restart_postgres, postgres)
    finally:
        code = await svc.terminate()
        await stop_nats(nats)
        await stop_postgres(postgres)
        shutil.rmtree(work, ignore_errors=True)
    assert code == 0, svc.logs()


async def test_sigterm_drains_and_exits_cleanly(
    servers: DevServices, database_url: str, tmp_path: Path, prefix: str
) -> None:
    env = {
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": prefix,
        "HOIST_DATABASE_URL": database_url,
    }
    svc = await launch("orchestrator", env, tmp_path)
    await eventually(svc.ready, what="ready", within=30)
    assert await svc.terminate() == 0
    lines = [json.loads(line) for line in svc.logs().splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in lines]
    assert "service stopped: consumers stopped, NATS drained, pool closed" in messages
    assert all(entry["service"] == "orchestrator" for entry in lines)
    assert not [e for e in lines if e["level"] == "error"], lines
    await forget(servers.nats_url, prefix)
