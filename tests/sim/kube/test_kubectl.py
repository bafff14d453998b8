"""The real kubectl (1.35, from its PyPI wheel) against the simulated cluster."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

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
