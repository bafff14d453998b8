"""The simulated oVirt engine: REST API, SSO, image transfers, faults.

``async with Engine(inventory, faults, workdir) as engine:`` serves
``engine.api_url`` (``https://127.0.0.1:<port>/ovirt-engine/api``) over TLS with a CA of its
own (``engine.cert.ca_file``, fingerprint ``engine.cert.fingerprint``), starts a real
ovirt-imageio daemon (the "host") and the engine's image proxy. Disk images are made when a
disk is first transferred (``image_path``), exported through qemu-nbd, and handed to imageio
as tickets, as vdsm does on a host: image transfers in ``sim/ovirt/transfers.py``, VM
backups and checkpoints in ``sim/ovirt/backups.py``, running guests' writes in
``sim/ovirt/guest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.etree import ElementTree as ET

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.devservices import free_port
from sim.certs import ServerCert, make_server_cert
from sim.ovirt import auth, params
from sim.ovirt import entities as m
from sim.ovirt import xmlapi as x
from sim.ovirt.backups import Backups
from sim.ovirt.changes import Changes
from sim.ovirt.directory import Directory
from sim.ovirt.guest import GuestWrite, GuestWriter
from sim.ovirt.imageio import ImageioDaemon
from sim.ovirt.images import make_image
from sim.ovirt.jsonapi import JsonNegotiation
from sim.ovirt.maintenance import Maintenance, Window
from sim.ovirt.proxy import ImageProxy
from sim.ovirt.scenario import Fault
from sim.ovirt.search import SearchError, compile_search, fields_for
from sim.ovirt.transfers import PHASE_DELAY, Transfers
from sim.power import timelines_json

XML = "application/xml"
EVENT_SHUTDOWN_STARTED = 73  # USER_INITIATED_SHUTDOWN_VM
EVENT_SHUTDOWN_FAILED = 147  # VM_POWER_DOWN_FAILED

_COLLECTIONS: dict[str, tuple[str, str, Callable[[Any], ET.Element]]] = {
    "datacenters": ("data_centers", "data_centers", x.data_center),
    "clusters": ("clusters", "clusters", x.cluster),
    "hosts": ("hosts", "hosts", x.host),
    "networks": ("networks", "networks", x.network),
    "vnicprofiles": ("vnic_profiles", "vnic_profiles", x.vnic_profile),
    "storagedomains": ("storage_domains", "storage_domains", x.storage_domain),
    "diskprofiles": ("disk_profiles", "disk_profiles", x.disk_profile),
    "disks": ("disks", "disks", x.disk),
}


class _QuietServer(uvicorn.Server):
    """Leaves signals to whoever runs the simulator (a test, a benchmark, the demo)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _form(request: Request) -> dict[str, str]:
    """The SSO endpoints take url-encoded forms (parsed here: no python-multipart needed)."""
    pairs = urllib.parse.parse_qsl((await request.body()).decode())
    return dict(pairs)


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML)


def _fault(status: int, reason: str, detail: str) -> Response:
    return _xml(x.fault(reason, detail), status)


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    """A malformed ``max=`` or ``from=``: 400 with a fault, as the engine refuses it."""
    return _fault(400, "Invalid value", f"[{exc}]")


def _search_fault(exc: SearchError) -> Response:
    """A search the engine cannot parse: 400, its query failure's fault."""
    return _fault(400, "Operation Failed", f"[Syntax error in search query: {exc}]")


def _search_events(query: str, events: list[m.Event]) -> list[m.Event]:
    """Words without an operator match the text (how ``/events?search=<backup id>`` finds a
    backup's events); conditions go to ``compile_search``."""
    if not any(op in query for op in "=<>"):
        words = query.lower().split()
        return [e for e in events if all(w in e.description.lower() for w in words)]
    fields = fields_for(m.Event, code=lambda e: str(e.code), severity=lambda e: e.severity)
    return list(compile_search(query, fields)(events))


