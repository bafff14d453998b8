"""The inventory service as a real process, against the oVirt engine simulator, the cluster
simulator (for Secrets and a KubeVirt target), real NATS and PostgreSQL.

Each test makes its own providers (unique names), so the tests share one service and one
engine without depending on one another's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client

from services.inventory import views
from shared.bus import Bus
from shared.devservices import DevServices
from shared.settings import NatsSettings
from sim.certs import make_server_cert
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.answers import assert_documented
from tests.conftest import eventually
from tests.inventory.conftest import PREFIX, api, secrets_of, unique, wait_phase
from tools.processes import ServiceProcess


def small_engine_inventory() -> Any:
    inv, _ = scenario.from_dict(
        {
            "networks": [{"name": "prod", "vlan": 100}],
            "vms": [
                {
                    "name": "web-1",
                    "memory": "2GiB",
                    "nics": [{"network": "prod", "model": "virtio"}],
                    "disks": [{"name": "web-1-root", "size": "1GiB", "bootable": True}],
                },
                {
                    "name": "db-1",
                    "status": "down",
                    "disks": [{"name": "db-1-data", "size": "2GiB", "format": "cow"}],
                },
                {"name": "app-1", "disks": [{"name": "app-1-root", "size": "1GiB"}]},
            ],
        }
    )
    return inv


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    async with Engine(small_engine_inventory(), [], tmp_path_factory.mktemp("engine")) as e:
        yield e


def ovirt_body(engine: Engine, name: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": "ovirt",
        "url": engine.api_url,
        "credentials": {"user": "admin@internal", "password": "secret"},
        "tls": {"fingerprint": engine.cert.fingerprint},
    }
    body.update(over)
    return body


# --- bad input ------------------------------------------------------------------------------


async def test_bad_definitions_are_refused_precisely(
    inventory: ServiceProcess, engine: Engine, kube: client.ApiClient
) -> None:
    before = await secrets_of(kube)
    cases: list[tuple[dict[str, Any], int, list[str | int]]] = [
        ({**ovirt_body(engine, "x1"), "type": "vsphere"}, 422, ["body", "type"]),
        (ovirt_body(engine, "x2", url="ftp://engine"), 422, ["body", "url"]),
        (
            ovirt_body(engine, "x3", credentials={"user": "admin@internal"}),
            422,
            ["body", "credentials", "password"],
        ),
        (ovirt_body(engine, "x4", tls={"fingerprint": "AB:CD"}), 422, ["body", "tls"]),
        (
            ovirt_body(
                engine,
                "x5",
                tls={"fingerprint": engine.cert.fingerprint, "insecureSkipVerify": True},
            ),
            422,
            ["body", "tls"],
        ),
        (ovirt_body(engine, "Not_A_Name"), 422, ["body", "name"]),
        ({**ovirt_body(engine, "x6"), "colour": "red"}, 422, ["body", "colour"]),
        (
            ovirt_body(engine, "x7", credentials={"user": "a", "password": "b", "url": "x"}),
            422,
            ["body", "credentials"],
        ),
    ]
    for body, code, loc in cases:
        r = await api(inventory, "POST", "/providers", json=body)
        assert r.status_code == code, (body, r.text)
        locs = [d["loc"][: len(loc)] for d in r.json()["detail"]]
        assert loc in locs, (loc, r.json())
        assert "secret" not in r.text or "password" not in json.dumps(body)  # never echoed
    listed = (await api(inventory, "GET", "/providers")).json()["items"]
    assert not [p for p in listed if p["name"].startswith("x")]
    assert await secrets_of(kube) == before  # nothing half-created


BAD_URLS = [
    ("https://127.0.0.1:99999/", "not in 1..65535"),
    ("https://127.0.0.1:0/", "not in 1..65535"),
    ("https://127.0.0.1:abc/", "not a number"),
    ("https://[::1/", "unclosed IPv6 bracket"),
    ("https://:8443/", "names no host"),
]


async def test_urls_naming_no_server_are_refused_precisely(
    inventory: ServiceProcess, engine: Engine, kube: client.ApiClient
) -> None:
    """Issue 24: a bad port or host answered 500 (and port 0 was read as 443)."""
    before = await secrets_of(kube)
    for url, reason in BAD_URLS:
        shown = await api(inventory, "GET", "/providers/certificate", params={"url": url})
        assert shown.status_code == 422, (url, shown.text)
        [problem] = shown.json()["detail"]
        assert (problem["loc"], reason in problem["msg"]) == (["query", "url"], True), url
        for dry_run in (True, False):
            body = ovirt_body(engine, unique("bad"), url=url)
            r = await api(inventory, "POST", "/providers", json=body, params={"dryRun": dry_run})
            assert r.status_code == 422, (url, r.text)
            [problem] = r.json()["detail"]
            assert (problem["loc"], reason in problem["msg"]) == (["body", "url"], True), url
    created = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("ov")))
    assert created.status_code == 201, created.text
    patched = await api(
        inventory, "PATCH", f"/providers/{created.json()['id']}", json={"url": "https://[::1/"}
    )
    assert patched.status_code == 422, patched.text
    assert patched.json()["detail"][0]["loc"] == ["body", "url"]
    listed = (await api(inventory, "GET", "/providers")).json()["items"]
    assert not [p for p in listed if p["name"].startswith("bad")]
    assert len(await secrets_of(kube)) == len(before) + 1  # only the good one


async def test_untrusted_certificate_shows_fingerprints(
    inventory: ServiceProcess, engine: Engine
) -> None:
    r = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("ov"), tls={}))
    assert r.status_code == 422
    problem = r.json()["detail"][0]
    assert problem["type"] == "TlsUntrusted"
    assert problem["loc"] == ["body", "tls"]
    assert problem["certificate"]["sha256Fingerprint"] == engine.cert.fingerprint
    assert len(problem["certificate"]["sha1Fingerprint"]) == 59
    shown = await api(inventory, "GET", "/providers/certificate", params={"url": engine.api_url})
    assert shown.status_code == 200
    assert shown.json()["certificate"]["sha256Fingerprint"] == engine.cert.fingerprint
    assert shown.json()["trustedBySystem"] is False


async def test_wrong_password_and_unreachable_host(
    inventory: ServiceProcess, engine: Engine
) -> None:
    wrong = ovirt_body(
        engine, unique("ov"), credentials={"user": "admin@internal", "password": "nope"}
    )
    r = await api(inventory, "POST", "/providers", json=wrong)
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "AuthRefused"
    assert r.json()["detail"][0]["loc"] == ["body", "credentials"]
    assert "nope" not in r.text
    gone = ovirt_body(engine, unique("ov"), url="https://127.0.0.1:9/ovirt-engine/api")
    r = await api(inventory, "POST", "/providers", json=gone)
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "HostUnreachable"
    dry = await api(
        inventory,
        "POST",
        "/providers",
        params={"dryRun": "true"},
        json=ovirt_body(engine, unique("ov")),
    )
    assert dry.status_code == 200
    assert dry.json()["connection"] == "ok"


# --- a working provider -----------------------------------------------------------------------


async def test_ovirt_provider_lifecycle(
    inventory: ServiceProcess, engine: Engine, kube: client.ApiClient
) -> None:
    name = unique("ovirt")
    r = await api(inventory, "POST", "/providers", json=ovirt_body(engine, name))
    assert r.status_code == 201, r.text
    created = r.json()
    assert "secret" not in json.dumps(created["status"])
    assert "password" not in r.text
    assert created["tls"]["mode"] == "fingerprint"
    pid = created["id"]
    stored = (await secrets_of(kube))[created["secret"]["name"]]
    assert stored["user"] == "admin@internal"
    assert stored["password"] == "secret"
    assert stored["fingerprint"] == engine.cert.fingerprint
    assert stored["url"] == engine.api_url

    ready = await wait_phase(inventory, pid, "Ready")
    assert ready["status"]["lastRefresh"]
    assert ready["status"]["counts"]["vm"] == 3
    assert ready["status"]["certificate"]["sha256Fingerprint"] == engine.cert.fingerprint
    dup = await api(inventory, "POST", "/providers", json=ovirt_body(engine, name))
    assert dup.status_code == 409
    assert dup.json()["detail"][0]["loc"] == ["body", "name"]

    vms = await api(inventory, "GET", f"/providers/{name}/vms", params={"detail": 1})
    assert vms.status_code == 200
    page = vms.json()
    assert [v["name"] for v in page["items"]] == ["app-1", "db-1", "web-1"]
    assert page["total"] == 3
    assert page["next"] is None
    assert_documented("inventory", page, views.ObjectPage)
    assert_documented("inventory", ready, views.Provider)
    etag = vms.headers["etag"]
    again = await api(
        inventory,
        "GET",
        f"/providers/{name}/vms",
        params={"detail": 1},
        headers={"If-None-Match": etag, **inventory.auth()},
    )
    assert again.status_code == 304
    down = await api(inventory, "GET", f"/providers/{pid}/vms", params={"status": "down"})
    assert [v["name"] for v in down.json()["items"]] == ["db-1"]
    first = await api(inventory, "GET", f"/providers/{pid}/vms", params={"limit": 2})
    second = await api(
        inventory,
        "GET",
        f"/providers/{pid}/vms",
        params={"limit": 2, "cursor": first.json()["next"]},
    )
    assert [v["name"] for v in second.json()["items"]] == ["web-1"]
    web = next(v for v in page["items"] if v["name"] == "web-1")
    one = await api(inventory, "GET", f"/providers/{pid}/vms/{web['id']}")
    assert one.status_code == 200
    assert one.json()["data"]
    assert_documented("inventory", one.json(), views.InventoryObject)
    assert (await api(inventory, "GET", f"/providers/{pid}/disks")).json()["total"] == 3
    for path, code in (
        (f"/providers/{pid}/storageclasses", 404),
        (f"/providers/{pid}/bogus", 404),
        (f"/providers/{pid}/vms/nope", 404),
        ("/providers/no-such-provider", 404),
        (f"/providers/{pid}/vms?limit=0", 422),
        (f"/providers/{pid}/vms?cursor=garbage", 400),
        # Base64 of [1,2]: a cursor of the wrong types (issue 24), whatever the sort.
        (f"/providers/{pid}/vms?cursor=WzEsMl0=", 400),
        (f"/providers/{pid}/vms?cursor=WzEsMl0=&sort=-concerns", 400),
        (f"/providers/{pid}/vms?sort=size", 422),
    ):
        assert (await api(inventory, "GET", path)).status_code == code, path

    assert (await api(inventory, "DELETE", f"/providers/{pid}")).status_code == 204
    assert (await api(inventory, "GET", f"/providers/{pid}")).status_code == 404
    assert created["secret"]["name"] not in await secrets_of(kube)


async def test_a_change_reaches_nats_and_the_stream(
    inventory: ServiceProcess, engine: Engine, servers: DevServices
) -> None:
    r = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("ovirt")))
    pid = r.json()["id"]
    await wait_phase(inventory, pid, "Ready")
    bus = Bus(NatsSettings(url=servers.nats_url, prefix=PREFIX), source="/tests")
    await bus.connect()
    got: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        got.append(json.loads(msg.data))

    sub = await bus.nc.subscribe(f"{PREFIX}.inventory.provider.{pid}.vm.changed", cb=on_msg)
    frames: list[str] = []

    async def read_stream() -> None:
        async with inventory.client.stream(
            "GET",
            "/api/v1/inventory/events",
            params={"provider": pid, "kind": "vm"},
            headers=inventory.auth(),
            timeout=None,
        ) as resp:
            async for line in resp.aiter_lines():
                frames.append(line)

    reader = asyncio.create_task(read_stream())
    try:
        await asyncio.sleep(0.5)
        vm = next(v for v in engine.inv.vms.values() if v.name == "app-1")
        vm.memory = 8 << 30
        engine.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)
        await eventually(lambda: bool(got), within=20, what="the vm changed event")
        assert got[0]["data"]["object_id"] == vm.id
        assert got[0]["data"]["action"] == "updated"
        await eventually(
            lambda: any(vm.id in f for f in frames if f.startswith("data:")),
            within=10,
            what="the SSE frame",
        )
        one = await api(inventory, "GET", f"/providers/{pid}/vms/{vm.id}")
        assert one.json()["revision"] == got[0]["data"]["revision"]
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await reader
        await sub.unsubscribe()
        await bus.drain()
        await api(inventory, "DELETE", f"/providers/{pid}")


async def test_down_and_back_and_changed_certificate(
    inventory: ServiceProcess, tmp_path: Path
) -> None:
    async with Engine(small_engine_inventory(), [], tmp_path / "engine") as engine:
        r = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("flaky")))
        pid = r.json()["id"]
        await wait_phase(inventory, pid, "Ready")
        await engine._unserve()
        failed = await wait_phase(inventory, pid, "ConnectionFailed")
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Connected")
        assert cond["status"] is False
        assert cond["reason"] in ("HostUnreachable", "Timeout")
        await engine._serve(engine._serving_cert)
        await wait_phase(inventory, pid, "Ready")

        rotated = await engine.rotate_certificate()
        failed = await wait_phase(inventory, pid, "ConnectionFailed")
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Connected")
        assert cond["reason"] == "TlsCertificateChanged"
        assert rotated.fingerprint in cond["message"]
        fixed = await api(
            inventory,
            "PATCH",
            f"/providers/{pid}",
            json={"tls": {"fingerprint": rotated.fingerprint}},
        )
        assert fixed.status_code == 200, fixed.text
        await wait_phase(inventory, pid, "Ready")
        await api(inventory, "DELETE", f"/providers/{pid}")


async def test_local_cluster_as_kubevirt_target(inventory: ServiceProcess) -> None:
    r = await api(
        inventory, "POST", "/providers", json={"name": unique("host"), "type": "kubevirt"}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    await wait_phase(inventory, pid, "Ready")
    classes = (
        await api(inventory, "GET", f"/providers/{pid}/storageclasses", params={"detail": 1})
    ).json()["items"]
    standard = next(c for c in classes if c["name"] == "standard")
    assert standard["data"]["provisioner"]
    namespaces = (await api(inventory, "GET", f"/providers/{pid}/namespaces")).json()["items"]
    assert "hoist" in {n["name"] for n in namespaces}
    assert (await api(inventory, "GET", f"/providers/{pid}/vms")).status_code == 404
    await api(inventory, "DELETE", f"/providers/{pid}")


async def test_kubevirt_target_workloads_through_the_api(
    inventory: ServiceProcess, kube: client.ApiClient
) -> None:
    """What the planner asks a target: is this PVC (or VM) name taken in the namespace, and
    how much can the class still hold."""
    ns = unique("apps")
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": ns}})
    r = await api(
        inventory, "POST", "/providers", json={"name": unique("target"), "type": "kubevirt"}
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    await wait_phase(inventory, pid, "Ready")
    claim = {
        "metadata": {"name": "web-root"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard",
        },
    }
    await core.create_namespaced_persistent_volume_claim(ns, claim)

    async def claims() -> list[Any]:
        page = await api(
            inventory,
            "GET",
            f"/providers/{pid}/persistentvolumeclaims",
            params={"parent": ns, "detail": 1},
        )
        assert page.status_code == 200, page.text
        items: list[Any] = page.json()["items"]
        return items

    async def bound() -> bool:
        return [(c["name"], c["status"]) for c in await claims()] == [("web-root", "Bound")]

    await eventually(bound, what="the claim, bound, in the target's inventory")
    (found,) = await claims()
    assert found["id"] == f"{ns}/web-root"
    assert found["data"]["requestedBytes"] == 1 << 30
    one = await api(inventory, "GET", f"/providers/{pid}/persistentvolumeclaims/{ns}/web-root")
    assert one.status_code == 200, one.text
    assert one.json()["data"]["storageClassName"] == "standard"

    pools = await api(
        inventory, "GET", f"/providers/{pid}/storagecapacities", params={"parent": "standard"}
    )
    assert pools.status_code == 200, pools.text
    assert [p["id"] for p in pools.json()["items"]] == ["kube-system/csisc-standard"]
    vms = await api(inventory, "GET", f"/providers/{pid}/virtualmachines", params={"parent": ns})
    assert (vms.status_code, vms.json()["items"]) == (200, [])

    # What a static class can still bind: its Available volumes, with size and node.
    static = unique("pv-local")
    term = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}
    await core.create_persistent_volume(
        {
            "metadata": {"name": static},
            "spec": {
                "capacity": {"storage": "3Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local-static",
                "local": {"path": f"/mnt/{static}"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}},
            },
        }
    )
    volumes: list[Any] = []

    async def listed() -> bool:
        page = await api(
            inventory,
            "GET",
            f"/providers/{pid}/persistentvolumes",
            params={"parent": "local-static", "detail": 1, "name": static},
        )
        volumes[:] = page.json()["items"]
        return bool(volumes) and volumes[0]["data"]["available"]

    await eventually(listed, what="the static volume, Available, in the inventory")
    data = volumes[0]["data"]
    assert (data["capacityBytes"], data["nodes"], data["volumeMode"]) == (
        3 << 30,
        ["node-1"],
        "Filesystem",
    )
    await core.delete_persistent_volume(static)

    await core.delete_namespaced_persistent_volume_claim("web-root", ns)

    async def gone() -> bool:
        return await claims() == []

    await eventually(gone, what="the deleted claim gone from the inventory")
    missing = await api(inventory, "GET", f"/providers/{pid}/persistentvolumeclaims/{ns}/web-root")
    assert missing.status_code == 404
    await api(inventory, "DELETE", f"/providers/{pid}")


@contextlib.asynccontextmanager
async def silent_tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A server that completes the TLS handshake and then never answers: the worst kind of
    provider, whose calls hang rather than fail."""
    cert = make_server_cert(tmp_path / "pki")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert_file, cert.key_file)
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/ovirt-engine/api", cert.fingerprint
    finally:
        for w in held:
            w.close()
        server.close()


