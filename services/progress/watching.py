"""Discovery by watching populator pods in the cluster Hoist runs in.

The ``populator.pod.started`` events are one source of pods to scrape; this watch is the
other, and either alone suffices. It matters after a restart of the whole service (events
handled before it are in PostgreSQL already, but an orchestrator that could not publish
still made the pod) and for a pod that got a new IP (deleted and created again). It reads
everything from the pod's labels and annotations (``shared.labels``), so the orchestrator
must set them.

Each replica runs it (upserts are idempotent and change nothing when nothing moved); a pod
that ended (``Succeeded``/``Failed``) finishes its disk as the event would.

Clusters watched: the one Hoist runs in, always; and every remote target cluster that has a
disk still running in the ``disks`` table (learnt from an event, and still there after a
restart), through the credentials of its provider Secret. A remote cluster whose disks all
ended is no longer watched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import db
from services.progress import targets as tg
from shared import labels
from shared.clusters import Clusters, ClusterUnavailable

log = logging.getLogger("hoist.progress.watch")


def pod_info(pod: Any) -> tg.PodInfo | None:
    """A populator pod's discovery data from its labels and annotations; None if incomplete."""
    meta = pod.metadata
    lab = dict(meta.labels or {})
    ann = dict(meta.annotations or {})
    if labels.missing(lab, ann):
        return None
    try:
        port = int(ann.get(labels.METRICS_PORT, "8443"))
        total = int(ann.get(labels.TOTAL_BYTES, "0"))
    except ValueError:
        return None
    scheme = ann.get(labels.METRICS_SCHEME, "https")
    return tg.PodInfo(
        plan_id=lab[labels.PLAN],
        migration_id=lab[labels.MIGRATION],
        vm_id=lab[labels.VM],
        disk_id=lab[labels.DISK],
        cluster_id=ann[labels.CLUSTER],
        namespace=meta.namespace,
        pod=meta.name,
        owner_uid=ann[labels.OWNER_UID],
        pod_ip=(pod.status.pod_ip if pod.status else None) or None,
        metrics_port=port,
        metrics_scheme=scheme if scheme in ("http", "https") else "https",
        total_bytes=total,
        populator_kind=ann.get(labels.POPULATOR_KIND, ""),
    )


async def apply(engine: AsyncEngine, kind: str, pod: Any) -> None:
    """One watch event: register a running pod, finish an ended one."""
    info = pod_info(pod)
    if info is None:
        return
    phase = pod.status.phase if pod.status else None
    async with engine.begin() as conn:
        if kind != "DELETED" and phase == "Running" and info.pod_ip:
            if await tg.register(conn, info, source="watch"):
                log.info(
                    "found populator pod %s/%s of disk %s", info.namespace, info.pod, info.disk_id
                )
        elif phase in ("Succeeded", "Failed"):
            await tg.finish(
                conn,
                disk_id=info.disk_id,
                migration_id=info.migration_id,
                pod=info.pod,
                state=tg.SUCCEEDED if phase == "Succeeded" else tg.FAILED,
                error=None if phase == "Succeeded" else "the populator pod failed",
            )


REMOTE_RECHECK_SECONDS = 5.0


async def watch_clusters(engine: AsyncEngine, clusters: Clusters) -> None:
    """The local cluster's watch, plus one per remote cluster with running disks."""
    tasks: dict[str | None, asyncio.Task[None]] = {
        None: asyncio.create_task(watch_pods(engine, clusters), name="pod-watch-local")
    }
    try:
        while True:
            try:
                wanted = await _remote_clusters(engine, clusters)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listing target clusters to watch: %s", exc)
                wanted = {cid for cid in tasks if cid is not None}
            for cid in wanted - set(tasks):
                log.info("watching populator pods in remote cluster %s", cid)
                tasks[cid] = asyncio.create_task(
                    watch_pods(engine, clusters, cid), name=f"pod-watch-{cid}"
                )
            for cid in [c for c in tasks if c is not None and c not in wanted]:
                tasks.pop(cid).cancel()
            await asyncio.sleep(REMOTE_RECHECK_SECONDS)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _remote_clusters(engine: AsyncEngine, clusters: Clusters) -> set[str]:
    d = db.disks
    async with engine.connect() as conn:
        ids = (
            await conn.scalars(select(d.c.cluster_id).where(d.c.state == tg.RUNNING).distinct())
        ).all()
    remote: set[str] = set()
    for cid in ids:
        try:
            if await clusters.is_remote(cid):
                remote.add(cid)
        except ClusterUnavailable:
            continue
    return remote


async def watch_pods(
    engine: AsyncEngine, clusters: Clusters, cluster_id: str | None = None
) -> None:
    """Watch labelled pods in every namespace of one cluster (None: the local one),
    forever; reconnects with backoff."""
    delay = 1.0
    while True:
        try:
            api = await (clusters.local() if cluster_id is None else clusters.api(cluster_id))
            core = client.CoreV1Api(api)
            w = watch.Watch()
            async with w.stream(
                core.list_pod_for_all_namespaces,
                label_selector=labels.POPULATOR_POD_SELECTOR,
                timeout_seconds=300,
            ) as stream:
                delay = 1.0
                async for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        await apply(engine, event["type"], event["object"])
        except asyncio.CancelledError:
            raise
        except ClusterUnavailable as exc:
            log.info("not watching populator pods: %s", exc)
            delay = 30.0
        except ApiException as exc:
            log.warning("pod watch: the API server answered %s; again in %.0f s", exc.status, delay)
        except Exception as exc:
            log.warning("pod watch interrupted (%s); again in %.0f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
