"""``shared.kube``'s raw calls (``Kube``) and its list-and-watch loop (``ListWatch``), on the
Kubernetes simulator: what each call answers, and that a watch survives what real API
servers do to it (clean ends, 410 Gone as an event and as a status, refusals, kinds that
come and go)."""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared.kube import (
    JSON_PATCH,
    NAMESPACE,
    POD,
    PV,
    PVC,
    SECRET,
    STORAGE_CLASS,
    VIRTUAL_MACHINE,
    Kube,
    ListWatch,
    Obj,
    Resource,
    conflict,
    not_found,
    read_secret_data,
    status_message,
)
from sim.kube import crds
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.conftest import eventually, kube_client

CONFIG_MAP = Resource("", "v1", "configmaps", "ConfigMap")
NAD_CRD = "network-attachment-definitions.k8s.cni.cncf.io"
NAD = Resource(
    "k8s.cni.cncf.io", "v1", "network-attachment-definitions", "NetworkAttachmentDefinition"
)
CONTROLLERS_OFF = frozenset({"scheduler", "kubelet", "provisioner", "binder"})


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    config = ClusterConfig(
        storage_root=tmp_path / "volumes", bookmark_seconds=0.2, disabled=CONTROLLERS_OFF
    )
    async with Cluster(config) as cluster:
        yield cluster


@pytest.fixture
async def kube(sim: Cluster) -> AsyncIterator[Kube]:
    async with kube_client(sim) as api:
        yield Kube(api)


def claim(name: str, **labels: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard",
        },
    }


