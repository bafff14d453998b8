"""The inventory under exactly the chart's RBAC: its ServiceAccount's token, the chart's
rendered ClusterRole (cluster-wide reads) and Role (provider Secrets in Hoist's namespace).

It loads the local cluster as the admin does and keeps a provider's Secret; without its
storageclasses rule, its probe says which list the API server forbade and to whom."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from services.inventory.secrets import SecretStore
from services.inventory.sources.contract import ConnectionProblem, Reason
from shared.kube import local_client
from shared.settings import KubeSettings
from sim.kube.cluster import Cluster
from tests.chart import rendering as r
from tests.identity import chartrbac
from tests.inventory.sources.kubevirt.conftest import SourceFactory
from tests.inventory.sources.kubevirt.test_source import KINDS, expect

ACCOUNT = f"{r.RELEASE}-inventory"
USER = f"system:serviceaccount:{r.NAMESPACE}:{ACCOUNT}"


async def test_the_inventory_works_under_the_charts_rules_and_needs_each(
    cluster: Cluster, make_source: SourceFactory, tmp_path: Path
) -> None:
    rules = chartrbac.chart_rbac()
    chartrbac.apply(cluster, rules)
    kubeconfig = chartrbac.kubeconfig_for(cluster, tmp_path / "kc", r.NAMESPACE, ACCOUNT)
    settings = KubeSettings(kubeconfig=kubeconfig, namespace=r.NAMESPACE)

    await make_source(kube=settings).probe()
    loaded = await make_source(kube=settings).load()
    admin = await make_source().load()
    assert loaded.complete == admin.complete == KINDS
    assert {i.key: i.digest() for i in loaded.items} == {i.key: i.digest() for i in admin.items}

    async with local_client(settings) as api:
        store = SecretStore(api, r.NAMESPACE)
        provider = str(uuid.uuid4())
        await store.put(provider, {"token": "t0k3n-for-a-target"})
        assert await store.get(provider) == {"token": "t0k3n-for-a-target"}
        assert provider in await store.list_ids()
        await store.delete(provider)
        # Its Role is in Hoist's namespace only.
        with pytest.raises(client.ApiException) as outside:
            await client.CoreV1Api(api).list_namespaced_secret("default")
        assert outside.value.status == 403

    with chartrbac.rule_taken_away(
        cluster, "ClusterRole", f"{r.NAMESPACE}-{ACCOUNT}", "storageclasses"
    ):
        denied: ConnectionProblem = await expect(
            make_source(kube=settings), Reason.PERMISSION_DENIED
        )
        assert (
            f'storageclasses.storage.k8s.io is forbidden: User "{USER}" cannot list resource '
            '"storageclasses" in API group "storage.k8s.io" at the cluster scope'
        ) in denied.message
