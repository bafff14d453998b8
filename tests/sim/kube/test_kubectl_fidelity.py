"""kubectl 1.35 against the simulated cluster where the simulator once answered unlike a real
API server: protobuf bodies, field ownership, printer columns, explain, VM status, watch."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path

import httpx
import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.protobuf import MAGIC, MEDIA_TYPE
from tests.sim.kube.test_kubectl import KUBECTL, kubectl


@pytest.fixture
def cluster_config(tmp_path: Path) -> ClusterConfig:
    return ClusterConfig(storage_root=tmp_path / "volumes", images={"busybox": ["/bin/sh"]})


async def _claim(config: Path, tmp_path: Path, name: str) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(
        f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n"
        "  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n"
    )
    await kubectl(config, "apply", "-f", str(manifest))


def _json(out: str) -> dict[str, object]:
    return dict(json.loads(out))


async def test_kubectl_create_sends_protobuf(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    creates = [
        ("namespace", "team"),
        ("configmap", "settings", "-n", "team", "--from-literal=level=info", "--from-literal=e="),
        ("secret", "generic", "engine", "--from-literal=password=s3cr3t"),
        ("serviceaccount", "migrator"),
        ("deployment", "web", "--image=busybox", "--replicas=0", "--port=8080"),
        ("service", "clusterip", "web", "--tcp=80:8080"),
        ("role", "reader", "--verb=get,list", "--resource=pods"),
        ("rolebinding", "reader", "--role=reader", "--serviceaccount=default:migrator"),
        ("clusterrole", "viewer", "--verb=get", "--resource=nodes"),
        ("poddisruptionbudget", "web", "--selector=app=web", "--min-available=50%"),
        ("ingress", "web", "--class=nginx", "--rule=web.example/api*=web:80,tls=web-cert"),
    ]
    for args in creates:
        _, out = await kubectl(config, "create", *args)
        assert "created" in out
    _, out = await kubectl(config, "create", "namespace", "dry", "--dry-run=server")
    code, _ = await kubectl(config, "get", "namespace", "dry", check=False)
    assert code != 0

    _, out = await kubectl(config, "get", "configmap", "settings", "-n", "team", "-o", "json")
    assert _json(out)["data"] == {"level": "info", "e": ""}
    _, out = await kubectl(config, "get", "secret", "engine", "-o", "json")
    secret = _json(out)
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"password": base64.b64encode(b"s3cr3t").decode()}
    _, out = await kubectl(config, "get", "deployment", "web", "-o", "json")
    deployment = _json(out)
    spec = deployment["spec"]
    assert isinstance(spec, dict)
    assert spec["replicas"] == 0  # a pointer field: its zero was meant
    container = spec["template"]["spec"]["containers"][0]
    assert container == {
        "name": "busybox",
        "image": "busybox",
        "ports": [{"containerPort": 8080}],
        "resources": {},
    }
    assert "creationTimestamp" not in spec["template"]["metadata"]  # Go's zero time is null
    _, out = await kubectl(config, "get", "service", "web", "-o", "jsonpath={.spec.ports}")
    assert json.loads(out) == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    _, out = await kubectl(config, "get", "rolebinding", "reader", "-o", "json")
    binding = _json(out)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "reader",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "migrator", "namespace": "default"}
    ]
    _, out = await kubectl(config, "get", "ingress", "web", "-o", "jsonpath={.spec}")
    assert json.loads(out) == {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "web.example",
                "http": {
                    "paths": [
                        {
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            "path": "/api",
                            "pathType": "Prefix",
                        }
                    ]
                },
            }
        ],
        "tls": [{"hosts": ["web.example"], "secretName": "web-cert"}],
    }
    _, out = await kubectl(config, "get", "pdb", "web", "-o", "jsonpath={.spec.minAvailable}")
    assert out == "50%"
    _, out = await kubectl(
        config, "get", "cm", "settings", "-n", "team", "-o", "json", "--show-managed-fields"
    )
    [entry] = _json(out)["metadata"]["managedFields"]  # type: ignore[index]
    assert entry["manager"] == "kubectl-create"
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:e": {}, "f:level": {}}}


async def test_protobuf_refusals(cluster: Cluster) -> None:
    assert cluster.server is not None
    assert cluster.server.cert is not None
    trust = ssl.create_default_context(cafile=str(cluster.server.cert.ca_file))
    headers = {"Authorization": f"Bearer {cluster.config.token}", "Content-Type": MEDIA_TYPE}
    async with httpx.AsyncClient(verify=trust, headers=headers) as http:
        url = f"{cluster.url}/api/v1/namespaces/default/configmaps"
        reply = await http.post(url, content=b'{"metadata": {"name": "x"}}')
        assert reply.status_code == 400
        assert "expected prefix [107 56 115 0]" in reply.json()["message"]
        # typeMeta {apiVersion v1, kind ConfigMap}, raw = ConfigMap {metadata {name x},
        # field 9 (unknown to the simulator) carrying a value}
        raw = b"\x0a\x03\x0a\x01x" + b"\x4a\x01z"
        meta = b"\x0a\x02v1\x12\x09ConfigMap"
        body = MAGIC + b"\x0a" + bytes([len(meta)]) + meta + b"\x12" + bytes([len(raw)]) + raw
        reply = await http.post(url, content=body)
        assert reply.status_code == 400
        assert "field 9 of ConfigMap" in reply.json()["message"]
        crs = f"{cluster.url}/apis/cdi.kubevirt.io/v1beta1/storageprofiles"
        reply = await http.post(crs, content=body)
        assert reply.status_code == 415
        assert reply.json()["reason"] == "UnsupportedMediaType"


async def test_server_side_apply_owns_fields(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    mine, theirs = tmp_path / "mine.yaml", tmp_path / "theirs.yaml"
    mine.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, labels: {app: hoist}}\n"
        "data: {level: info, mode: fast}\n"
    )
    theirs.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {level: debug}\n"
    )
    _, out = await kubectl(config, "apply", "--server-side", "-f", str(mine))
    assert "serverside-applied" in out
    code, out = await kubectl(
        config, "apply", "--server-side", "--field-manager=ops", "-f", str(theirs), check=False
    )
    assert code != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.level' in out
    assert "--force-conflicts" in out
    # the same value is shared, not a conflict
    theirs.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {mode: fast}\n")
    await kubectl(config, "apply", "--server-side", "--field-manager=ops", "-f", str(theirs))
    theirs.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {level: debug}\n"
    )
    await kubectl(
        config,
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        str(theirs),
    )
    _, out = await kubectl(config, "get", "cm", "s", "-o", "json", "--show-managed-fields")
    obj = _json(out)
    assert obj["data"] == {"level": "debug", "mode": "fast"}
    owned = {e["manager"]: e["fieldsV1"] for e in obj["metadata"]["managedFields"]}  # type: ignore[index]
    assert owned["ops"] == {"f:data": {".": {}, "f:level": {}}}
    assert owned["kubectl"]["f:data"] == {".": {}, "f:mode": {}}
    # mine no longer applies the label: it goes, as nobody else owns it
    mine.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {mode: fast}\n")
    await kubectl(config, "apply", "--server-side", "-f", str(mine))
    _, out = await kubectl(config, "get", "cm", "s", "-o", "json")
    assert "labels" not in _json(out)["metadata"]  # type: ignore[operator]
    # an update takes the fields it changes without a conflict
    _, out = await kubectl(
        config, "patch", "cm", "s", "--type=merge", "-p", '{"data":{"mode":"x"}}'
    )
    code, out = await kubectl(config, "apply", "--server-side", "-f", str(mine), check=False)
    assert 'conflict with "kubectl-patch"' in out


async def test_printer_columns_and_explain(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    _, out = await kubectl(config, "get", "nodes")
    assert out.split("\n")[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "Ready" in out
    assert "v1.30.0" in out
    _, out = await kubectl(config, "get", "nodes", "-o", "wide")
    for header in ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"):
        assert header in out
    await _claim(config, tmp_path, "disk")
    await kubectl(config, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/disk")
    _, out = await kubectl(config, "get", "pvc", "-o", "wide")
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES"]
    assert header.split()[-1] == "VOLUMEMODE"
    assert row.split()[3:5] == ["64Mi", "RWO"]
    await kubectl(config, "run", "once", "--image=busybox", "--restart=Never", "--", "-c", "true")
    await kubectl(config, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/once")
    _, out = await kubectl(config, "get", "pods", "-o", "wide")
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert header.split()[-2:] == ["READINESS", "GATES"]
    assert row.split()[:4] == ["once", "0/1", "Completed", "0"]
    _, out = await kubectl(config, "get", "storageclasses")
    assert out.splitlines()[0].split()[:3] == ["NAME", "PROVISIONER", "RECLAIMPOLICY"]
    assert "standard (default)" in out
    _, out = await kubectl(config, "get", "events", "--field-selector", "reason=Provisioning")
    header, row = out.splitlines()[:2]
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "persistentvolumeclaim/disk" in row
    _, out = await kubectl(config, "get", "pv")
    assert "Delete" in out
    assert "default/disk" in out
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    await kubectl(config, "apply", "-f", str(crd))
    await kubectl(config, "wait", "--for=condition=Established", "crd/widgets.example.io")
    widget = tmp_path / "widget.yaml"
    widget.write_text(
        "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w}\n"
        "spec: {size: 3, color: red}\n"
    )
    await kubectl(config, "apply", "-f", str(widget))
    _, out = await kubectl(config, "get", "widgets")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "AGE"]
    _, out = await kubectl(config, "get", "widgets", "-o", "wide")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "AGE", "COLOR"]
    assert out.splitlines()[1].split()[1] == "3"

    _, out = await kubectl(config, "explain", "pods.spec.containers.image")
    assert "FIELD: image <string>" in out
    assert "Container image name." in out
    _, out = await kubectl(config, "explain", "pvc.spec.resources", "--recursive")
    assert "requests" in out
    _, out = await kubectl(config, "explain", "vm.spec.runStrategy")
    assert "GROUP:      kubevirt.io" in out
    _, out = await kubectl(config, "explain", "widgets.spec.size")
    assert "How many widgets." in out


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, description: How many widgets.}
              color: {type: string}
"""