class Engine:
    def __init__(
        self,
        inventory: m.Inventory,
        faults: list[Fault] | None = None,
        workdir: Path | None = None,
    ) -> None:
        if workdir is None:
            raise ValueError("Engine needs a workdir for its certificates, images and sockets")
        self.inv = inventory
        self.changes = Changes(inventory)
        self.version = "4.5.7"  # what the API root reports (set "3.6.13" for an old engine)
        self.faults = list(faults or [])
        self.workdir = workdir
        self.port = 0
        self.cert: ServerCert = make_server_cert(workdir / "pki")
        self.imageio = ImageioDaemon(workdir / "imageio", self.cert)
        self.proxy: ImageProxy | None = None
        self.tokens: set[str] = set()
        self.sessions = auth.Sessions()
        self.logins = 0
        self.logouts = 0
        self._images: dict[str, Path] = {}
        self.transfers = Transfers(self)
        self.backups = Backups(self)
        self.guest = GuestWriter(self.inv, self.image_path, self.transfers.release)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving_cert = self.cert
        self.locked_until: dict[str, float] = {}
        self.maintenance = Window()  # fault "maintenance": Apache's 503 page meanwhile

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/ovirt-engine/api"

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        (self.workdir / "imageio").mkdir(parents=True, exist_ok=True)
        (self.workdir / "images").mkdir(parents=True, exist_ok=True)
        await self.imageio.start()
        self.proxy = ImageProxy(self.imageio.port, self.cert)
        await self.proxy.start()
        for fault in self.faults:
            self._arm(fault)
        self.port = free_port()
        await self._serve(self._serving_cert)
        self.spawn(self.guest.run())

    def add_fault(self, fault: Fault) -> None:
        """Faults can also be added while the engine runs (tests share one engine)."""
        self.faults.append(fault)
        self._arm(fault)

    def _arm(self, fault: Fault) -> None:
        if fault.kind == "maintenance":
            self.maintenance.start(fault.seconds)
        if fault.kind == "disk_locked":
            until = asyncio.get_running_loop().time() + fault.seconds
            disks = [self.inv.disk_by_name(fault.disk)] if fault.disk else self.inv.disks.values()
            for disk in disks:
                disk.status = "locked"
                self.locked_until[disk.id] = until

    async def _serve(self, cert: ServerCert) -> None:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(cert.cert_file),
            ssl_keyfile=str(cert.key_file),
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = _QuietServer(config)
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
                raise RuntimeError("the simulated engine stopped while starting")
            await asyncio.sleep(0.02)

    async def _unserve(self) -> None:
        """Stop serving as a restarted engine does: open connections are dropped (a graceful
        TLS close would wait 30 s for idle keep-alive clients that never answer it)."""
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            for connection in list(self._server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
            await self._serving
            self._server = None

    async def rotate_certificate(self) -> ServerCert:
        """Fault "changed TLS certificate": serve a certificate from a new, unrelated CA on
        the same port. ``self.cert`` (what clients were given) stays the old one."""
        await self._unserve()
        self._serving_cert = make_server_cert(self.workdir / "pki", tag="-rotated")
        await self._serve(self._serving_cert)
        return self._serving_cert

    async def stop(self) -> None:
        await self._unserve()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.proxy is not None:
            await self.proxy.stop()
        await self.transfers.stop()
        await self.backups.stop()
        await self.imageio.stop()

    async def restart(self, seconds: float) -> None:
        """Fault "engine restart": the API is unreachable for ``seconds``; backups in flight
        end ``failed`` (their exports and transfers stop); everything else survives."""
        await self._unserve()
        await self.backups.fail_in_flight("the engine restarted while the backup ran")
        await asyncio.sleep(seconds)
        await self._serve(self._serving_cert)

    async def write_guest(
        self, disk_id: str, nbytes: int, zero: bool | None = None
    ) -> list[GuestWrite]:
        """The guest writes ``nbytes`` into the disk now, whatever its VM's status (tests'
        deterministic writes); ``engine.guest.stats[disk_id]`` counts every write."""
        return await self.guest.write(disk_id, nbytes, zero)

    def invalidate_checkpoint(self, checkpoint_id: str) -> None:
        self.backups.invalidate_checkpoint(checkpoint_id)

    async def lose_checkpoint(self, checkpoint_id: str) -> None:
        await self.backups.lose_checkpoint(checkpoint_id)

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_churn(self, changes_per_second: float, seed: int = 0) -> None:
        """A stream of inventory changes with their events, as a busy engine produces:
        VMs change memory or CPU, get renamed NICs, or stop and start. Readers follow it with
        ``/events?from=<last id>`` and reload what the events name."""
        self.spawn(self._churn(changes_per_second, random.Random(seed)))

    async def _churn(self, per_second: float, rng: random.Random) -> None:
        vms = list(self.inv.vms.values())
        while vms:
            await asyncio.sleep(1 / per_second)
            vm = rng.choice(vms)
            kind = rng.choice(("memory", "cpu", "nic", "power"))
            if kind == "memory":
                vm.memory = rng.choice((1, 2, 4, 8, 16)) << 30
                self.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)
            elif kind == "cpu":
                vm.cores = rng.choice((1, 2, 4, 8))
                self.inv.add_event(35, f"VM {vm.name} configuration was updated", vm_id=vm.id)
            elif kind == "nic" and vm.nics:
                vm.nics[0].interface = rng.choice(("virtio", "e1000"))
                self.inv.add_event(1005, f"Interface of VM {vm.name} was updated", vm_id=vm.id)
            elif vm.status in ("up", "down"):
                up = vm.status == "up"
                vm.status = "down" if up else "up"
                vm.host_id = None if up else next(iter(self.inv.hosts))
                code, verb = (33, "stopped") if up else (32, "started")
                self.inv.add_event(code, f"VM {vm.name} was {verb}", vm_id=vm.id)

    # ---- images ----------------------------------------------------------------------------

    async def image_path(self, disk_id: str) -> Path:
        """The disk's image file, made on first use (big inventories cost no disk space)."""
        if disk_id not in self._images:
            disk = self.inv.disks[disk_id]
            suffix = "qcow2" if disk.image.fmt == "qcow2" else "raw"
            path = self.workdir / "images" / f"{disk.id}.{suffix}"
            await asyncio.to_thread(make_image, path, disk.image)
            self._images[disk_id] = path
        return self._images[disk_id]

    # ---- HTTP ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        api = "/ovirt-engine/api"
        b, bk, tr = self.guard, self.backups, self.transfers
        dr = Directory(self.inv, _xml, _fault, _search_fault)
        routes = [
            Route("/ovirt-engine/sso/oauth/token", self.sso_token, methods=["POST"]),
            Route("/ovirt-engine/services/sso-logout", self.sso_logout, methods=["POST", "GET"]),
            Route("/ovirt-engine/services/pki-resource", self.pki_resource),
            Route(api, self.guard(self.root)),
            Route(f"{api}/vms", self.guard(self.list_vms)),
            Route(f"{api}/vms/{{id}}", self.guard(self.get_vm)),
            Route(f"{api}/vms/{{id}}/nics", self.guard(self.vm_nics)),
            Route(f"{api}/vms/{{id}}/diskattachments", self.guard(self.vm_attachments)),
            Route(f"{api}/vms/{{id}}/snapshots", self.guard(self.vm_snapshots)),
            Route(f"{api}/vms/{{id}}/backups", b(bk.collection), methods=["GET", "POST"]),
            Route(f"{api}/vms/{{id}}/backups/{{backup}}", b(bk.get)),
            Route(f"{api}/vms/{{id}}/backups/{{backup}}/disks", b(bk.disks)),
            Route(
                f"{api}/vms/{{id}}/backups/{{backup}}/{{action}}", b(bk.action), methods=["POST"]
            ),
            Route(f"{api}/vms/{{id}}/checkpoints", b(bk.checkpoints)),
            Route(
                f"{api}/vms/{{id}}/checkpoints/{{checkpoint}}",
                b(bk.checkpoint),
                methods=["GET", "DELETE"],
            ),
            Route(f"{api}/vms/{{id}}/{{action}}", self.guard(self.vm_action), methods=["POST"]),
            Route(f"{api}/events", self.guard(self.events)),
            Route(f"{api}/templates", self.guard(dr.list_templates)),
            Route(f"{api}/templates/{{id}}", self.guard(dr.get_template)),
            Route(f"{api}/users", self.guard(dr.list_users)),
            Route(f"{api}/users/{{id}}", self.guard(dr.get_user)),
            Route(f"{api}/imagetransfers", b(tr.collection), methods=["GET", "POST"]),
            Route(f"{api}/imagetransfers/{{id}}", b(tr.get)),
            Route(f"{api}/imagetransfers/{{id}}/{{action}}", b(tr.action), methods=["POST"]),
            Route(f"{api}/storagedomains/{{id}}/disks", self.guard(self.domain_disks)),
            Route(f"{api}/{{collection}}", self.guard(self.list_collection)),
            Route(f"{api}/{{collection}}/{{id}}", self.guard(self.get_object)),
            Route("/sim/power-timeline", self.guard(self.power_timeline)),  # not the engine's
        ]
        return Starlette(
            routes=routes,
            exception_handlers={params.BadParameter: _bad_parameter},
            middleware=[
                Middleware(Maintenance, window=self.maintenance),
                Middleware(JsonNegotiation),
            ],
        )

    def guard(self, handler: Any) -> Any:
        """Authentication as the engine's filters do it (``sim/ovirt/auth.py``)."""

        async def guarded(request: Request) -> Response:
            denied, headers = self.sessions.admit(request, self.tokens, self.inv.users)
            if denied is not None:
                return denied
            response: Response = await handler(request)
            for key, value in headers.items():
                response.headers.append(key, value)
            return response

        return guarded

    async def sso_token(self, request: Request) -> Response:
        form = await _form(request)
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        if not auth.valid_user(self.inv.users, user, password):
            return JSONResponse(
                {
                    "error_code": "access_denied",
                    "error": "Cannot authenticate user: wrong user name or password.",
                },
                status_code=401,
            )
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.logins += 1
        return JSONResponse(
            {"access_token": token, "scope": "ovirt-app-api", "exp": "0", "token_type": "bearer"}
        )

    async def sso_logout(self, request: Request) -> Response:
        form = await _form(request)
        self.tokens.discard(str(form.get("token", "")))
        self.logouts += 1
        return JSONResponse({})

    async def pki_resource(self, request: Request) -> Response:
        return Response(self.cert.ca_pem, media_type="application/x-x509-ca-cert")

    async def root(self, request: Request) -> Response:
        return _xml(x.api_root(version=self.version))

    async def list_collection(self, request: Request) -> Response:
        entry = _COLLECTIONS.get(request.path_params["collection"])
        if entry is None:
            return _fault(404, "Not Found", f"no collection {request.path_params['collection']}")
        attr, tag, render = entry
        objs: dict[str, Any] = getattr(self.inv, attr)
        try:
            items = self._page(request, list(objs.values()))
        except SearchError as exc:
            return _search_fault(exc)
        return _xml(x.collection(tag, (render(o) for o in items)))

    async def get_object(self, request: Request) -> Response:
        entry = _COLLECTIONS.get(request.path_params["collection"])
        if entry is None:
            return _fault(404, "Not Found", f"no collection {request.path_params['collection']}")
        attr, _, render = entry
        obj = getattr(self.inv, attr).get(request.path_params["id"])
        if obj is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return _xml(x.document(render(obj)))

    def _page(self, request: Request, items: list[Any], cls: type = m.DataCenter) -> list[Any]:
        """``search=`` (``sim/ovirt/search.py``; raises ``SearchError``), then ``max=``."""
        search = request.query_params.get("search", "")
        if search.strip():
            cls = type(items[0]) if items else cls
            extra = {}
            if cls is m.Vm:
                extra = {
                    "cluster": lambda v: getattr(self.inv.clusters.get(v.cluster_id), "name", None),
                    "host": lambda v: getattr(self.inv.hosts.get(v.host_id or ""), "name", None),
                }
            items = compile_search(search, fields_for(cls, **extra))(items)
        return params.limit(request, items)

    def _follow(self, request: Request) -> frozenset[str]:
        return frozenset(f.strip() for f in request.query_params.get("follow", "").split(","))

    async def list_vms(self, request: Request) -> Response:
        follow = self._follow(request)
        try:
            vms = self._page(request, list(self.inv.vms.values()), m.Vm)
        except SearchError as exc:
            return _search_fault(exc)
        return _xml(x.collection("vms", (x.vm(v, follow, self.inv.disks) for v in vms)))

    async def get_vm(self, request: Request) -> Response:
        vm = self.inv.vms.get(request.path_params["id"])
        if vm is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return _xml(x.document(x.vm(vm, self._follow(request), self.inv.disks)))

    async def vm_nics(self, request: Request) -> Response:
        vm = self.inv.vms.get(request.path_params["id"])
        if vm is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return _xml(x.collection("nics", (x.nic(vm.id, n) for n in vm.nics)))

    async def vm_attachments(self, request: Request) -> Response:
        vm = self.inv.vms.get(request.path_params["id"])
        if vm is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        embed = self.inv.disks if "disk" in self._follow(request) else None
        return _xml(
            x.collection(
                "disk_attachments",
                (
                    x.disk_attachment(vm.id, a, embed.get(a.disk_id) if embed else None)
                    for a in vm.disk_attachments
                ),
            )
        )

    async def domain_disks(self, request: Request) -> Response:
        sd = request.path_params["id"]
        disks = [d for d in self.inv.disks.values() if d.storage_domain_id == sd]
        return _xml(x.collection("disks", (x.disk(d) for d in disks)))

    async def vm_snapshots(self, request: Request) -> Response:
        vm = self.inv.vms.get(request.path_params["id"])
        if vm is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return _xml(x.snapshots(vm))

    async def vm_action(self, request: Request) -> Response:
        """``stop`` powers off at once; ``shutdown`` presses the ACPI button: a guest that
        ignores it goes ``powering_down`` and comes back ``up`` (the engine logs that the
        shutdown failed), as vdsm reports a guest that did not power off in time."""
        vm = self.inv.vms.get(request.path_params["id"])
        action = request.path_params["action"]
        if vm is None:
            return _fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        if action in ("stop", "shutdown"):
            if vm.status == "down":
                verb = "stop" if action == "stop" else "shut down"
                return _fault(409, "Operation Failed", f"[Cannot {verb} VM. VM {vm.name} is down.]")
            steps: list[tuple[str, str | None]] = [("powering_down", None), ("down", None)]
            code, done = 33, f"VM {vm.name} {action} done, now down"  # USER_STOP_VM
            if action == "shutdown":
                self.inv.add_event(
                    EVENT_SHUTDOWN_STARTED, f"VM shutdown initiated on {vm.name}", vm_id=vm.id
                )
                if not vm.acpi:
                    host = vm.host_id
                    steps = [("powering_down", host), ("up", host)]
                    code, done = EVENT_SHUTDOWN_FAILED, f"Shutdown of VM {vm.name} failed."
        elif action == "start":
            if vm.status != "down":
                return _fault(409, "Operation Failed", f"[Cannot run VM. VM {vm.name} is running.]")
            host = next(iter(self.inv.hosts))
            steps = [("wait_for_launch", host), ("powering_up", host), ("up", host)]
            code, done = 32, f"VM {vm.name} start done, now up"  # USER_STARTED_VM
        else:
            return _fault(404, "Not Found", f"no action {action} on VMs here")
        self.spawn(self._vm_steps(vm, steps, code, done))
        return _xml(x.action())

    async def _vm_steps(
        self, vm: m.Vm, steps: list[tuple[str, str | None]], code: int, done: str
    ) -> None:
        for status, host in steps:
            if status == "up":
                vm.status, vm.host_id = status, host
            else:  # a batch of guest writes in flight ends first: down means no more writes
                async with self.guest.paused(vm.id):
                    vm.status, vm.host_id = status, host
            await asyncio.sleep(PHASE_DELAY)
        self.inv.add_event(code, done, vm_id=vm.id)

    async def power_timeline(self, request: Request) -> Response:
        """Every VM's power timeline, removed ones too (``sim/power.py``): how tests count
        the source VMs that are down. Outside ``/ovirt-engine``: no client of the engine's
        API ever meets it."""
        vms = [*self.inv.vms.values(), *self.inv.removed_vms.values()]
        return JSONResponse(timelines_json((v.id, v.name, v.power) for v in vms))

    async def events(self, request: Request) -> Response:
        start = params.non_negative(request, "from") or 0
        found = [e for e in self.inv.events if e.id > start]
        found.reverse()  # the engine lists the newest first
        search = request.query_params.get("search", "").strip()
        if search:
            try:
                found = _search_events(search, found)
            except SearchError as exc:
                return _search_fault(exc)
        found = params.limit(request, found)
        return _xml(x.collection("events", (x.event(e) for e in found)))