def config_map(name: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


# --- Resource and Kube ----------------------------------------------------------------------


def test_paths() -> None:
    assert PVC.path() == "/api/v1/persistentvolumeclaims"
    assert PVC.path("ns", "data-1") == "/api/v1/namespaces/ns/persistentvolumeclaims/data-1"
    assert POD.path("ns", "p", "log") == "/api/v1/namespaces/ns/pods/p/log"
    assert PV.path("ignored", "pv-1") == "/api/v1/persistentvolumes/pv-1"
    assert STORAGE_CLASS.path(name="fast") == "/apis/storage.k8s.io/v1/storageclasses/fast"
    assert VIRTUAL_MACHINE.api_version == "kubevirt.io/v1"
    assert SECRET.api_version == "v1"


async def test_calls(kube: Kube) -> None:
    created = await kube.create(PVC, claim("data-1", app="a"), "default")
    assert created["metadata"]["uid"]
    fetched = await kube.get(PVC, "data-1", "default")
    assert fetched is not None
    assert fetched["spec"]["storageClassName"] == "standard"
    assert await kube.get(PVC, "nothing", "default") is None

    with pytest.raises(ApiException) as taken:
        await kube.create(PVC, claim("data-1"), "default")
    assert conflict(taken.value)
    assert not not_found(taken.value)
    assert "already exists" in status_message(taken.value)

    patched = await kube.patch(PVC, "data-1", {"metadata": {"labels": {"b": "2"}}}, "default")
    assert patched["metadata"]["labels"] == {"app": "a", "b": "2"}
    ops = [{"op": "remove", "path": "/metadata/labels/b"}]
    patched = await kube.patch(PVC, "data-1", ops, "default", content_type=JSON_PATCH)
    assert patched["metadata"]["labels"] == {"app": "a"}
    status = {"status": {"phase": "Lost"}}
    patched = await kube.patch(PVC, "data-1", status, "default", subresource="status")
    assert patched["status"]["phase"] == "Lost"

    fetched = await kube.get(PVC, "data-1", "default")
    assert fetched is not None
    fetched["metadata"]["annotations"] = {"note": "replaced"}
    replaced = await kube.replace(PVC, "data-1", fetched, "default")
    assert replaced["metadata"]["annotations"] == {"note": "replaced"}

    assert not await kube.delete(PVC, "data-1", "default", uid="not-its-uid")
    assert await kube.delete(PVC, "data-1", "default", uid=created["metadata"]["uid"])
    assert not await kube.delete(PVC, "data-1", "default")
    with pytest.raises(ApiException) as refused:
        await kube.create(PVC, {"metadata": {"name": "Not_A_Name"}}, "default")
    assert refused.value.status == 422


async def test_list_pages_and_selects(kube: Kube) -> None:
    for n in range(7):
        await kube.create(CONFIG_MAP, config_map(f"cm-{n}"), "default")
    await kube.create(NAMESPACE, {"metadata": {"name": "other"}})
    await kube.create(CONFIG_MAP, config_map("cm-other"), "other")
    listed, version = await kube.list(CONFIG_MAP, "default", page=3)
    assert sorted(c["metadata"]["name"] for c in listed) == [f"cm-{n}" for n in range(7)]
    assert int(version) > 0
    everywhere, _ = await kube.list(CONFIG_MAP, page=2)
    assert {c["metadata"]["name"] for c in everywhere} >= {"cm-0", "cm-other"}
    await kube.patch(CONFIG_MAP, "cm-3", {"metadata": {"labels": {"pick": "me"}}}, "default")
    picked, _ = await kube.list(CONFIG_MAP, "default", selector="pick=me")
    assert [c["metadata"]["name"] for c in picked] == ["cm-3"]


async def test_read_secret_data(kube: Kube) -> None:
    secret = {"metadata": {"name": "creds"}, "stringData": {"user": "admin", "pass": "é!"}}
    await kube.create(SECRET, secret, "hoist")
    assert await read_secret_data(kube.api, "hoist", "creds") == {"user": "admin", "pass": "é!"}
    assert await read_secret_data(kube.api, "hoist", "none") is None


SERVER = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"path={self.path} pod={os.environ['POD_NAME']}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
print("serving", flush=True)
http.server.HTTPServer((os.environ["POD_IP"], int(sys.argv[1])), Handler).serve_forever()
"""


async def test_log_and_proxy(tmp_path: Path) -> None:
    config = ClusterConfig(storage_root=tmp_path / "v", images={"python": [sys.executable]})
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    pod = {
        "metadata": {"name": "web"},
        "spec": {
            "containers": [
                {"name": "server", "image": "python", "args": ["-c", SERVER, "8080"], "env": env}
            ]
        },
    }
    async with Cluster(config) as cluster, kube_client(cluster) as api:
        kube = Kube(api)
        assert await kube.log("default", "web", "server") == ""  # no such pod yet
        await kube.create(POD, pod, "default")

        async def page() -> str:
            try:
                return await kube.proxy("default", "web", 8080, "/metrics", scheme="http")
            except ApiException as exc:  # not running yet, or not listening yet
                if exc.status in (400, 404, 503):
                    return ""
                raise

        answers: list[str] = []

        async def answered() -> bool:
            answers.append(await page())
            return bool(answers[-1])

        await eventually(answered, what="the pod answering through the proxy")
        assert answers[-1] == "path=/metrics pod=web\n"
        log = await kube.log("default", "web", "server")
        assert log.startswith("serving\n")
        assert "GET /metrics" in log
        assert await kube.log("default", "web", "server", limit_bytes=8) == log[-8:]
        assert await kube.log("default", "web", "server", tail_lines=1) == log.splitlines(True)[-1]


# --- ListWatch -------------------------------------------------------------------------------


class View:
    """What a ListWatch handed over: the objects by name, and every call."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.lists: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.problems: list[BaseException | None] = []

    def on_list(self, items: list[Obj]) -> None:
        self.objects = {o["metadata"]["name"]: o for o in items}
        self.lists.append(sorted(self.objects))

    async def on_event(self, kind: str, obj: Obj) -> None:  # async handlers work too
        name = obj["metadata"]["name"]
        self.events.append((kind, name))
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj

    def has(self, *names: str) -> Callable[[], bool]:
        return lambda: set(names) <= set(self.objects)


async def running(watch: ListWatch, version: str | None = None) -> asyncio.Task[None]:
    task = asyncio.create_task(watch.run(version))
    await asyncio.wait_for(watch.synced.wait(), 10)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def list_watch(kube: Kube, view: View, res: Resource = CONFIG_MAP, **options: Any) -> ListWatch:
    """A ListWatch into ``view``, with a short backoff unless ``options`` say otherwise."""
    return ListWatch(
        kube,
        res,
        name=res.plural,
        on_list=view.on_list,
        on_event=view.on_event,
        on_problem=view.problems.append,
        **{"backoff": (0.05, 0.2), **options},
    )


async def test_lists_then_watches_and_resumes_after_clean_ends(sim: Cluster, kube: Kube) -> None:
    await kube.create(CONFIG_MAP, config_map("before", a="1"), "default")
    view = View()
    watch = list_watch(kube, view, namespace="default", item_kind="ConfigMap", watch_seconds=1)
    task = await running(watch)
    assert view.lists == [["before"]]
    assert view.objects["before"]["kind"] == "ConfigMap"  # list items get their kind
    assert (watch.problem, watch.relists, set(view.problems)) == (None, 1, {None})

    await kube.create(CONFIG_MAP, config_map("after"), "default")
    await kube.patch(CONFIG_MAP, "before", {"data": {"a": "2"}}, "default")
    await kube.delete(CONFIG_MAP, "after", "default")
    await kube.create(CONFIG_MAP, config_map("elsewhere"), "hoist")  # another namespace
    await eventually(lambda: ("DELETED", "after") in view.events)
    assert view.events == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]
    assert view.objects["before"]["data"] == {"a": "2"}

    # The server ends each watch after a second, and drops them all now: resumed, not relisted.
    sim.store.drop_watches()
    await asyncio.sleep(2.5)
    await kube.create(CONFIG_MAP, config_map("later"), "default")
    await eventually(view.has("later"))
    assert watch.relists == 1
    assert watch.problem is None
    await stop(task)


