"""The simulated API server through the real kubernetes_asyncio client.

Each test states one behaviour of a real kube-apiserver that Hoist (or a user's tooling)
depends on, and checks that the simulator has it, including what it refuses.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig

NS = "default"
#: The API server alone: no workload controllers acting on the objects under test.
API_ONLY = frozenset({"provisioner", "binder", "scheduler", "kubelet", "storageprofiles"})


@pytest.fixture
def cluster_config(tmp_path: Any) -> ClusterConfig:
    return ClusterConfig(storage_root=tmp_path, bookmark_seconds=0.2, disabled=API_ONLY)


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "example/app:1"}]},
    }


def claim(name: str, size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            **spec,
        },
    }


def body(error: ApiException) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(error.body)
    return result


async def test_create_get_replace_delete(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created, code, _ = await core.create_namespaced_config_map_with_http_info(
        NS, {"metadata": {"name": "settings"}, "data": {"a": "1"}}
    )
    assert code == 201
    assert created.metadata.uid
    assert created.metadata.creation_timestamp
    first_rv = int(created.metadata.resource_version)

    created.data["a"] = "2"
    replaced = await core.replace_namespaced_config_map("settings", NS, created)
    assert replaced.data == {"a": "2"}
    assert int(replaced.metadata.resource_version) > first_rv
    assert replaced.metadata.uid == created.metadata.uid

    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_config_map("settings", NS, created)  # old resourceVersion
    assert stale.value.status == 409
    assert body(stale.value)["reason"] == "Conflict"

    with pytest.raises(ApiException) as exists:
        await core.create_namespaced_config_map(NS, {"metadata": {"name": "settings"}})
    assert exists.value.status == 409
    assert body(exists.value)["reason"] == "AlreadyExists"

    await core.delete_namespaced_config_map("settings", NS)
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("settings", NS)
    assert missing.value.status == 404
    assert body(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "settings" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"kind": "configmaps", "name": "settings"},
    }


async def test_resource_versions_increase_cluster_wide(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    versions = []
    for n in range(3):
        made = await core.create_namespaced_secret(NS, {"metadata": {"name": f"s{n}"}})
        versions.append(int(made.metadata.resource_version))
        made = await core.create_namespaced_config_map(NS, {"metadata": {"name": f"c{n}"}})
        versions.append(int(made.metadata.resource_version))
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


async def test_invalid_objects_are_refused_with_causes(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cases = [
        (pod("Not_A_Name"), "metadata.name"),
        (
            {
                "metadata": {"name": "x"},
                "spec": {"containers": [{"name": "main", "image": "a", "surprise": True}]},
            },
            "spec.containers[0]",
        ),
        ({"metadata": {"name": "x"}, "spec": {"containers": []}}, "spec.containers"),
        (
            {
                "metadata": {"name": "x"},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "a",
                            "volumeMounts": [{"name": "nope", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "spec.containers[0].volumeMounts[0].name",
        ),
    ]
    for obj, field in cases:
        with pytest.raises(ApiException) as refused:
            await core.create_namespaced_pod(NS, obj)
        status = body(refused.value)
        assert refused.value.status == 422
        assert status["reason"] == "Invalid"
        assert field in [c["field"] for c in status["details"]["causes"]], status

    with pytest.raises(ApiException) as pvc:
        await core.create_namespaced_persistent_volume_claim(
            NS, {"metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
        )
    assert pvc.value.status == 422


async def test_defaults_and_immutable_claim_spec(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = await core.create_namespaced_persistent_volume_claim(
        NS, claim("data", dataSourceRef={"apiGroup": "hoist.io", "kind": "Thing", "name": "t"})
    )
    assert made.spec.volume_mode == "Filesystem"
    assert made.spec.storage_class_name == "standard"  # the default class
    assert made.spec.data_source.kind == "Thing"  # mirrored from dataSourceRef
    with pytest.raises(ApiException) as immutable:
        await core.patch_namespaced_persistent_volume_claim(
            "data", NS, {"spec": {"accessModes": ["ReadWriteMany"]}}
        )
    assert immutable.value.status == 422
    assert "immutable" in body(immutable.value)["message"]


async def test_patch_formats(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a.io/x"]},
            "spec": {
                "containers": [
                    {"name": "main", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "side", "image": "side:1"},
                ]
            },
        },
    )
    # Strategic merge: containers merge by name, env by name, finalizers as a set.
    merged = await core.patch_namespaced_pod(
        "web",
        NS,
        {
            "metadata": {"finalizers": ["a.io/y"]},
            "spec": {"containers": [{"name": "main", "image": "app:2"}]},
        },
    )
    assert [c.image for c in merged.spec.containers] == ["app:2", "side:1"]
    assert merged.spec.containers[0].env[0].name == "A"
    assert merged.metadata.finalizers == ["a.io/x", "a.io/y"]

    # JSON merge patch replaces lists.
    replaced = await core.patch_namespaced_pod(
        "web",
        NS,
        {"metadata": {"finalizers": None, "labels": {"tier": "1"}}},
        _content_type="application/merge-patch+json",
    )
    assert replaced.metadata.finalizers is None
    assert replaced.metadata.labels == {"app": "web", "tier": "1"}

    # JSON patch, with a test operation acting as a precondition.
    patched = await core.patch_namespaced_pod(
        "web",
        NS,
        [
            {"op": "test", "path": "/metadata/labels/tier", "value": "1"},
            {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
        ],
    )
    assert patched.metadata.annotations == {"k": "v"}
    with pytest.raises(ApiException) as failed:
        await core.patch_namespaced_pod(
            "web",
            NS,
            [
                {"op": "test", "path": "/metadata/labels/tier", "value": "2"},
                {"op": "remove", "path": "/metadata/labels"},
            ],
        )
    assert failed.value.status == 422
    assert (await core.read_namespaced_pod("web", NS)).metadata.labels["tier"] == "1"

    # A patch that names a stale resourceVersion is a precondition too.
    with pytest.raises(ApiException) as stale:
        await core.patch_namespaced_pod("web", NS, {"metadata": {"resourceVersion": "1"}})
    assert stale.value.status == 409


async def test_status_subresource(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_persistent_volume_claim(NS, claim("c"))
    # The main resource ignores status; the status subresource changes only status.
    await core.patch_namespaced_persistent_volume_claim(
        "c", NS, {"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Bound"}}
    )
    assert (await core.read_namespaced_persistent_volume_claim("c", NS)).status.phase == "Pending"
    updated = await core.patch_namespaced_persistent_volume_claim_status(
        "c", NS, {"metadata": {"labels": {"y": "2"}}, "status": {"phase": "Lost"}}
    )
    assert updated.status.phase == "Lost"
    assert updated.metadata.labels == {"x": "1"}
    assert updated.metadata.generation == 1


async def test_label_and_field_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, labels in [
        ("a", {"app": "x", "tier": "db"}),
        ("b", {"app": "x"}),
        ("c", {"app": "y", "tier": "web"}),
    ]:
        await core.create_namespaced_pod(NS, pod(name, labels))

    async def names(**kw: Any) -> list[str]:
        return sorted(p.metadata.name for p in (await core.list_namespaced_pod(NS, **kw)).items)

    assert await names(label_selector="app=x") == ["a", "b"]
    assert await names(label_selector="app!=x") == ["c"]
    assert await names(label_selector="tier in (db,web),app notin (y)") == ["a"]
    assert await names(label_selector="tier") == ["a", "c"]
    assert await names(label_selector="!tier") == ["b"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="status.phase=Pending,metadata.name!=a") == ["b", "c"]
    with pytest.raises(ApiException) as unsupported:
        await core.list_namespaced_pod(NS, field_selector="spec.hostname=a")
    assert unsupported.value.status == 400
    with pytest.raises(ApiException) as bad:
        await core.list_namespaced_pod(NS, label_selector="app in (x")
    assert bad.value.status == 400


async def test_list_pages_with_limit_and_continue(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for n in range(7):
        await core.create_namespaced_config_map(NS, {"metadata": {"name": f"cm-{n}"}})
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = await core.list_namespaced_config_map(NS, limit=3, _continue=token)
        pages += 1
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert pages == 3
    assert seen == [f"cm-{n}" for n in range(7)]


async def test_watch_resumes_from_a_resource_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map(NS)
    start = listed.metadata.resource_version
    await core.create_namespaced_config_map(NS, {"metadata": {"name": "w1"}})
    await core.patch_namespaced_config_map("w1", NS, {"data": {"k": "v"}})
    await core.delete_namespaced_config_map("w1", NS)
    events = []
    stream = watch.Watch()
    async for event in stream.stream(
        core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=1
    ):
        events.append((event["type"], event["object"].metadata.name))
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


async def test_watch_sees_selector_transitions_and_bookmarks(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(NS, {"metadata": {"name": "t", "labels": {"a": "1"}}})
    events: list[tuple[str, str]] = []

    async def follow() -> None:
        stream = watch.Watch()
        async for event in stream.stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="a=1",
            allow_watch_bookmarks=True,
            timeout_seconds=2,
        ):
            events.append((event["type"], event["raw_object"]["metadata"].get("name", "")))

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    await core.patch_namespaced_config_map("t", NS, {"metadata": {"labels": {"a": "2"}}})
    await core.patch_namespaced_config_map("t", NS, {"metadata": {"labels": {"a": "1"}}})
    await task
    kinds = [e for e in events if e[0] != "BOOKMARK"]
    assert kinds == [("ADDED", "t"), ("DELETED", "t"), ("ADDED", "t")]
    assert ("BOOKMARK", "") in events


async def test_watch_from_a_version_too_old_is_gone(tmp_path: Any) -> None:
    async with Cluster(ClusterConfig(storage_root=tmp_path, history=5, disabled=API_ONLY)) as sim:
        assert sim.server is not None
        assert sim.server.cert is not None
        trust = ssl.create_default_context(cafile=str(sim.server.cert.ca_file))
        auth = {"Authorization": f"Bearer {sim.config.token}"}
        async with httpx.AsyncClient(verify=trust, headers=auth) as http:
            for n in range(10):
                await http.post(
                    f"{sim.url}/api/v1/namespaces/default/configmaps",
                    json={"metadata": {"name": f"c{n}"}},
                )
            reply = await http.get(
                f"{sim.url}/api/v1/namespaces/default/configmaps",
                params={"watch": "1", "resourceVersion": "2"},
            )
    event = json.loads(reply.text.splitlines()[0])
    assert reply.status_code == 200
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert "too old resource version" in event["object"]["message"]


async def test_finalizers_hold_deletion(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(
        NS, {"metadata": {"name": "held", "finalizers": ["hoist.io/cleanup"]}}
    )
    await core.delete_namespaced_config_map("held", NS)
    held = await core.read_namespaced_config_map("held", NS)
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as more:
        await core.patch_namespaced_config_map(
            "held", NS, {"metadata": {"finalizers": ["hoist.io/cleanup", "other.io/x"]}}
        )
    assert more.value.status == 422
    await core.patch_namespaced_config_map(
        "held", NS, [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    with pytest.raises(ApiException) as gone:
        await core.read_namespaced_config_map("held", NS)
    assert gone.value.status == 404


async def _owned(core: client.CoreV1Api, owner: Any, name: str) -> None:
    await core.create_namespaced_config_map(
        NS,
        {
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": owner.metadata.name,
                        "uid": owner.metadata.uid,
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        },
    )


async def _names(core: client.CoreV1Api) -> set[str]:
    return {c.metadata.name for c in (await core.list_namespaced_config_map(NS)).items}


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


async def test_garbage_collection_background_foreground_orphan(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for policy, owner_name in [("Background", "bg"), ("Foreground", "fg"), ("Orphan", "or")]:
        owner = await core.create_namespaced_config_map(NS, {"metadata": {"name": owner_name}})
        await _owned(core, owner, f"{owner_name}-child")
        await core.delete_namespaced_config_map(owner_name, NS, propagation_policy=policy)

    async def settled() -> bool:
        names = await _names(core)
        return not {"bg", "bg-child", "fg", "fg-child", "or"} & names

    await eventually(settled)
    orphan = await core.read_namespaced_config_map("or-child", NS)
    assert orphan.metadata.owner_references is None


async def test_namespace_deletion_terminates_then_empties(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "plan-1"}})
    await core.create_namespaced_config_map(
        "plan-1", {"metadata": {"name": "a", "finalizers": ["hoist.io/x"]}}
    )
    await core.delete_namespace("plan-1")
    assert (await core.read_namespace("plan-1")).status.phase == "Terminating"
    with pytest.raises(ApiException) as refused:
        await core.create_namespaced_config_map("plan-1", {"metadata": {"name": "b"}})
    assert refused.value.status == 403
    await core.patch_namespaced_config_map("a", "plan-1", {"metadata": {"finalizers": None}})

    async def gone() -> bool:
        try:
            await core.read_namespace("plan-1")
        except ApiException as error:
            return bool(error.status == 404)
        return False

    await eventually(gone)


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.hoist.io"},
    "spec": {
        "group": "hoist.io",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"progress": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


async def test_a_crd_makes_its_kind_servable(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    args = ("hoist.io", "v1beta1", NS, "widgets")
    with pytest.raises(ApiException) as before:
        await custom.list_namespaced_custom_object(*args)
    assert before.value.status == 404
    crd = await ext.create_custom_resource_definition(CRD)
    assert {c.type for c in crd.status.conditions} == {"Established", "NamesAccepted"}

    made = await custom.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": "hoist.io/v1beta1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3},
            "status": {"progress": "ignored on create"},
        },
    )
    assert "status" not in made
    await custom.patch_namespaced_custom_object_status(
        *args, "w", {"status": {"progress": "50"}}, _content_type="application/merge-patch+json"
    )
    with pytest.raises(ApiException) as strategic:
        await custom.patch_namespaced_custom_object(
            *args,
            "w",
            {"spec": {"size": 4}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert strategic.value.status == 415  # custom resources have no patch strategies
    assert (await custom.get_namespaced_custom_object(*args, "w"))["status"] == {"progress": "50"}
    for bad in ({"size": 0}, {}, {"size": 1, "colour": "red"}):
        with pytest.raises(ApiException) as invalid:
            await custom.create_namespaced_custom_object(
                *args,
                {
                    "apiVersion": "hoist.io/v1beta1",
                    "kind": "Widget",
                    "metadata": {"name": "bad"},
                    "spec": bad,
                },
            )
        assert invalid.value.status == 422, bad

    await ext.delete_custom_resource_definition("widgets.hoist.io")
    with pytest.raises(ApiException) as after:
        await custom.list_namespaced_custom_object(*args)
    assert after.value.status == 404


async def test_virtual_machines_follow_kubevirt_schema(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    args = ("kubevirt.io", "v1", NS, "virtualmachines")
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm"},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                    "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "root"}}],
                }
            },
        },
    }
    await custom.create_namespaced_custom_object(*args, vm)
    broken = json.loads(json.dumps(vm))
    broken["metadata"]["name"] = "vm2"
    broken["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = 7
    with pytest.raises(ApiException) as invalid:
        await custom.create_namespaced_custom_object(*args, broken)
    assert invalid.value.status == 422
    both = json.loads(json.dumps(vm))
    both["metadata"]["name"] = "vm3"
    both["spec"]["running"] = False
    with pytest.raises(ApiException) as exclusive:
        await custom.create_namespaced_custom_object(*args, both)
    assert exclusive.value.status == 422


async def test_builtin_crds_for_migrations_are_served(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    await custom.create_cluster_custom_object(
        "populator.storage.k8s.io",
        "v1beta1",
        "volumepopulators",
        {
            "apiVersion": "populator.storage.k8s.io/v1beta1",
            "kind": "VolumePopulator",
            "metadata": {"name": "ovirt"},
            "sourceKind": {"group": "hoist.io", "kind": "Ovirt"},
        },
    )
    await custom.create_namespaced_custom_object(
        "k8s.cni.cncf.io",
        "v1",
        NS,
        "network-attachment-definitions",
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "transfer"},
            "spec": {"config": "{}"},
        },
    )


async def test_authentication_and_authorization(tmp_path: Any) -> None:
    config = ClusterConfig(
        storage_root=tmp_path, tokens={"viewer": ["get", "list", "watch"]}, disabled=API_ONLY
    )
    async with Cluster(config) as sim:
        url = f"{sim.url}/api/v1/namespaces/default/configmaps"
        trust = ssl.create_default_context(cafile=str(sim.server.cert.ca_file))
        async with httpx.AsyncClient(verify=trust) as http:
            assert (await http.get(url)).status_code == 401
            wrong = await http.get(url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert wrong.json()["reason"] == "Unauthorized"
            viewer = {"Authorization": "Bearer viewer"}
            assert (await http.get(url, headers=viewer)).status_code == 200
            denied = await http.post(url, headers=viewer, json={"metadata": {"name": "x"}})
            assert denied.status_code == 403
            assert 'User "viewer" cannot create resource "configmaps"' in denied.json()["message"]


async def test_injected_http_faults(cluster: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cluster.faults.update({"http_error_rate": 1.0, "http_error_code": 429, "retry_after": 3})
    with pytest.raises(ApiException) as throttled:
        await core.list_namespaced_pod(NS)
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "3"
    cluster.faults.update({"http_error_code": 503})
    with pytest.raises(ApiException) as unavailable:
        await core.list_namespaced_pod(NS)
    assert unavailable.value.status == 503
    cluster.faults.update({"http_error_rate": 0.0})
    await core.list_namespaced_pod(NS)


async def test_dropped_watches_end_cleanly(cluster: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ended = asyncio.Event()

    async def follow() -> None:
        stream = watch.Watch()
        async for _ in stream.stream(core.list_namespaced_pod, NS, timeout_seconds=30):
            pass
        ended.set()

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    assert cluster.store.drop_watches() >= 1
    await asyncio.wait_for(ended.wait(), 5)
    await task


async def test_dry_run_checks_but_keeps_nothing(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    before = (await core.list_namespaced_config_map(NS)).metadata.resource_version
    answer = await core.create_namespaced_config_map(
        NS, {"metadata": {"name": "dry"}}, dry_run="All"
    )
    assert answer.metadata.name == "dry"
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("dry", NS)
    assert missing.value.status == 404
    with pytest.raises(ApiException) as invalid:
        await core.create_namespaced_config_map(
            NS, {"metadata": {"name": "Bad_Name"}}, dry_run="All"
        )
    assert invalid.value.status == 422
    after = (await core.list_namespaced_config_map(NS)).metadata.resource_version
    assert after == before


async def test_watch_list_ends_initial_events_with_a_bookmark(cluster: Cluster) -> None:
    """kubectl 1.35 lists through a watch (sendInitialEvents) and waits for this bookmark."""
    assert cluster.server is not None
    assert cluster.server.cert is not None
    trust = ssl.create_default_context(cafile=str(cluster.server.cert.ca_file))
    auth = {"Authorization": f"Bearer {cluster.config.token}"}
    async with httpx.AsyncClient(verify=trust, headers=auth) as http:
        url = f"{cluster.url}/api/v1/namespaces/default/configmaps"
        await http.post(url, json={"metadata": {"name": "one"}})
        reply = await http.get(
            url,
            params={
                "watch": "true",
                "sendInitialEvents": "true",
                "allowWatchBookmarks": "true",
                "resourceVersionMatch": "NotOlderThan",
                "timeoutSeconds": "1",
            },
        )
    events = [json.loads(line) for line in reply.text.splitlines()]
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"]["metadata"]["name"] == "one"
    end = events[1]
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_stopping_removes_the_certificate_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cluster's throwaway CA lives in a temp directory; a stopped cluster leaves none."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    sim = Cluster(ClusterConfig(storage_root=tmp_path / "volumes", disabled=API_ONLY))
    await sim.start()
    try:
        assert sim.server is not None
        assert sim.server.cert is not None
        made = list(temp.glob("hoist-kube-tls-*"))
        assert [sim.server.cert.key_file.parent] == made
        trust = ssl.create_default_context(cafile=str(sim.server.cert.ca_file))
        auth = {"Authorization": f"Bearer {sim.config.token}"}
        async with httpx.AsyncClient(verify=trust, headers=auth) as http:
            assert (await http.get(f"{sim.url}/api/v1/namespaces")).status_code == 200
    finally:
        await sim.stop()
    assert list(temp.glob("hoist-kube-tls-*")) == []
