"""What a step handler works with: the VM, its migration's header, memory, and clients.

Clients are shared by every VM of a replica and opened lazily: ``Clusters`` keeps one
connection per target cluster, ``SourcePool`` one connection per source provider (refreshed
every few minutes, so a changed provider Secret is picked up, and dropped at once after an
authentication or TLS failure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.orchestrator.objects import Objects
from services.orchestrator.sources.connecting import connect
from services.orchestrator.sources.contract import Source, SourceError
from shared.clusters import Clusters, ClusterUnavailable
from shared.errors import RetryLater
from shared.kube import Kube, read_secret_data
from shared.payloads import MigrationType, PlannedVm, PlanStarted, ProviderRef
from shared.settings import OrchestratorSettings

log = logging.getLogger("hoist.orchestrator.context")

SOURCE_TTL = 300.0


class SourcePool:
    """One ``Source`` per provider id, shared by every VM that migrates from it."""

    def __init__(self, clusters: Clusters, settings: OrchestratorSettings) -> None:
        self.clusters = clusters
        self.settings = settings
        self._sources: dict[str, tuple[float, Source]] = {}
        self._lock = asyncio.Lock()

    async def secret(self, ref: ProviderRef) -> dict[str, str]:
        """The provider's credentials, from its Secret in the cluster Hoist runs in."""
        try:
            api = await self.clusters.local()
            data = await read_secret_data(api, ref.secret.namespace, ref.secret.name)
        except ClusterUnavailable as exc:
            raise RetryLater(str(exc), 10) from None
        except ApiException as exc:
            raise RetryLater(
                f"cannot read the Secret {ref.secret.namespace}/{ref.secret.name} of provider "
                f"{ref.id} ({exc.status}); retried in 10 s",
                10,
            ) from None
        if data is None:
            raise SourceError(
                "SecretNotFound",
                f"the Secret {ref.secret.namespace}/{ref.secret.name} of provider {ref.id} is "
                "gone; register the provider's credentials again",
                permanent=True,
            )
        return data

    async def get(self, ref: ProviderRef) -> Source:
        async with self._lock:
            cached = self._sources.get(ref.id)
            if cached is not None and time.monotonic() - cached[0] < SOURCE_TTL:
                return cached[1]
            secret = await self.secret(ref)
            source = await connect(ref, secret, self.settings)
            self._sources[ref.id] = (time.monotonic(), source)
        if cached is not None:
            await _close_quietly(cached[1])
        return source

    async def drop(self, provider_id: str) -> None:
        cached = self._sources.pop(provider_id, None)
        if cached is not None:
            await _close_quietly(cached[1])

    async def close(self) -> None:
        for _, source in self._sources.values():
            await _close_quietly(source)
        self._sources.clear()


async def _close_quietly(source: Source) -> None:
    try:
        await source.close()
    except Exception:  # closing a broken connection must not fail a step
        log.debug("closing a source connection failed", exc_info=True)


@dataclass
class StepContext:
    migration_id: str
    plan_id: str
    #: The plan.started header with this VM alone in ``vms``.
    header: PlanStarted
    vm: PlannedVm
    #: What the pipeline remembers between calls (persisted with the VM after every call).
    memory: dict[str, Any]
    settings: OrchestratorSettings
    clusters: Clusters
    sources: SourcePool
    #: No source VM is powered off before it (the migration's, as changed last).
    cutover: datetime | None = None
    _objects: Objects | None = field(default=None, repr=False)

    @property
    def source_type(self) -> str:
        return self.header.source.type.value

    @property
    def warm(self) -> bool:
        """Whether the VM runs the warm pipeline (``shared.pipeline.WARM_STEPS``)."""
        return self.header.migration_type is MigrationType.WARM

    async def source(self) -> Source:
        return await self.sources.get(self.header.source)

    async def target(self) -> Kube:
        """The target cluster's API (``RetryLater`` while it cannot be reached). Without a
        time limit per call (the client's default): the runner bounds the step call."""
        try:
            api = await self.clusters.api(self.header.target.id)
        except ClusterUnavailable as exc:
            raise RetryLater(f"the target cluster cannot be reached: {exc}", 10) from None
        return Kube(api, timeout=None)

    async def objects(self) -> Objects:
        """The target namespace, with the pipeline's create-or-get and cleanup rules."""
        if self._objects is None:
            self._objects = Objects(await self.target(), self.header.target_namespace)
        return self._objects
