"""The real kubectl (1.35, from its PyPI wheel) against the simulated cluster."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from shared.quantity import canonical
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig

KUBECTL = Path(sys.prefix) / "bin" / "kubectl"

MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: hoist}
data:
  level: info
---
apiVersion: v1
kind: Secret
metadata:
  name: engine
stringData:
  user: admin@internal
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: disk
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [/bin/sh, -c, "echo hello from $POD_NAME; echo second line"]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
"""


@pytest.fixture
def cluster_config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(storage_root=tmp_path / "volumes", images={"busybox": ["/bin/sh"]})


async def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    if check:
        assert process.returncode == 0, f"kubectl {' '.join(args)}: {text}"
    return process.returncode or 0, text


async def test_apply_get_describe_logs_delete(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFESTS)

    _, out = await kubectl(config, "apply", "-f", str(manifest))
    assert "configmap/settings created" in out
    assert "pod/hello created" in out
    _, out = await kubectl(config, "apply", "-f", str(manifest))
    assert "configmap/settings unchanged" in out

    _, out = await kubectl(config, "get", "configmap", "-l", "app=hoist", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["settings"]

    _, out = await kubectl(
        config, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/disk", "--timeout=20s"
    )
    _, out = await kubectl(config, "get", "pvc", "disk")
    assert "Bound" in out
    assert "standard" in out

    _, out = await kubectl(
        config, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello", "--timeout=20s"
    )
    _, out = await kubectl(config, "logs", "hello")
    assert out == "hello from hello\nsecond line\n"
    _, out = await kubectl(config, "describe", "pod", "hello")
    assert "Status:" in out
    assert "Succeeded" in out
    assert "Scheduled" in out

    _, out = await kubectl(config, "delete", "-f", str(manifest), "--wait=true")
    assert 'pod "hello" deleted' in out
    code, out = await kubectl(config, "get", "pod", "hello", check=False)
    assert code != 0
    assert "NotFound" in out


async def test_kubectl_sees_refusals(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n")
    code, out = await kubectl(config, "apply", "-f", str(bad), check=False)
    assert code != 0
    assert "is invalid" in out
    assert "metadata.name" in out
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nsurprise: 1\n")
    code, out = await kubectl(config, "apply", "-f", str(unknown), check=False)
    assert code != 0
    assert "surprise" in out
    code, out = await kubectl(config, "get", "widgets", check=False)
    assert code != 0
    assert "doesn't have a resource type" in out


async def test_python_m_sim_kube_writes_a_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.kube",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        started = json.loads(line)
        assert started["kubeconfig"] == str(kubeconfig)
        _, out = await kubectl(kubeconfig, "get", "nodes")
        assert "node-1" in out
        assert "node-2" in out
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_server_dry_run_keeps_nothing(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\n")
    await kubectl(config, "apply", "-f", str(manifest))
    before = cluster.store.resource_version
    _, out = await kubectl(config, "delete", "configmap", "kept", "--dry-run=server")
    assert "(server dry run)" in out
    _, out = await kubectl(config, "delete", "configmap", "--all", "--dry-run=server")
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n")
    _, out = await kubectl(config, "apply", "-f", str(other), "--dry-run=server")
    _, out = await kubectl(config, "label", "configmap", "kept", "a=b", "--dry-run=server")
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n")
    code, out = await kubectl(config, "apply", "-f", str(other), "--dry-run=server", check=False)
    assert code != 0
    assert "is invalid" in out
    assert cluster.store.resource_version == before
    _, out = await kubectl(config, "get", "configmap", "-o", "json")
    items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
    assert "kept" in items
    assert "other" not in items
    assert "labels" not in items["kept"]["metadata"]


async def test_unknown_dry_run_value_is_invalid(cluster: Cluster) -> None:
    assert cluster.server is not None
    assert cluster.server.cert is not None
    trust = ssl.create_default_context(cafile=str(cluster.server.cert.ca_file))
    auth = {"Authorization": f"Bearer {cluster.config.token}"}
    url = f"{cluster.url}/api/v1/namespaces/default/configmaps"
    async with httpx.AsyncClient(verify=trust, headers=auth) as http:
        reply = await http.post(f"{url}?dryRun=Some", json={"metadata": {"name": "x"}})
        assert reply.status_code == 422
        assert 'Unsupported value: []string{"Some"}' in reply.json()["message"]
        await http.post(url, json={"metadata": {"name": "y"}})
        reply = await http.request("DELETE", f"{url}/y", json={"dryRun": ["Nope"]})
        assert reply.status_code == 422
        assert (await http.get(f"{url}/y")).status_code == 200


async def test_provisioned_capacity_is_canonical(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "pvc.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: disk}\n"
        "spec:\n  accessModes: [ReadWriteOnce]\n"
        "  resources: {requests: {storage: 131072Ki}}\n"
    )
    await kubectl(config, "apply", "-f", str(manifest))
    await kubectl(
        config, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/disk", "--timeout=20s"
    )
    _, out = await kubectl(config, "get", "pvc", "disk")
    assert "128Mi" in out.splitlines()[1].split()
    _, out = await kubectl(config, "get", "pvc", "disk", "-o", "json")
    assert json.loads(out)["status"]["capacity"] == {"storage": "128Mi"}
    _, out = await kubectl(config, "get", "pv", "-o", "json")
    assert json.loads(out)["items"][0]["spec"]["capacity"] == {"storage": "128Mi"}


@pytest.mark.parametrize(
    ("written", "canonical_form"),
    [
        ("134217728", "134217728"),
        ("0.125Gi", "128Mi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        ("1.5G", "1500M"),
        ("0.5", "500m"),
        ("1.5Ki", "1536"),
    ],
)
def test_canonical_quantities(written: str, canonical_form: str) -> None:
    assert canonical(written) == canonical_form
