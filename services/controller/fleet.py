"""One populator controller per remote target cluster, as providers come and go.

The controller service runs in Hoist's cluster and fills claims there (``Controller`` on
the local API). A remote ``kubevirt`` provider is a Secret ``hoist-provider-<id>`` in
Hoist's namespace labelled ``hoist.io/provider-type=kubevirt`` with a ``url`` (and a token
or an inline kubeconfig): the inventory writes it, and every change of the provider
(rotated credentials included) rewrites it. ``Fleet`` lists those Secrets every
``controller_resync_seconds`` and keeps one ``Controller`` per remote cluster, connected
with that Secret's credentials:

- a new Secret: connect, check that the cluster has Hoist's definitions
  (``shared.remotetarget.missing``: the admin installs them, Hoist's credentials there may
  not), then start a controller that does not register;
- a changed Secret (another token, the old one revoked): the controller is stopped and
  started again on the new credentials; every step is idempotent and re-reads the
  cluster, so claims in flight continue where they were;
- a Secret gone (provider deleted): its controller stops.

A cluster that does not answer keeps its controller: the watches retry on their own and
the claims resume when it comes back. Why this design, not a controller deployed into each
target: docs/populator-controller.md, "Remote target clusters".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field

from kubernetes_asyncio import client

from services.controller.domain import Controller
from shared import remotetarget
from shared.bus import Bus
from shared.kube import SECRET, Kube, KubeConnection, connect_remote, read_secret_data
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.controller.fleet")

PROVIDER_LABEL = "hoist.io/provider"


@dataclass
class Member:
    """A remote cluster's controller and what it was started from."""

    provider_id: str
    digest: str
    connection: KubeConnection | None = None
    controller: Controller | None = None
    problem: str = ""
    missing: list[str] = field(default_factory=list)


class Fleet:
    def __init__(
        self,
        local: client.ApiClient,
        namespace: str,
        settings: OrchestratorSettings,
        bus: Bus | None = None,
        *,
        interval: float | None = None,
    ) -> None:
        self.kube = Kube(local, timeout=30.0)
        self.namespace = namespace
        self.settings = settings
        self.bus = bus
        self.interval = settings.controller_resync_seconds if interval is None else interval
        self.members: dict[str, Member] = {}
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="populator-fleet")

    async def stop(self, grace: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pid in list(self.members):
            await self._retire(pid, grace)

    def waiting_for(self) -> list[str]:
        """Remote clusters whose claims are not being filled, and why (never fatal: the
        local controller is ready regardless)."""
        return [
            f"remote cluster {m.provider_id}: {m.problem}"
            for m in self.members.values()
            if m.problem
        ]

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listing the provider Secrets failed (%r); next round", exc)
            await asyncio.sleep(self.interval)

    async def sync(self) -> None:
        """One round: match the controllers to the remote kubevirt providers' Secrets."""
        selector = f"{remotetarget.PROVIDER_TYPE_LABEL}=kubevirt"
        secrets, _ = await self.kube.list(SECRET, self.namespace, selector=selector)
        wanted: dict[str, str] = {}
        for secret in secrets:
            pid = ((secret.get("metadata") or {}).get("labels") or {}).get(PROVIDER_LABEL)
            data = secret.get("data") or {}
            if pid and ("url" in data or "kubeconfig" in data):
                wanted[pid] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        for pid in [p for p in self.members if p not in wanted]:
            log.info("remote cluster %s: its provider is gone; stopping its controller", pid)
            await self._retire(pid)
        for pid, digest in wanted.items():
            member = self.members.get(pid)
            if member is not None and member.digest != digest:
                log.info("remote cluster %s: its credentials changed; reconnecting", pid)
                await self._retire(pid)
                member = None
            elif member is not None and member.controller and not member.controller.healthy:
                # A task of its ended (a bug): what a process restart does locally.
                log.error("remote cluster %s: its controller broke; starting another", pid)
                await self._retire(pid)
                member = None
            if member is None:
                member = self.members[pid] = Member(pid, digest)
            if member.controller is None:
                await self._join(member)
        self.rounds += 1

    async def _join(self, member: Member) -> None:
        """Connect and start ``member``'s controller; on failure, say why and retry next
        round (the Secret may be fixed, the definitions installed, the cluster come back)."""
        name = f"hoist-provider-{member.provider_id}"
        try:
            secret = await read_secret_data(self.kube.api, self.namespace, name)
            if secret is None:
                return
            if member.connection is None:
                member.connection = await connect_remote(secret.get("url", ""), secret)
            kube = Kube(member.connection.api, timeout=30.0)
            member.missing = await remotetarget.missing(kube)
            if member.missing:
                member.problem = (
                    "Hoist's definitions are not installed: "
                    + ", ".join(member.missing)
                    + " (apply `python -m tools.remoterbac` there)"
                )
                log.warning("remote cluster %s: %s", member.provider_id, member.problem)
                return
            controller = Controller(member.connection.api, self.settings, self.bus, register=False)
            await controller.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            # Never the exception's text for an API error: it may quote a response body.
            member.problem = (
                f"cannot use its API (status {status})" if status else f"{type(exc).__name__}"
            )
            log.warning("remote cluster %s: %s; retrying", member.provider_id, member.problem)
            return
        member.controller = controller
        member.problem = ""
        log.info("remote cluster %s: populator controller running", member.provider_id)

    async def _retire(self, pid: str, grace: float = 10.0) -> None:
        member = self.members.pop(pid, None)
        if member is None:
            return
        if member.controller is not None:
            await member.controller.stop(grace=grace)
        if member.connection is not None:
            await member.connection.close()
