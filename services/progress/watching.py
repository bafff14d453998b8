"""Discovery by watching populator pods in the cluster Hoist runs in.

The ``populator.pod.started`` events are one source of pods to scrape; this watch is the
other, and either alone suffices. It matters after a restart of the whole service (events
handled before it are in PostgreSQL already, but an orchestrator that could not publish
still made the pod) and for a pod that got a new IP (deleted and created again). It reads
everything from the pod's labels and annotations (``shared.labels``), so the orchestrator
must set them.

Each replica runs it (upserts are idempotent and change nothing when nothing moved); a pod
that ended (``Succeeded``/``Failed``) finishes its disk as the event would. Remote target
clusters are not watched: their pods come from events only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import targets as tg
from services.progress.clusters import Clusters, ClusterUnavailable
from shared import labels

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


async def watch_pods(engine: AsyncEngine, clusters: Clusters) -> None:
    """Watch labelled pods in every namespace, forever; reconnects with backoff."""
    delay = 1.0
    while True:
        try:
            api = await clusters.local()
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
