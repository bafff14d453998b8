"""The rendered chart applied with the real kubectl to the cluster simulator.

``helm template --include-crds`` output goes through ``kubectl apply`` exactly as a user
without Tiller-era habits would pipe it; the simulator validates every object (upstream
schemas, strict) and refuses what a real API server refuses. It stores Deployments,
StatefulSets, PodDisruptionBudgets, Ingresses and NetworkPolicies without running
controllers for them, so this proves the objects are accepted, not that pods start.

Two things are prepared first, as on a real cluster: the target namespaces a rendering
binds the orchestrator in (``rbac.targetNamespaces`` must exist), and, for the rendering
with a ServiceMonitor, a ServiceMonitor CRD (the Prometheus Operator's kind; a minimal
stand-in here whose spec keeps unknown fields, since the simulator does not ship it). (Helm
itself cannot install into the simulator: its release storage speaks protobuf, which the
simulator does not.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.chart import rendering as r

SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
            "listKind": "ServiceMonitorList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    # Nothing here runs a pod: the kubelet and scheduler stay off.
    config = ClusterConfig(
        storage_root=tmp_path / "volumes", disabled=frozenset({"kubelet", "scheduler"})
    )
    async with Cluster(config) as sim:
        yield sim


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(r.KUBECTL),
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.mark.parametrize("rendering", list(r.RENDERINGS))
async def test_kubectl_apply_accepts_the_chart(
    rendering: str, cluster: Cluster, tmp_path: Path
) -> None:
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "hoist.yaml"
    manifest.write_text(r.manifest(rendering))
    docs = r.objects(rendering)

    prepare = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in sorted({d["metadata"].get("namespace", r.NAMESPACE) for d in docs})
        if ns != r.NAMESPACE  # exists in the simulator from the start
    ]
    if r.of_kind(docs, "ServiceMonitor"):
        prepare.append(SERVICE_MONITOR_CRD)
    if prepare:
        (tmp_path / "prepare.yaml").write_text(yaml.safe_dump_all(prepare))
        code, out = await kubectl(kubeconfig, "apply", "-f", str(tmp_path / "prepare.yaml"))
        assert code == 0, out

    code, out = await kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert code == 0, out
    created = [line for line in out.splitlines() if line.endswith(" created")]
    assert len(created) == len(docs), out

    # Applying again (an upgrade with nothing changed) is accepted and changes nothing
    # the simulator would refuse.
    code, out = await kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert code == 0, out
    assert not any(line.endswith(" created") for line in out.splitlines()), out

    code, out = await kubectl(
        kubeconfig, "get", "deployments,statefulsets", "-n", r.NAMESPACE, "-o", "json"
    )
    assert code == 0, out
    stored = {i["metadata"]["name"] for i in json.loads(out)["items"]}
    expected = {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    assert stored == expected