VMS = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: %(name)s}
spec:
  runStrategy: %(strategy)s
  template:
    spec:
      domain:
        devices: {disks: [{name: root, disk: {bus: virtio}}]}
        resources: {requests: {memory: 64Mi}}
      volumes:
      - {name: root, persistentVolumeClaim: {claimName: %(claim)s}}
"""


async def test_virtual_machine_status_follows_its_volumes(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "vms.yaml"
    manifest.write_text(
        "\n---\n".join(
            VMS % {"name": name, "strategy": strategy, "claim": claim}
            for name, strategy, claim in (
                ("web", "Always", "web-root"),
                ("db", "Halted", "db-root"),
            )
        )
    )
    await kubectl(config, "apply", "-f", str(manifest))
    await kubectl(
        config, "wait", "--for=jsonpath={.status.printableStatus}=ErrorPvcNotFound", "vm/web"
    )
    await kubectl(config, "wait", "--for=jsonpath={.status.printableStatus}=Stopped", "vm/db")
    _, out = await kubectl(config, "get", "vm", "db", "-o", "jsonpath={.status.conditions[0]}")
    assert json.loads(out)["reason"] == "VMINotExists"
    await _claim(config, tmp_path, "web-root")
    await kubectl(config, "wait", "--for=condition=Ready", "vm/web")
    _, out = await kubectl(config, "get", "vm")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAME", "AGE", "STATUS", "READY"]
    assert {line[0]: line[2:] for line in lines[1:]} == {
        "db": ["Stopped", "False"],
        "web": ["Running", "True"],
    }


async def test_watch_and_describe(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.kubeconfig(tmp_path / "kubeconfig")
    watch = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(config),
        "get",
        "configmaps",
        "--watch",
        "--output-watch-events",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert watch.stdout is not None
        # the header comes with the first event (the list, or the watch after it)
        await kubectl(config, "create", "configmap", "watched", "--from-literal=a=b")
        header = await asyncio.wait_for(watch.stdout.readline(), 20)
        assert header.split()[:2] == [b"EVENT", b"NAME"]
        seen = await asyncio.wait_for(watch.stdout.readline(), 20)
        assert seen.split()[:2] == [b"ADDED", b"watched"]
        await kubectl(config, "delete", "configmap", "watched")
        while not seen.startswith(b"DELETED"):
            seen = await asyncio.wait_for(watch.stdout.readline(), 20)
    finally:
        watch.terminate()
        await watch.wait()
    _, out = await kubectl(config, "describe", "node", "node-1")
    assert "Kernel Version:" in out
    assert "Kubelet Version:" in out