async def test_a_watch_from_a_given_version_does_not_list(kube: Kube) -> None:
    _, version = await kube.list(CONFIG_MAP, "default")
    await kube.create(CONFIG_MAP, config_map("new"), "default")
    view = View()
    watch = list_watch(kube, view, namespace="default")
    task = asyncio.create_task(watch.run(version))
    await eventually(view.has("new"))
    assert (watch.relists, view.lists, watch.synced.is_set()) == (0, [], False)
    await stop(task)


async def test_a_selector_picks_what_is_watched(kube: Kube) -> None:
    view = View()
    task = await running(list_watch(kube, view, selector="app=hoist"))
    await kube.create(CONFIG_MAP, config_map("other"), "default")
    mine = config_map("mine")
    mine["metadata"]["labels"] = {"app": "hoist"}
    await kube.create(CONFIG_MAP, mine, "hoist")
    await eventually(view.has("mine"))
    assert "other" not in view.objects
    await stop(task)


async def test_410_as_an_event_relists_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ClusterConfig(
        storage_root=tmp_path / "v", history=5, bookmark_seconds=60, disabled=CONTROLLERS_OFF
    )
    async with Cluster(config) as cluster, kube_client(cluster) as api:
        view = View()
        watch = list_watch(Kube(api), view, NAMESPACE, backoff=(30.0, 30.0))
        task = await running(watch)
        namespaces = cluster.kind("namespaces")
        # Without yielding to the event loop: the watch cannot follow, and resumes too late.
        cluster.store.drop_watches(namespaces.key)
        for n in range(20):
            cluster.store.create(namespaces, {"metadata": {"name": f"burst-{n}"}})
        with caplog.at_level("INFO", "hoist.kube.watch"):
            await eventually(view.has(*(f"burst-{n}" for n in range(20))), within=5)
        assert watch.relists == 2  # at once: the 30 s backoff was not waited
        assert "default" in view.lists[-1]  # a complete list
        assert "410 Gone" in caplog.text
        assert all(p is None for p in view.problems)
        await stop(task)


