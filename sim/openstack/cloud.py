"""One simulated OpenStack cloud: real Keystone and Glance, simulated Nova/Cinder/Neutron.

``openstack_cloud()`` runs it in the caller's event loop. ``running_cloud()`` runs it in a
thread with a loop of its own, for synchronous callers such as openstacksdk (which would
block a shared loop) and the tests. Everything serves HTTPS with a per-run CA
(``Cloud.ca_file``); the catalog in Keystone names the simulator for ``compute``,
``volumev3``/``block-storage`` and ``network``, and for ``image`` either Glance itself or the
fault proxy in front of it (``image_proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from shared.devservices import _rmtree, free_port
from sim.certs import issue
from sim.openstack import boot_images
from sim.openstack import keystone_glance as kg
from sim.openstack import scenario as sc
from sim.openstack.api import Sim, build_app
from sim.openstack.faults import Faults
from sim.openstack.imageproxy import build_proxy
from sim.openstack.state import CloudState, Server
from sim.openstack.tokens import Keystone


@dataclass
class Cloud:
    auth_url: str  # Keystone v3: what a client (and the populator's --endpoint) starts from
    ca_file: Path
    glance_url: str  # the real Glance, bypassing the proxy
    image_url: str  # what the catalog names for "image"
    sim_url: str
    scenario: sc.Scenario
    project_id: str
    admin_password: str
    state: CloudState
    faults: Faults
    workdir: Path
    _sim: Sim
    _loop: asyncio.AbstractEventLoop | None = None

    def add_server(self, server: sc.Server) -> Server:
        """Add a server (with its volumes and ports) to the running cloud. From another
        thread the change is made in the cloud's own loop, so no request being served sees
        the object tables change under it."""
        loop = self._loop
        if loop is None:
            return self.state.add_server(server, self.project_id)
        if _running_loop() is loop:
            # In the loop itself nothing may block: its boot image (if new) reaches Glance
            # shortly after.
            made = self.state.add_server(server, self.project_id)
            self._sim.spawn(boot_images.register(self._sim))
            return made

        async def add() -> Server:
            made = self.state.add_server(server, self.project_id)
            await boot_images.register(self._sim)
            return made

        return asyncio.run_coroutine_threadsafe(add(), loop).result(60)

    def credentials(self) -> dict[str, str]:
        """The scenario user's credentials under Forklift's Secret key names."""
        return {
            "username": self.scenario.user,
            "password": self.scenario.password,
            "projectName": self.scenario.project,
            "domainName": "Default",
            "regionName": kg.REGION,
            "cacert": self.ca_file.read_text(),
        }

    def connection(self, **overrides: Any) -> Any:
        """An openstacksdk connection as the scenario user."""
        import openstack

        kw: dict[str, Any] = {
            "auth_url": self.auth_url,
            "username": self.scenario.user,
            "password": self.scenario.password,
            "project_name": self.scenario.project,
            "user_domain_id": "default",
            "project_domain_id": "default",
            "region_name": kg.REGION,
            "cacert": str(self.ca_file),
            **overrides,
        }
        return openstack.connect(**kw)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _serve(app: Any, port: int, certs: Any) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(certs.cert_file),
        ssl_keyfile=str(certs.key_file),
        timeout_keep_alive=30,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"simulator server on port {port} stopped while starting")
        await asyncio.sleep(0.02)
    return server, task


@contextlib.asynccontextmanager
async def openstack_cloud(
    scenario: sc.Scenario | None = None,
    workdir: Path | None = None,
    *,
    image_proxy: bool = True,
    hashing: str = "sha512",
) -> AsyncIterator[Cloud]:
    """Start the cloud, load ``scenario`` into it, stop and clean up on exit. ``hashing`` is
    Glance's ``hashing_algorithm``."""
    scenario = scenario or sc.Scenario()
    base = Path(tempfile.mkdtemp(prefix="hoist-openstack-")) if workdir is None else workdir
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    try:
        certs = issue(base / "tls", common_name="hoist-openstack-sim")
        sim_port, proxy_port = free_port(), free_port()
        sim_url, proxy_url = f"https://127.0.0.1:{sim_port}", f"https://127.0.0.1:{proxy_port}"
        async with kg.keystone_glance(
            base, certs, image_url=proxy_url if image_proxy else None, hashing=hashing
        ) as services:
            for kind, path in (
                ("compute", "/compute/v2.1"),
                ("volumev3", "/volume/v3"),
                ("block-storage", "/volume/v3"),
                ("network", "/network"),
            ):
                await kg.register_service(services, kind, kind, sim_url + path)
            project_id = await kg.create_user(
                services, scenario.user, scenario.password, scenario.project
            )
            keystone = Keystone(services.auth_url, services.admin_password, certs.ca_file)
            faults = Faults()
            faults.update(scenario.faults)
            state = CloudState(base / "disks")
            await asyncio.to_thread(state.load, scenario, project_id)
            sim = Sim(state, faults, keystone, services.glance_url, base_url=sim_url)
            await boot_images.register(sim)
            servers.append(await _serve(build_app(sim), sim_port, certs))
            if image_proxy:
                proxy = build_proxy(services.glance_url, faults, keystone)
                servers.append(await _serve(proxy, proxy_port, certs))
            yield Cloud(
                auth_url=services.auth_url,
                ca_file=certs.ca_file,
                glance_url=services.glance_url,
                image_url=proxy_url if image_proxy else services.glance_url,
                sim_url=sim_url,
                scenario=scenario,
                project_id=project_id,
                admin_password=services.admin_password,
                state=state,
                faults=faults,
                workdir=base,
                _sim=sim,
                _loop=asyncio.get_running_loop(),
            )
            faults.clear()  # release stalled uploads so the servers can stop
            for server, task in servers:
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10)
            for t in list(sim.tasks):
                t.cancel()
    finally:
        for _server, task in servers:
            if not task.done():
                task.cancel()
        if workdir is None:
            _rmtree(base)


@contextlib.contextmanager
def running_cloud(
    scenario: sc.Scenario | None = None,
    workdir: Path | None = None,
    *,
    image_proxy: bool = True,
    hashing: str = "sha512",
) -> Iterator[Cloud]:
    """``openstack_cloud()`` in a thread of its own; returns once everything answers."""
    ready: Future[Cloud] = Future()
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def main() -> None:
        nonlocal stop, loop
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        try:
            async with openstack_cloud(
                scenario, workdir, image_proxy=image_proxy, hashing=hashing
            ) as cloud:
                ready.set_result(cloud)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="openstack-sim")
    thread.start()
    try:
        yield ready.result()
    finally:
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(60)
