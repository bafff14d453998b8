"""The Job controller: what a client of a real cluster reads from a Job (conditions,
counts, its pods) when its pod succeeds, fails past ``backoffLimit``, or outlives
``activeDeadlineSeconds``; and what the API server refuses or fills in for a Job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.errors import ApiError
from sim.kube.store import Obj
from tests.conftest import eventually

IMAGES = {"busybox": ["/bin/sh", "-c"]}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    sim = Cluster(ClusterConfig(storage_root=tmp_path / "storage", images=IMAGES))
    await sim.start(serve_api=False)
    try:
        yield sim
    finally:
        await sim.stop()


def job(name: str, script: str, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"app": "t"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox", "args": [script]}],
                }
            },
            **spec,
        },
    }


def read(cluster: Cluster, name: str) -> Obj:
    found = cluster.store.find(cluster.kind("jobs", "batch"), "default", name)
    assert found is not None
    return found.obj


def condition(obj: Obj) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["status"] == "True" and c["type"] in ("Complete", "Failed"):
            return dict(c)
    return None


def pods(cluster: Cluster, name: str) -> list[Obj]:
    return [
        e.obj
        for e in cluster.store.scan(cluster.kind("pods"), "default")
        if (e.obj["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == name
    ]


async def test_defaults_and_refusals(cluster: Cluster) -> None:
    jobs = cluster.kind("jobs", "batch")
    created = cluster.store.create(jobs, job("ok", "true"), "default")
    spec = created["spec"]
    assert spec["backoffLimit"] == 6
    assert spec["completions"] == 1
    uid = created["metadata"]["uid"]
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"]["job-name"] == "ok"
    bad = job("always", "true")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiError) as refused:
        cluster.store.create(jobs, bad, "default")
    assert refused.value.code == 422
    assert "restartPolicy" in str(refused.value.details)


async def test_complete(cluster: Cluster) -> None:
    cluster.store.create(cluster.kind("jobs", "batch"), job("ok", "echo hello"), "default")
    await eventually(lambda: condition(read(cluster, "ok")) is not None, within=20)
    assert (condition(read(cluster, "ok")) or {})["type"] == "Complete"
    status = read(cluster, "ok")["status"]
    assert status["succeeded"] == 1
    assert status["active"] == 0
    assert status["completionTime"]
    (pod,) = pods(cluster, "ok")
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True


async def test_backoff_limit(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sim.kube.controllers.jobs.BACKOFF_SECONDS", 0.2)
    cluster.store.create(
        cluster.kind("jobs", "batch"), job("bad", "exit 3", backoffLimit=1), "default"
    )
    await eventually(lambda: condition(read(cluster, "bad")) is not None, within=30)
    failed = condition(read(cluster, "bad")) or {}
    assert failed["type"] == "Failed"
    assert failed["reason"] == "BackoffLimitExceeded"
    assert read(cluster, "bad")["status"]["failed"] == 2
    assert len(pods(cluster, "bad")) == 2  # the first try and one retry


async def test_deadline(cluster: Cluster) -> None:
    cluster.store.create(
        cluster.kind("jobs", "batch"),
        job("slow", "sleep 60", activeDeadlineSeconds=1, backoffLimit=3),
        "default",
    )
    await eventually(lambda: condition(read(cluster, "slow")) is not None, within=30)
    failed = condition(read(cluster, "slow")) or {}
    assert failed["reason"] == "DeadlineExceeded"

    def stopped() -> bool:
        return all(
            p["metadata"].get("deletionTimestamp")
            or (p.get("status") or {}).get("phase") in ("Failed", "Succeeded")
            for p in pods(cluster, "slow")
        ) or not pods(cluster, "slow")

    await eventually(stopped, within=30)