async def test_410_as_a_status_relists(
    sim: Cluster, kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    view = View()
    watch = list_watch(kube, view, namespace="default")
    task = await running(watch)
    await kube.create(CONFIG_MAP, config_map("seen"), "default")
    await eventually(view.has("seen"))
    # Every request for config maps now answers 410; the watch ends and comes back to that.
    sim.faults.update(
        {"http_error_rate": 1.0, "http_error_code": 410, "http_path_filter": "/configmaps"}
    )
    with caplog.at_level("INFO", "hoist.kube.watch"):
        sim.store.drop_watches(sim.kind("configmaps").key)
        await eventually(lambda: "410 Gone" in caplog.text)
        await eventually(lambda: watch.problem is not None)  # and the relist was refused
    assert isinstance(view.problems[-1], ApiException)
    assert view.problems[-1].status == 410
    sim.faults.update({"http_error_rate": 0.0})
    sim.store.create(sim.kind("configmaps"), config_map("meanwhile"), "default")
    await eventually(view.has("meanwhile"))
    assert watch.relists >= 2
    assert view.problems[-1] is None
    await stop(task)


async def test_a_refused_watch_is_a_problem_until_it_is_not(sim: Cluster, kube: Kube) -> None:
    view = View()
    watch = list_watch(kube, view, namespace="default")
    task = await running(watch)
    sim.faults.update({"http_error_rate": 1.0, "http_error_code": 503})
    sim.store.drop_watches()
    await eventually(lambda: watch.problem is not None)
    assert "503" in (watch.problem or "")
    failed = view.problems[-1]
    assert isinstance(failed, ApiException)
    assert failed.status == 503
    sim.faults.update({"http_error_rate": 0.0})
    await eventually(lambda: watch.problem is None and view.problems[-1] is None)
    await kube.create(CONFIG_MAP, config_map("recovered"), "default")
    await eventually(view.has("recovered"))
    await stop(task)


async def test_an_optional_kind_comes_and_goes(sim: Cluster, kube: Kube) -> None:
    crd_kind = sim.kind("customresourcedefinitions", "apiextensions.k8s.io")
    crd = copy.deepcopy(next(c for c in crds.BUILTIN_CRDS if c["metadata"]["name"] == NAD_CRD))
    sim.store.delete(crd_kind, None, NAD_CRD)
    view = View()
    watch = list_watch(kube, view, NAD, optional=True, poll_seconds=0.1)
    task = await running(watch)
    assert (view.lists, watch.missing, watch.problem) == ([[]], True, None)
    assert set(view.problems) == {None}
    await asyncio.sleep(0.5)  # listed again every poll, and not reported again
    assert view.lists == [[]]
    assert watch.relists > 2

    sim.store.create(crd_kind, crd)
    nads = sim.kind("network-attachment-definitions", "k8s.cni.cncf.io")
    sim.store.create(nads, {"metadata": {"name": "late", "namespace": "default"}}, "default")
    await eventually(view.has("late"))
    assert not watch.missing
    sim.store.create(nads, {"metadata": {"name": "later", "namespace": "default"}}, "default")
    await eventually(view.has("later"))

    sim.store.delete(crd_kind, None, NAD_CRD)
    await eventually(lambda: view.lists[-1] == [] and watch.missing)
    assert all(p is None for p in view.problems)
    await stop(task)


async def test_a_kind_that_must_exist_is_a_problem(kube: Kube) -> None:
    view = View()
    watch = list_watch(kube, view, Resource("example.com", "v1", "widgets", "Widget"))
    task = asyncio.create_task(watch.run())
    await eventually(lambda: len(view.problems) >= 2)  # retried, with backoff
    assert all(isinstance(p, ApiException) and p.status == 404 for p in view.problems)
    assert not watch.synced.is_set()
    assert "404" in (watch.problem or "")
    await stop(task)


async def test_a_handler_that_fails_relists_after_backoff(kube: Kube) -> None:
    view = View()
    calls = 0

    async def flaky(kind: str, obj: Obj) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the handler's own bug")
        await view.on_event(kind, obj)

    watch = ListWatch(
        kube,
        CONFIG_MAP,
        name="configmaps",
        namespace="default",
        on_list=view.on_list,
        on_event=flaky,
        backoff=(0.05, 0.05),
    )
    task = await running(watch)
    await kube.create(CONFIG_MAP, config_map("first"), "default")
    await eventually(view.has("first"))  # from the relist
    assert watch.relists == 2
    await stop(task)


async def test_the_typed_client_sees_the_same_objects(kube: Kube) -> None:
    """Kube and the typed client are two views of one ApiClient (auth, TLS, pool)."""
    await kube.create(CONFIG_MAP, config_map("shared", k="v"), "default")
    typed = await client.CoreV1Api(kube.api).read_namespaced_config_map("shared", "default")
    assert typed.data == {"k": "v"}