async def test_a_hanging_provider_delays_no_other(
    inventory: ServiceProcess, engine: Engine, tmp_path: Path
) -> None:
    good = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("good")))
    good_id = good.json()["id"]
    await wait_phase(inventory, good_id, "Ready")
    async with silent_tls_server(tmp_path) as (url, fingerprint):
        stuck = await api(
            inventory,
            "POST",
            "/providers",
            params={"testConnection": "false"},
            json=ovirt_body(engine, unique("stuck"), url=url, tls={"fingerprint": fingerprint}),
        )
        assert stuck.status_code == 201, stuck.text
        stuck_id = stuck.json()["id"]
        # While the stuck provider's calls hang, the good one still follows its engine.
        vm = next(v for v in engine.inv.vms.values() if v.name == "web-1")
        vm.memory = (vm.memory or 0) + (1 << 30)
        engine.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)

        async def followed() -> bool:
            one = await api(inventory, "GET", f"/providers/{good_id}/vms/{vm.id}")
            return bool(one.json()["data"].get("memory") == vm.memory)

        await eventually(followed, within=20, what="the good provider's refresh")
        failed = await wait_phase(inventory, stuck_id, "ConnectionFailed", within=30)
        cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Connected")
        assert cond["reason"] == "Timeout"
        assert (await api(inventory, "GET", f"/providers/{good_id}")).json()["status"][
            "phase"
        ] == "Ready"
        await api(inventory, "DELETE", f"/providers/{stuck_id}")
    await api(inventory, "DELETE", f"/providers/{good_id}")


