"""Simulated Nova (``/compute/v2.1``), Cinder (``/volume/v3``) and Neutron (``/network``).

They answer what openstacksdk sends, in the shapes and status codes of the real services:
version documents for keystoneauth's discovery, microversion headers, ``itemNotFound`` /
``badRequest`` / ``overLimit`` / ``NeutronError`` bodies. Every call but discovery needs a
token the real Keystone accepts (``X-Auth-Token``). The two data paths out of a cloud write
real bytes into the real Glance: ``createImage`` of an image-backed server uploads its root
disk; ``os-volume_upload_image`` uploads a volume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sim.openstack import compute_extras, quotas, secgroups
from sim.openstack.discovery import add_discovery
from sim.openstack.errors import ApiError, not_found
from sim.openstack.faults import Faults
from sim.openstack.state import CloudState, Server, Snapshot, Volume, new_id, now, sparse_copy
from sim.openstack.tokens import Keystone
from sim.power import timelines_json

MiB = 1 << 20
NOVA_MAX, CINDER_MAX = "2.60", "3.70"


log = logging.getLogger("sim.openstack")


class LostUpload(Exception):
    """Raised inside an upload's body: the copy breaks (the ``lose_uploads`` fault)."""


@dataclass
class Sim:
    state: CloudState
    faults: Faults
    keystone: Keystone
    glance_url: str  # the real Glance, not the proxy: the simulator's own uploads
    base_url: str = ""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def create_image(self, token: str, meta: dict[str, Any]) -> str:
        """A queued Glance image, owned by the caller's project (its token)."""
        async with self.keystone.client() as c:
            r = await c.post(
                f"{self.glance_url}/v2/images", json=meta, headers={"X-Auth-Token": token}
            )
        if r.status_code >= 400:
            raise ApiError(r.status_code, "badRequest", f"Glance refused the image: {r.text}")
        return str(r.json()["id"])

    async def upload(self, image_id: str, path: Path | None, *, lose: bool = False) -> None:
        """Stream a disk's bytes (all of them, holes as zeros, as Cinder's raw upload does)
        into Glance; the stuck-in-saving fault stalls halfway; ``lose`` breaks it there."""
        size = path.stat().st_size if path is not None else 0

        async def body() -> AsyncIterator[bytes]:
            if path is None:
                return
            sent, stalled = 0, False
            with path.open("rb") as f:
                while chunk := f.read(4 * MiB):
                    if lose and sent + len(chunk) >= size // 2:
                        if half := chunk[: size // 2 - sent]:
                            yield half
                        raise LostUpload(f"upload into image {image_id} lost halfway")
                    yield chunk
                    sent += len(chunk)
                    if self.faults.stuck_saving and not stalled and sent >= size // 2:
                        stalled = True
                        self.faults.injected.append(f"stuck_saving:{image_id}")
                        await self._stall()

        headers = {
            "X-Auth-Token": await self.keystone.admin_token(),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        # No read timeout: a loaded Glance may take long to answer a whole upload.
        async with self.keystone.client(timeout=httpx.Timeout(30, read=None, write=None)) as c:
            r = await c.put(
                f"{self.glance_url}/v2/images/{image_id}/file", content=body(), headers=headers
            )
            r.raise_for_status()

    async def upload_or_discard(self, image_id: str, path: Path | None) -> None:
        """``upload``, and when it fails, delete the image, as Cinder and Nova do when a
        copy to Glance breaks: a caller then sees the image gone (and may try again),
        never one left "saving" forever."""
        lose = path is not None and self.faults.take_lost_upload()
        fail = path is not None and not lose and self.faults.take_failed_upload()
        try:
            await self.upload(image_id, path, lose=lose or fail)
        except Exception as exc:
            if fail:
                self.faults.injected.append(f"failed_upload:{image_id}")
            elif lose:
                self.faults.injected.append(f"lost_upload:{image_id}")
                log.warning("upload into image %s lost; the image is left behind", image_id)
                return
            log.warning("upload into image %s failed (%r); deleting the image", image_id, exc)
            try:
                async with self.keystone.client() as c:
                    await c.delete(
                        f"{self.glance_url}/v2/images/{image_id}",
                        headers={"X-Auth-Token": await self.keystone.admin_token(fresh=True)},
                    )
            except Exception:
                log.warning("deleting image %s failed too", image_id, exc_info=True)

    async def _stall(self) -> None:
        limit = self.faults.stuck_saving_seconds
        deadline = None if limit is None else time.monotonic() + limit
        # Polled: the fault is a plain flag a test (in another thread) flips back.
        while self.faults.stuck_saving and (deadline is None or time.monotonic() < deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _service_of(path: str) -> str:
    return path.strip("/").split("/", 1)[0]


def build_app(sim: Sim) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    st = sim.state

    @app.middleware("http")
    async def gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        service = _service_of(request.url.path)
        parts = [p for p in request.url.path.split("/") if p]
        if len(parts) > 2 or (service == "sim" and len(parts) > 1):  # not version discovery
            if service != "sim" and (status := sim.faults.take_failure(service)) is not None:
                body = {"computeFault": {"code": status, "message": "Service Unavailable (fault)"}}
                return JSONResponse(body, status, headers={"Retry-After": "1"})
            token = request.headers.get("X-Auth-Token", "")
            if service != "sim" and sim.faults.take_revoke_all():
                revoked = await sim.keystone.revoke_seen()
                sim.faults.injected.append(f"revoke_tokens:{revoked}")
            info = await sim.keystone.validate(token) if token else None
            if info is None:
                body = {
                    "error": {
                        "code": 401,
                        "message": "The request you have made requires authentication.",
                        "title": "Unauthorized",
                    }
                }
                return JSONResponse(body, 401)
            request.state.token, request.state.project = token, info.get("project", {}).get("id")
            request.state.user = info.get("user", {}).get("id")
            request.state.roles = [r.get("name") for r in info.get("roles", [])]
        try:
            response = await call_next(request)
        except ApiError as exc:
            response = _error(service, exc)
        if service == "compute":
            response.headers["OpenStack-API-Version"] = f"compute {NOVA_MAX}"
            response.headers["X-OpenStack-Nova-API-Version"] = NOVA_MAX
        elif service == "volume":
            response.headers["OpenStack-API-Version"] = f"volume {CINDER_MAX}"
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(_service_of(request.url.path), exc)

    add_discovery(app, sim.base_url, NOVA_MAX, CINDER_MAX)

    # ------------------------------------------------------------------ Nova
    def server(sid: str) -> Server:
        if sid not in st.servers or st.servers[sid].deleted_at is not None:
            raise not_found("Instance", sid)
        return st.servers[sid]

    nova = "/compute/v2.1"

    @app.get(nova + "/servers")
    @app.get(nova + "/servers/detail")
    async def servers(request: Request) -> dict[str, Any]:
        q = request.query_params
        since = q.get("changes-since")
        # Like Nova, changes-since also returns recently deleted servers (status DELETED).
        found = [
            s
            for s in st.servers.values()
            if ("name" not in q or q["name"] in s.name) and (since or s.deleted_at is None)
        ]
        if "status" in q:
            found = [s for s in found if s.status == q["status"]]
        if since:
            found = [s for s in found if s.updated_at >= since.replace("Z", "")[:26]]
        return {"servers": [st.server_json(s, sim.base_url + nova) for s in found]}

    @app.get(nova + "/servers/{sid}")
    async def get_server(sid: str) -> dict[str, Any]:
        return {"server": st.server_json(server(sid), sim.base_url + nova)}

    @app.delete(nova + "/servers/{sid}", status_code=204)
    async def delete_server(sid: str) -> None:
        st.delete_server(server(sid).id)

    @app.get(nova + "/servers/{sid}/os-volume_attachments")
    async def attachments(sid: str) -> dict[str, Any]:
        s = server(sid)
        return {
            "volumeAttachments": [
                {
                    "id": v,
                    "volumeId": v,
                    "serverId": s.id,
                    "device": a["device"],
                    "tag": None,
                    "delete_on_termination": False,
                }
                for v in s.volume_ids
                for a in st.volumes[v].attachments
            ]
        }

    @app.get(nova + "/servers/{sid}/os-interface")
    async def interfaces(sid: str) -> dict[str, Any]:
        ports = [st.ports[p] for p in server(sid).port_ids]
        return {
            "interfaceAttachments": [
                {
                    "port_id": p.id,
                    "net_id": p.network_id,
                    "mac_addr": p.mac,
                    "port_state": "ACTIVE",
                    "fixed_ips": p.json()["fixed_ips"],
                }
                for p in ports
            ]
        }

    @app.post(nova + "/servers/{sid}/action")
    async def server_action(sid: str, request: Request) -> Response:
        s, body = server(sid), await request.json()
        if "os-stop" in body or "os-start" in body:
            want = "SHUTOFF" if "os-stop" in body else "ACTIVE"
            if s.task_state is not None:  # Nova's check_instance_state: no task running
                raise ApiError(
                    409,
                    "conflictingRequest",
                    f"Cannot '{next(iter(body))}' "
                    f"instance {sid} while it is in task_state {s.task_state}",
                )
            if s.status == want:
                raise ApiError(
                    409,
                    "conflictingRequest",
                    f"Cannot '{next(iter(body))}' "
                    f"instance {sid} while it is in vm_state {s.status.lower()}",
                )
            s.status, s.updated_at = want, now()
            return Response(status_code=202)
        if "createImage" in body:
            image_id = await _create_server_image(sim, s, body["createImage"], request.state.token)
            location = f"{sim.glance_url}/v2/images/{image_id}"
            return JSONResponse({"image_id": image_id}, 202, headers={"Location": location})
        raise ApiError(400, "badRequest", f"unsupported server action {sorted(body)}")

    @app.get(nova + "/flavors")
    @app.get(nova + "/flavors/detail")
    async def flavors() -> dict[str, Any]:
        return {"flavors": [f.json() for f in st.flavors.values()]}

    @app.get(nova + "/flavors/{fid}")
    async def flavor(fid: str) -> dict[str, Any]:
        if fid not in st.flavors:
            raise not_found("Flavor", fid)
        return {"flavor": st.flavors[fid].json()}

    @app.get(nova + "/flavors/{fid}/os-extra_specs")
    async def flavor_extra_specs(fid: str) -> dict[str, Any]:
        """Where clients before microversion 2.61 (whose flavor bodies lack them) and
        openstacksdk's ``fetch_flavor_extra_specs`` read a flavor's extra specs."""
        if fid not in st.flavors:
            raise not_found("Flavor", fid)
        return {"extra_specs": dict(st.flavors[fid].extra_specs)}

    # ------------------------------------------------------------------ Cinder
    cinder = "/volume/v3"

    def volume(vid: str) -> Volume:
        if vid not in st.volumes:
            raise not_found("Volume", vid)
        return st.volumes[vid]

    @app.get(cinder + "/volumes")
    @app.get(cinder + "/volumes/detail")
    async def volumes() -> dict[str, Any]:
        return {"volumes": [v.json() for v in st.volumes.values()]}

    @app.get(cinder + "/volumes/{vid}")
    async def get_volume(vid: str) -> dict[str, Any]:
        return {"volume": volume(vid).json()}

    @app.post(cinder + "/volumes", status_code=202)
    async def create_volume(request: Request) -> dict[str, Any]:
        spec = (await request.json())["volume"]
        quotas.check_volume_quota(sim, request.state.project)
        name = spec.get("name") or ""
        vtype = spec.get("volume_type") or next(iter(st.volume_types.values()))["name"]
        if snap_id := spec.get("snapshot_id"):
            if snap_id not in st.snapshots:
                raise not_found("Snapshot", snap_id)
            snap = st.snapshots[snap_id]
            vol = st.new_volume(name, request.state.project, vtype, size_bytes=1)
            vol.snapshot_id, vol.status = snap_id, "creating"
            vol.bootable = (
                st.volumes[snap.volume_id].bootable if snap.volume_id in st.volumes else False
            )

            async def fill() -> None:
                await asyncio.to_thread(sparse_copy, snap.path, vol.path)
                vol.status, vol.updated_at = "available", now()

            sim.spawn(fill())
        else:
            vol = st.new_volume(
                name, request.state.project, vtype, size_bytes=int(spec.get("size", 1)) << 30
            )
        return {"volume": vol.json()}

    @app.delete(cinder + "/volumes/{vid}", status_code=202)
    async def delete_volume(vid: str) -> None:
        vol = volume(vid)
        if vol.status not in ("available", "error"):
            raise ApiError(
                400,
                "badRequest",
                f"Invalid volume: Volume status must be available "
                f"or error, but current status is: {vol.status}.",
            )
        del st.volumes[vid]
        vol.path.unlink(missing_ok=True)

    @app.post(cinder + "/volumes/{vid}/action", status_code=202)
    async def volume_action(vid: str, request: Request) -> dict[str, Any]:
        vol, body = volume(vid), await request.json()
        spec = body.get("os-volume_upload_image")
        if spec is None:
            raise ApiError(400, "badRequest", f"unsupported volume action {sorted(body)}")
        force = str(spec.get("force", False)).lower() == "true"
        if vol.status != "available" and not (force and vol.status == "in-use"):
            raise ApiError(
                400,
                "badRequest",
                f"Invalid volume: Volume {vid} status must be "
                f"available or in-use (with force), but current status is: {vol.status}.",
            )
        disk_format = spec.get("disk_format", "raw")
        meta = {
            "name": spec.get("image_name", f"volume-{vid}"),
            "disk_format": disk_format,
            "container_format": spec.get("container_format", "bare"),
            "visibility": spec.get("visibility", "private"),
        }
        image_id = await sim.create_image(request.state.token, meta)
        before, vol.status = vol.status, "uploading"

        async def run() -> None:
            try:
                await sim.upload_or_discard(image_id, vol.path)
            finally:
                vol.status, vol.updated_at = before, now()

        sim.spawn(run())
        return {
            "os-volume_upload_image": {
                "id": vid,
                "updated_at": vol.updated_at,
                "status": "uploading",
                "display_description": None,
                "size": vol.size_gib,
                "volume_type": vol.volume_type,
                "image_id": image_id,
                "container_format": meta["container_format"],
                "disk_format": disk_format,
                "image_name": meta["name"],
            }
        }

    @app.get(cinder + "/types")
    async def types() -> dict[str, Any]:
        return {"volume_types": list(st.volume_types.values())}

    @app.get(cinder + "/types/{tid}")
    async def get_type(tid: str) -> dict[str, Any]:
        if tid not in st.volume_types:
            raise not_found("Volume type", tid)
        return {"volume_type": st.volume_types[tid]}

    @app.get(cinder + "/snapshots")
    @app.get(cinder + "/snapshots/detail")
    async def snapshots() -> dict[str, Any]:
        return {"snapshots": [s.json() for s in st.snapshots.values()]}

    @app.get(cinder + "/snapshots/{snap_id}")
    async def get_snapshot(snap_id: str) -> dict[str, Any]:
        if snap_id not in st.snapshots:
            raise not_found("Snapshot", snap_id)
        return {"snapshot": st.snapshots[snap_id].json()}

    @app.post(cinder + "/snapshots", status_code=202)
    async def create_snapshot(request: Request) -> dict[str, Any]:
        spec = (await request.json())["snapshot"]
        vol = volume(spec["volume_id"])
        force = str(spec.get("force", False)).lower() == "true"
        if vol.status != "available" and not (force and vol.status == "in-use"):
            raise ApiError(
                400,
                "badRequest",
                f"Invalid volume: Volume {vol.id} status must be "
                f"available, but current status is: {vol.status}.",
            )
        snap = await asyncio.to_thread(_snapshot, st, vol, spec.get("name") or "")
        return {"snapshot": snap.json()}

    @app.delete(cinder + "/snapshots/{snap_id}", status_code=202)
    async def delete_snapshot(snap_id: str) -> None:
        snap = st.snapshots.pop(snap_id, None)
        if snap is None:
            raise not_found("Snapshot", snap_id)
        snap.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ Neutron
    neutron = "/network/v2.0"

    def listing(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        q = request.query_params
        keys = [k for k in q if k not in ("limit", "marker", "fields", "sort_key", "sort_dir")]
        return [i for i in items if all(str(i.get(k)) == q[k] for k in keys)]

    @app.get(neutron + "/networks")
    async def networks(request: Request) -> dict[str, Any]:
        return {"networks": listing([n.json() for n in st.networks.values()], request)}

    @app.get(neutron + "/subnets")
    async def subnets(request: Request) -> dict[str, Any]:
        return {"subnets": listing([_subnet(n.subnet) for n in st.networks.values()], request)}

    @app.get(neutron + "/ports")
    async def ports(request: Request) -> dict[str, Any]:
        return {"ports": listing([p.json() for p in st.ports.values()], request)}

    for kind, getter in (
        ("networks", lambda i: st.networks[i].json()),
        (
            "subnets",
            lambda i: next(_subnet(n.subnet) for n in st.networks.values() if n.subnet["id"] == i),
        ),
        ("ports", lambda i: st.ports[i].json()),
    ):
        _neutron_get(app, neutron, kind, getter)
    secgroups.add_routes(app, st.security_groups, neutron, listing)

    quotas.add_routes(app, sim, nova, cinder, neutron, NOVA_MAX)
    compute_extras.add_routes(app, sim, nova, cinder)

    # ------------------------------------------------------------------ faults
    @app.post("/sim/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        values = await request.json()
        if values.get("clear"):
            sim.faults.clear()
        try:
            sim.faults.update({k: v for k, v in values.items() if k != "clear"})
        except ValueError as exc:
            raise ApiError(400, "badRequest", str(exc)) from None
        return {"injected": sim.faults.injected}

    @app.get("/sim/power-timeline")
    async def power_timeline() -> dict[str, Any]:
        """Every server's power timeline, deleted ones too (``sim/power.py``): how tests
        count the source VMs that are down. Under ``/sim``, beside the faults: no catalog
        entry names it, so openstacksdk never meets it."""
        return timelines_json((s.id, s.name, s.power) for s in list(st.servers.values()))

    return app


def _neutron_get(app: FastAPI, prefix: str, kind: str, get: Callable[[str], Any]) -> None:
    @app.get(f"{prefix}/{kind}/{{ident}}")
    async def one(ident: str) -> dict[str, Any]:
        try:
            return {kind[:-1]: get(ident)}
        except (KeyError, StopIteration):
            raise ApiError(
                404,
                f"{kind[:-1].capitalize()}NotFound",
                f"{kind[:-1].capitalize()} {ident} could not be found.",
            ) from None


def _subnet(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("next_ip", "index")}


def _snapshot(st: CloudState, vol: Volume, name: str) -> Snapshot:
    sid = new_id()
    path = st.disk_path("snapshot", sid)
    sparse_copy(vol.path, path)
    snap = Snapshot(sid, name, vol.id, path, vol.project_id)
    st.snapshots[sid] = snap
    return snap


async def _create_server_image(sim: Sim, s: Server, spec: dict[str, Any], token: str) -> str:
    """Nova's snapshot: an image-backed server's root disk goes to Glance as data; a
    boot-from-volume server gets Cinder snapshots and an empty image that names them."""
    if s.status not in ("ACTIVE", "SHUTOFF") or s.task_state is not None:
        raise ApiError(
            409,
            "conflictingRequest",
            f"Cannot 'createImage' instance {s.id} while it is in task_state {s.task_state}",
        )
    meta: dict[str, Any] = {
        "name": spec["name"],
        "container_format": "bare",
        "disk_format": "raw",
        "visibility": "private",
        "image_type": "snapshot",
        "instance_uuid": s.id,
        "base_image_ref": s.image_id if s.boot == "image" else "",
    }
    meta.update({k: str(v) for k, v in (spec.get("metadata") or {}).items()})
    if s.boot == "volume":
        mappings = []
        for n, vid in enumerate(s.volume_ids):
            vol = sim.state.volumes[vid]
            snap = await asyncio.to_thread(
                _snapshot, sim.state, vol, f"snapshot for {spec['name']}"
            )
            mappings.append(
                {
                    "source_type": "snapshot",
                    "destination_type": "volume",
                    "snapshot_id": snap.id,
                    "boot_index": 0 if n == 0 else None,
                    "device_name": vol.attachments[0]["device"] if vol.attachments else None,
                    "volume_size": vol.size_gib,
                    "delete_on_termination": False,
                }
            )
        meta.update(
            {
                "block_device_mapping": json.dumps(mappings),
                "bdm_v2": "True",
                "root_device_name": "/dev/vda",
            }
        )
    image_id = await sim.create_image(token, meta)
    root = s.root_path if s.boot == "image" else None
    s.task_state = "image_uploading"

    async def run() -> None:
        try:
            await sim.upload_or_discard(image_id, root)
        finally:
            s.task_state, s.updated_at = None, now()

    sim.spawn(run())
    return image_id


def _error(service: str, exc: ApiError) -> JSONResponse:
    if service == "network":
        body: dict[str, Any] = {
            "NeutronError": {"type": exc.kind, "message": exc.message, "detail": ""}
        }
    else:
        body = {exc.kind: {"code": exc.status, "message": exc.message}}
    return JSONResponse(body, exc.status)
