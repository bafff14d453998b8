"""The clusters Hoist works in: the local one, and remote targets from provider Secrets.

A populator pod runs in the target cluster of its migration, named by ``cluster_id`` (the
target provider's id). Whether that is the cluster Hoist runs in or a remote one is read
from the provider's Secret ``hoist-provider-<id>`` (in ``HOIST_KUBE_NAMESPACE``): a ``url`` or
a ``kubeconfig`` there means remote, reached with those credentials (only its API server is
reachable from here, so pods are scraped through the pod proxy); no Secret, or one without
either, means the local cluster. The answer is cached for a minute, connections for as
long as the service runs (a changed Secret is picked up when the cache expires).
"""

from __future__ import annotations

import asyncio
import logging
import time

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared.kube import (
    KubeConfigProblem,
    KubeConnection,
    connect_local,
    connect_remote,
    provider_secret_name,
    read_secret_data,
)
from shared.settings import KubeSettings

log = logging.getLogger("hoist.clusters")

RESOLVE_TTL = 60.0


class ClusterUnavailable(Exception):
    """The cluster's API cannot be used now; scrapes through it fail until it can."""


class Clusters:
    def __init__(self, settings: KubeSettings) -> None:
        self.settings = settings
        self._local: KubeConnection | None = None
        self._local_failed_at = 0.0
        self._remote: dict[str, tuple[float, KubeConnection | None]] = {}
        self._local_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # remote resolution; takes _local_lock inside, never back

    async def local(self) -> client.ApiClient:
        """The cluster Hoist runs in; ``ClusterUnavailable`` when it is not configured."""
        if self._local is not None:
            return self._local.api
        async with self._local_lock:
            if self._local is None:
                if time.monotonic() - self._local_failed_at < 10:
                    raise ClusterUnavailable("the local cluster's API is not configured or down")
                try:
                    self._local = await connect_local(self.settings)
                except Exception as exc:
                    self._local_failed_at = time.monotonic()
                    raise ClusterUnavailable(
                        f"cannot use the cluster Hoist runs in ({type(exc).__name__}: {exc}); "
                        "set HOIST_KUBE_KUBECONFIG or run in a pod; retried in 10 s"
                    ) from None
        return self._local.api

    async def _resolve(self, cluster_id: str) -> KubeConnection | None:
        """The remote connection of ``cluster_id``, or None for the local cluster."""
        cached = self._remote.get(cluster_id)
        if cached is not None and time.monotonic() - cached[0] < RESOLVE_TTL:
            return cached[1]
        async with self._lock:
            cached = self._remote.get(cluster_id)
            if cached is not None and time.monotonic() - cached[0] < RESOLVE_TTL:
                return cached[1]
            conn = await self._connect(cluster_id)
            if cached is not None and cached[1] is not None and cached[1] is not conn:
                await cached[1].close()
            self._remote[cluster_id] = (time.monotonic(), conn)
            return conn

    async def _connect(self, cluster_id: str) -> KubeConnection | None:
        try:
            api = await self.local()
        except ClusterUnavailable:
            return None  # no local API: no Secrets to read either; pods are local then
        name = provider_secret_name(cluster_id)
        try:
            secret = await read_secret_data(api, self.settings.namespace, name)
        except ApiException as exc:
            raise ClusterUnavailable(
                f"cannot read the Secret {self.settings.namespace}/{name} of cluster "
                f"{cluster_id} ({exc.status}); grant get on secrets; retried next round"
            ) from None
        if not secret or not (secret.get("url") or secret.get("kubeconfig")):
            return None
        try:
            return await connect_remote(secret.get("url", ""), secret)
        except KubeConfigProblem as exc:
            raise ClusterUnavailable(f"cluster {cluster_id}: {exc}") from None

    async def is_remote(self, cluster_id: str) -> bool:
        return await self._resolve(cluster_id) is not None

    async def api(self, cluster_id: str) -> client.ApiClient:
        remote = await self._resolve(cluster_id)
        return remote.api if remote is not None else await self.local()

    async def close(self) -> None:
        for _, conn in self._remote.values():
            if conn is not None:
                await conn.close()
        self._remote.clear()
        if self._local is not None:
            await self._local.close()
            self._local = None