async def sse_frames(
    inventory: ServiceProcess, params: dict[str, Any], headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The first ``count`` events of the stream, each as ``{id, event, data}``."""
    frames: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with inventory.client.stream(
        "GET",
        "/api/v1/inventory/events",
        params=params,
        headers={**inventory.auth(), **headers},
        timeout=20,
    ) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
            elif not line and current:
                frames.append(current)
                current = {}
                if len(frames) >= count:
                    break
    return frames


async def test_the_stream_replays_and_resumes(inventory: ServiceProcess, engine: Engine) -> None:
    r = await api(inventory, "POST", "/providers", json=ovirt_body(engine, unique("sse")))
    pid = r.json()["id"]
    await wait_phase(inventory, pid, "Ready")
    replay = await sse_frames(inventory, {"provider": pid, "kind": "vm", "since": 0}, {}, 3)
    assert {f["data"]["name"] for f in replay} == {"web-1", "db-1", "app-1"}
    assert all(f["event"] == "object" for f in replay)
    last = replay[-1]["id"]

    vm = next(v for v in engine.inv.vms.values() if v.name == "db-1")
    vm.memory = (vm.memory or 0) + (1 << 30)
    engine.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)
    resumed = await sse_frames(
        inventory, {"provider": pid, "kind": "vm"}, {"Last-Event-ID": last}, 2
    )
    # The provider's own status frames come whatever the kinds (it turned Ready after its
    # objects were stored); then the change.
    assert [f["event"] for f in resumed] == ["provider", "object"]
    assert resumed[0]["data"]["status"]["phase"] == "Ready"
    assert resumed[1]["data"]["id"] == vm.id
    assert int(resumed[1]["id"]) > int(resumed[0]["id"]) > int(last)
    too_many: dict[str, Any] = {"kind": ["vm"] * 65}  # a list parameter has bounds too
    for bad in ({"since": -1}, {"kind": "bogus"}, {"provider": "no-such"}, too_many):
        code = (await api(inventory, "GET", "/inventory/events", params=bad)).status_code
        assert code in (400, 404, 422), bad
    # Above PostgreSQL's bigint: refused before the stream starts, not a 200 that dies (issue
    # 24); so is a Last-Event-ID beyond it (the 422 of any Last-Event-ID not a revision, at
    # the header, as the planner's stream answers it).
    huge = await api(inventory, "GET", "/inventory/events", params={"since": 2**63})
    assert huge.status_code == 422
    assert huge.json()["detail"][0]["loc"] == ["query", "since"]
    for last_event_id in (str(2**63).encode(), b"\xb2", b"9" * 5000):
        resumed_bad = await api(
            inventory, "GET", "/inventory/events", headers={"Last-Event-ID": last_event_id}
        )
        assert resumed_bad.status_code == 422, last_event_id[:20]
        assert resumed_bad.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    # A change the engine logs no event for: only a full reload can see it.
    silent = next(v for v in engine.inv.vms.values() if v.name == "web-1")
    silent.memory = (silent.memory or 0) + (3 << 30)
    refreshed = await api(inventory, "POST", f"/providers/{pid}/refresh")
    assert refreshed.status_code == 202
    assert refreshed.json() == {"id": pid, "accepted": True}

    async def reloaded() -> bool:
        one = (await api(inventory, "GET", f"/providers/{pid}/vms/{silent.id}")).json()
        return bool(one["data"].get("memory") == silent.memory)

    await eventually(reloaded, within=20, what="the reload asked for")
    assert (await api(inventory, "POST", "/providers/no-such/refresh")).status_code == 404
    ovirts = (await api(inventory, "GET", "/providers", params={"type": "ovirt"})).json()
    assert pid in {p["id"] for p in ovirts["items"]}
    assert (await api(inventory, "GET", "/providers", params={"type": "x"})).status_code == 422
    await api(inventory, "DELETE", f"/providers/{pid}")
