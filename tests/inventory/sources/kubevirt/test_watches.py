"""Watches after load(): changes arrive through refresh(), a 410 or a broken watch relists,
a CRD that goes away empties its kind and one that appears is picked up."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from services.inventory.items import Batch
from services.inventory.sources.contract import ConnectionProblem, Reason
from shared.settings import KubeSettings
from sim.kube import crds
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.inventory.sources.kubevirt.conftest import SourceFactory, collect, keys

NAD_CRD = "network-attachment-definitions.k8s.cni.cncf.io"
RWX_BLOCK = [{"accessModes": ["ReadWriteMany"], "volumeMode": "Block"}]
LATE = ("networkattachmentdefinition", "default/late")


async def test_changes_arrive_through_refresh(
    api: client.ApiClient, make_source: SourceFactory
) -> None:
    source = make_source()
    await source.load()
    assert (await source.refresh()).empty

    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    await core.create_namespace({"metadata": {"name": "tenant-a"}})
    await client.StorageV1Api(api).create_storage_class(
        {
            "metadata": {"name": "fast"},
            "provisioner": "sim.hoist.io/hostpath",
            "volumeBindingMode": "WaitForFirstConsumer",
            "parameters": {"tier": "gold"},
        }
    )
    config = {"cniVersion": "0.3.1", "name": "vlan10", "type": "bridge", "bridge": "br10"}
    await custom.create_namespaced_custom_object(
        "k8s.cni.cncf.io",
        "v1",
        "tenant-a",
        "network-attachment-definitions",
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "vlan10"},
            "spec": {"config": json.dumps(config)},
        },
    )
    wanted = {
        ("namespace", "tenant-a"),
        ("storageclass", "fast"),
        ("storageprofile", "fast"),  # CDI's controller makes one per class
        ("networkattachmentdefinition", "tenant-a/vlan10"),
    }
    batch = await collect(source, lambda b: wanted <= keys(b))
    items = {item.key: item for item in batch.items}
    fast = items["storageclass", "fast"].data
    assert fast["volumeBindingMode"] == "WaitForFirstConsumer"
    assert fast["parameters"] == {"tier": "gold"}
    assert fast["default"] is False
    nad = items["networkattachmentdefinition", "tenant-a/vlan10"]
    assert nad.parent == "tenant-a"
    assert nad.data["config"]["type"] == "bridge"
    assert nad.data["config"]["name"] == "vlan10"

    # An administrator's claim property sets replace CDI's: a MODIFIED profile.
    await custom.patch_cluster_custom_object(
        "cdi.kubevirt.io",
        "v1beta1",
        "storageprofiles",
        "fast",
        {"spec": {"claimPropertySets": RWX_BLOCK}},
        _content_type="application/merge-patch+json",
    )

    def rwx(b: Batch) -> bool:
        return any(
            i.key == ("storageprofile", "fast") and i.data["claimPropertySets"] == RWX_BLOCK
            for i in b.items
        )

    await collect(source, rwx)

    await custom.delete_namespaced_custom_object(
        "k8s.cni.cncf.io", "v1", "tenant-a", "network-attachment-definitions", "vlan10"
    )
    await client.StorageV1Api(api).delete_storage_class("fast")
    gone = {("networkattachmentdefinition", "tenant-a/vlan10"), ("storageclass", "fast")}
    batch = await collect(source, lambda b: gone <= set(b.deleted))
    assert not gone & keys(batch)


async def test_dropped_watches_resume(
    cluster: Cluster, api: client.ApiClient, make_source: SourceFactory
) -> None:
    source = make_source()
    await source.load()

    async def drop(times: int) -> None:
        dropped = 0
        while dropped < times:  # each of the 7 watches, about twice, as they reconnect
            dropped += cluster.store.drop_watches()
            await asyncio.sleep(0.02)

    await asyncio.wait_for(drop(14), 10)
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": "after-drop"}})
    await collect(source, lambda b: ("namespace", "after-drop") in keys(b))


@pytest.fixture
async def small_history(tmp_path: Path) -> AsyncIterator[tuple[Cluster, KubeSettings]]:
    """A cluster that keeps only a few changes, so a watch that falls behind gets 410."""
    config = ClusterConfig(
        storage_root=tmp_path / "v",
        history=5,
        bookmark_seconds=60,
        disabled=frozenset({"scheduler", "kubelet", "provisioner", "binder"}),
    )
    async with Cluster(config) as sim:
        yield sim, KubeSettings(kubeconfig=sim.kubeconfig(tmp_path / "kubeconfig"))


async def test_gone_relists_the_kind(
    small_history: tuple[Cluster, KubeSettings],
    make_source: SourceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, kube = small_history
    source = make_source(kube=kube)
    await source.load()
    namespaces = sim.kind("namespaces")
    # Without yielding to the event loop: the watch cannot follow, and resumes too late.
    sim.store.drop_watches(namespaces.key)
    for n in range(20):
        sim.store.create(namespaces, {"metadata": {"name": f"burst-{n}"}})
    with caplog.at_level("INFO", "services.inventory.sources.kubevirt"):
        batch = await collect(source, lambda b: "namespace" in b.complete)
    assert {("namespace", f"burst-{n}") for n in range(20)} <= keys(batch)
    assert ("namespace", "default") in keys(batch)  # complete: every namespace
    assert "410 Gone" in caplog.text


async def test_a_crd_going_away_and_coming_back(
    small_history: tuple[Cluster, KubeSettings], make_source: SourceFactory
) -> None:
    sim, kube = small_history
    crd_kind = sim.kind("customresourcedefinitions", "apiextensions.k8s.io")
    crd = copy.deepcopy(next(c for c in crds.BUILTIN_CRDS if c["metadata"]["name"] == NAD_CRD))
    sim.store.delete(crd_kind, None, NAD_CRD)
    source = make_source(kube=kube)
    batch = await source.load()
    assert "networkattachmentdefinition" in batch.complete
    assert not [i for i in batch.items if i.kind == "networkattachmentdefinition"]
    assert (await source.probe())["networkAttachmentDefinitions"] is False

    sim.store.create(crd_kind, crd)
    nads = sim.kind("network-attachment-definitions", "k8s.cni.cncf.io")
    sim.store.create(
        nads,
        {"metadata": {"name": "late", "namespace": "default"}, "spec": {"config": "{}"}},
        "default",
    )
    batch = await collect(source, lambda b: LATE in keys(b))
    assert "networkattachmentdefinition" in batch.complete

    sim.store.delete(crd_kind, None, NAD_CRD)
    batch = await collect(
        source,
        lambda b: "networkattachmentdefinition" in b.complete and LATE not in keys(b),
    )


async def test_a_cluster_going_down_fails_refresh(
    small_history: tuple[Cluster, KubeSettings], make_source: SourceFactory
) -> None:
    sim, kube = small_history
    source = make_source(kube=kube)
    await source.load()
    await sim.stop()

    async def until_refused() -> ConnectionProblem:
        while True:
            try:
                await source.refresh()
            except ConnectionProblem as found:
                return found
            await asyncio.sleep(0.05)

    found = await asyncio.wait_for(until_refused(), 10)
    assert found.reason == Reason.HOST_UNREACHABLE
    assert not found.permanent
