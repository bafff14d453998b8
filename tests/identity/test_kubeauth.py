"""``shared.service.kubeauth`` against the cluster simulator: who a token is, what it may do,
and for how long an answer is reused (``HOIST_AUTH_CACHE_SECONDS``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.service.access import Access
from shared.service.kubeauth import KubeAuth, ReviewUnavailable
from shared.settings import AuthSettings, KubeSettings
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.chart import rendering as r
from tests.identity import chartrbac

API_ONLY = frozenset({"provisioner", "binder", "scheduler", "kubelet", "storageprofiles"})


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(ClusterConfig(storage_root=tmp_path / "v", disabled=API_ONLY)) as cluster:
        chartrbac.apply(cluster, chartrbac.chart_rbac())
        yield cluster


def reviewer(sim: Cluster, path: Path, seconds: float) -> KubeAuth:
    kubeconfig = chartrbac.kubeconfig_for(sim, path, r.NAMESPACE, f"{r.RELEASE}-planner")
    return KubeAuth(
        AuthSettings(kubernetes=True, cache_seconds=seconds),
        KubeSettings(kubeconfig=kubeconfig, namespace=r.NAMESPACE),
    )


async def test_a_decision_is_reused_until_it_expires(sim: Cluster, tmp_path: Path) -> None:
    auth = reviewer(sim, tmp_path / "kc", 1.0)
    token = chartrbac.bind(sim, "dave", f"{r.RELEASE}-operator", namespace=r.NAMESPACE)
    start = Access("plans/start", "create")
    try:
        verdict = await auth.decide(token, start)
        assert verdict.allowed
        assert verdict.user is not None
        assert verdict.user.username == f"system:serviceaccount:{r.NAMESPACE}:dave"
        assert not (await auth.decide(token, Access("providers", "delete"))).allowed

        binding = sim.kind("rolebindings", "rbac.authorization.k8s.io")
        sim.store.delete(binding, r.NAMESPACE, f"dave-{r.RELEASE}-operator")
        assert (await auth.decide(token, start)).allowed  # still the cached answer
        await asyncio.sleep(1.1)
        assert not (await auth.decide(token, start)).allowed  # revoked, once it expired

        refused = await auth.decide("not-a-token", start)
        assert refused.user is None
    finally:
        await auth.close()


async def test_a_cluster_that_cannot_be_asked_decides_nothing(sim: Cluster, tmp_path: Path) -> None:
    auth = reviewer(sim, tmp_path / "kc", 0)
    token = chartrbac.bind(sim, "erin", f"{r.RELEASE}-viewer")
    delegation = chartrbac.named(
        chartrbac.chart_rbac(),
        "ClusterRoleBinding",
        f"{r.NAMESPACE}-{r.RELEASE}-planner-auth-delegator",
    )
    chartrbac.remove(sim, delegation)
    try:
        with pytest.raises(ReviewUnavailable) as caught:
            await auth.decide(token, Access("plans", "list"))
        assert "refused the TokenReview (403 Forbidden)" in str(caught.value)
    finally:
        await auth.close()
