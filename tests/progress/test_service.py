"""The progress service end to end: populator pods in the simulated cluster, the service as
a real process, samples in PostgreSQL, events on NATS, the HTTP API and its SSE stream.

One service per module (a 1 s scrape interval); the last test restarts it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from services.progress import views
from shared.bus import Bus
from sim.kube.cluster import Cluster
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.answers import assert_documented
from tests.conftest import TOKEN, eventually
from tests.populators.in_cluster import run_populator
from tests.progress.conftest import (
    NS,
    OVIRT_IMAGE,
    Replicas,
    Rows,
    announce,
    announce_finished,
    get,
    hoist_metadata,
    ids,
    metrics_pod,
    now,
    sampled_after,
)
from tests.sim.ovirt.fixtures import MiB, new_disk
from tools.processes import ServiceProcess


@pytest.fixture(scope="module")
async def svc(replicas: Replicas) -> ServiceProcess:
    return await replicas.start()


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    inv, faults = scenario.from_dict({"vms": []})
    async with Engine(inv, faults, tmp_path_factory.mktemp("engine")) as e:
        yield e


async def test_real_ovirt_populator_is_found_by_the_watch_and_stored(
    svc: ServiceProcess, engine: Engine, core: client.CoreV1Api, rows: Rows
) -> None:
    disk = new_disk(engine, size="96MiB", allocated=0.5, extent="1MiB", layout="scattered")
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=8 * MiB))
    d = ids("ovirt")
    total = 96 * MiB
    run = asyncio.create_task(
        run_populator(
            core,
            OVIRT_IMAGE,
            [f"--engine-url={engine.api_url}", f"--disk-id={disk.id}"],
            {"user": "admin@internal", "password": "secret", "cacert": engine.cert.ca_pem},
            block=True,
            size="128Mi",
            metric="ovirt_progress",
            metadata=lambda uid: hoist_metadata(d, uid, total),
        )
    )
    # No event: the pod watch finds the pod by its labels, the scrapes fill the row.
    seen: dict[str, object] = {}

    async def copying() -> bool:
        row = await rows.disk(d["disk_id"])
        seen.update(row or {})
        return bool(row and row["bytes_done"] > 0 and row["state"] == "running")

    await eventually(copying, within=40, every=0.1, what=f"samples while copying ({seen})")
    result = await run
    assert result.phase == "Succeeded", result.log

    async def finished() -> bool:
        row = await rows.disk(d["disk_id"])
        seen.update(row or {})
        return bool(row and row["state"] == "succeeded")

    await eventually(finished, within=20, what=f"the disk finished ({seen})")
    assert seen["percent"] == 100.0
    assert seen["source"] == "watch"
    history = await rows.history(d["disk_id"])
    assert history, "no history point stored"
    assert [p["bytes_done"] for p in history] == sorted(p["bytes_done"] for p in history)

    body = (await get(svc, f"/disks/{d['disk_id']}")).json()
    assert body["state"] == "succeeded"
    assert body["percent"] == 100.0
    assert body["history"]
    assert body["pod"]["namespace"] == NS
    assert_documented("progress", body, views.DiskWithHistory)
    vm = (await get(svc, f"/vms/{d['vm_id']}")).json()
    assert vm["disksDone"] == 1
    assert vm["disks"][0]["diskId"] == d["disk_id"]
    assert_documented("progress", vm, views.VmProgress)
    plan = (await get(svc, f"/plans/{d['plan_id']}")).json()
    assert_documented("progress", plan, views.PlanProgress)
    assert plan["state"] == "succeeded"
    assert plan["vms"][0]["vmId"] == d["vm_id"]


async def test_a_restarting_pod_keeps_being_scraped(
    svc: ServiceProcess, core: client.CoreV1Api, kube_sim: Cluster, publisher: Bus, rows: Rows
) -> None:
    d, owner = ids("restart"), str(uuid.uuid4())
    name = f"pop-{d['disk_id']}"
    ip = await metrics_pod(core, name, owner, rate=8 * MiB, restart="OnFailure")
    await announce(publisher, d, name, ip, owner, 1 << 30)
    before = await sampled_after(rows, d["disk_id"], now())
    await eventually(
        lambda: _bytes_above(rows, d["disk_id"], 16 * MiB), within=20, what="16 MiB copied"
    )
    await kube_sim.controllers["kubelet"].kill(NS, name)  # type: ignore[attr-defined]
    # The container starts again (same pod, counters from zero): the service keeps going.
    restarted: dict[str, int] = {}

    async def counters_went_back() -> bool:
        row = await rows.disk(d["disk_id"])
        assert row is not None
        restarted["bytes"] = row["bytes_done"]
        return bool(row["bytes_done"] < 16 * MiB)

    await eventually(counters_went_back, within=30, every=0.1, what="samples after the restart")
    await eventually(
        lambda: _bytes_above(rows, d["disk_id"], restarted["bytes"]),
        within=20,
        what="progress after the restart",
    )
    row = await rows.disk(d["disk_id"])
    assert row is not None
    assert row["state"] == "running"
    assert before["pod"] == row["pod"]
    assert await svc.healthy()


async def _bytes_above(rows: Rows, disk_id: str, floor: int) -> bool:
    row = await rows.disk(disk_id)
    return bool(row and row["bytes_done"] > floor)


async def test_a_remote_cluster_is_scraped_through_its_api_server(
    svc: ServiceProcess, core: client.CoreV1Api, kube_sim: Cluster, publisher: Bus, rows: Rows
) -> None:
    """A target provider whose Secret has a kubeconfig is a remote cluster: its pods are
    reached through its API server's pod proxy (the simulator plays the remote cluster; the
    announced pod IP leads nowhere, so only the proxy can succeed)."""
    provider = f"remote-{uuid.uuid4().hex[:6]}"
    await core.create_namespaced_secret(
        "hoist",
        {
            "metadata": {"name": f"hoist-provider-{provider}"},
            "stringData": {
                "url": kube_sim.url,
                "kubeconfig": yaml.safe_dump(kube_sim.kubeconfig_dict()),
            },
        },
    )
    d, owner = ids("remote"), str(uuid.uuid4())
    name = f"pop-{d['disk_id']}"
    await metrics_pod(core, name, owner)
    await announce(publisher, d, name, "127.42.255.254", owner, 1 << 30, cluster=provider)
    row = await sampled_after(rows, d["disk_id"], now())
    assert row["bytes_done"] > 0
    assert row["cluster_id"] == provider


async def test_garbage_and_foreign_pages_are_logged_and_survived(
    svc: ServiceProcess, core: client.CoreV1Api, publisher: Bus, rows: Rows
) -> None:
    bad, foreign, good = ids("garbage"), ids("foreign"), ids("good")
    for d, mode in ((bad, "garbage"), (foreign, "other-owner"), (good, "ok")):
        owner = str(uuid.uuid4())
        name = f"pop-{d['disk_id']}"
        ip = await metrics_pod(core, name, owner, mode=mode)
        await announce(publisher, d, name, ip, owner, 1 << 30)
    start = now()
    first = await sampled_after(rows, good["disk_id"], start)
    await sampled_after(rows, good["disk_id"], first["observed_at"])  # a second round

    def complaints(disk_id: str) -> list[str]:
        return [
            line for line in svc.logs().splitlines() if "cannot scrape" in line and disk_id in line
        ]

    await eventually(lambda: bool(complaints(bad["disk_id"])), what="the garbage page logged")
    await eventually(lambda: bool(complaints(foreign["disk_id"])), what="the foreign page logged")
    assert "not Prometheus text" in complaints(bad["disk_id"])[0]
    assert "no progress for ownerUID" in complaints(foreign["disk_id"])[0]
    # Rate-limited: several failed rounds, one line each (per minute).
    assert len(complaints(bad["disk_id"])) == 1
    for d in (bad, foreign):
        row = await rows.disk(d["disk_id"])
        assert row is not None
        assert row["observed_at"] is None
        assert row["state"] == "running"
    assert await svc.healthy()


async def test_api_answers_precisely(svc: ServiceProcess) -> None:
    unknown = await get(svc, "/disks/no-such-disk")
    assert unknown.status_code == 404
    assert "no-such-disk" in unknown.json()["detail"]
    assert (await get(svc, "/vms/no-such-vm")).status_code == 404
    assert (await get(svc, "/plans/no-such-plan")).status_code == 404
    bad = await get(svc, "/disks/bad%20id")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "disk_id"]
    limit = await get(svc, "/disks/x", params={"historyLimit": "-1"})
    assert limit.status_code == 422
    assert limit.json()["detail"][0]["loc"] == [
        "query",
        "historyLimit",
    ]
    assert (await get(svc, "/events", params={"plan": "a b"})).status_code == 422
    anonymous = await svc.client.get("/api/v1/progress/disks/x")
    assert anonymous.status_code == 401


async def test_sse_stream_carries_disk_and_vm_progress(
    svc: ServiceProcess, core: client.CoreV1Api, publisher: Bus
) -> None:
    d, owner = ids("sse"), str(uuid.uuid4())
    name = f"pop-{d['disk_id']}"
    ip = await metrics_pod(core, name, owner)
    kinds: dict[str, dict[str, Any]] = {}
    async with svc.client.stream(
        "GET",
        "/api/v1/progress/events",
        params={"vm": d["vm_id"]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        await announce(publisher, d, name, ip, owner, 1 << 30)
        event = ""
        async with asyncio.timeout(30):  # a hang guard
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    kinds[event] = json.loads(line.removeprefix("data: "))
                    # The first sample may be taken before the pod copied anything.
                    if {"disk", "vm"} <= set(kinds) and kinds["disk"]["bytesDone"] > 0:
                        break
    assert kinds["disk"]["diskId"] == d["disk_id"]
    assert kinds["disk"]["bytesDone"] > 0
    assert kinds["vm"]["vmId"] == d["vm_id"]
    assert kinds["vm"]["disksTotal"] == 1
    # The orchestrator says the pod is done: the disk stops being scraped, at 100 %.
    await announce_finished(publisher, d, name, owner)

    async def done() -> bool:
        body = (await get(svc, f"/disks/{d['disk_id']}")).json()
        return bool(body["state"] == "succeeded" and body["percent"] == 100.0)

    await eventually(done, within=15, what="the disk finished by the event")
    vm = (await get(svc, f"/vms/{d['vm_id']}")).json()
    assert vm["state"] == "succeeded"
    assert vm["etaSeconds"] == 0.0


async def test_pods_are_found_again_after_a_restart(
    svc: ServiceProcess, replicas: Replicas, core: client.CoreV1Api, rows: Rows
) -> None:
    """Created while the service was down and never announced: the pod watch finds it."""
    assert await svc.terminate() == 0
    d, owner = ids("rediscover"), str(uuid.uuid4())
    name = f"pop-{d['disk_id']}"
    await metrics_pod(core, name, owner, metadata=hoist_metadata(d, owner, 1 << 30))
    assert await rows.disk(d["disk_id"]) is None
    again = await replicas.start()
    row = await sampled_after(rows, d["disk_id"], now())
    assert row["source"] == "watch"
    assert row["bytes_done"] > 0
    assert (await get(again, f"/disks/{d['disk_id']}")).status_code == 200
