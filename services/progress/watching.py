"""Discovery by watching populator pods in the cluster Hoist runs in.

The ``populator.pod.started`` events are one source of pods to scrape; this watch is the
other, and either alone suffices. It matters after a restart of the whole service (events
handled before it are in PostgreSQL already, but an orchestrator that could not publish
still made the pod) and for a pod that got a new IP (deleted and created again). It reads
everything from the pod's labels and annotations (the populator contract's,
``shared.populator``), so the controller must set them.

Each replica runs it (upserts are idempotent and change nothing when nothing moved); a pod
that ended (``Succeeded``/``Failed``) finishes its disk as the event would.

Clusters watched: the one Hoist runs in, always; and every remote target cluster that has a
disk still running in the ``disks`` table (learnt from an event, and still there after a
restart), through the credentials of its provider Secret. A remote cluster whose disks all
ended is no longer watched.

Each cluster's view is a ``shared.kube.ListWatch`` of the pods ``DISCOVERY_SELECTOR`` picks
(list, then watch; relists after a 410 or a failure). A (re)list hands every pod over as an
``ADDED`` event, as a watch started without a version did before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from kubernetes_asyncio import client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import db
from services.progress import targets as tg
from shared import populator as contract
from shared.clusters import Clusters, ClusterUnavailable
from shared.kube import POD, Kube, ListWatch, Obj

log = logging.getLogger("hoist.progress.watch")


def pod_info(pod: Obj) -> tg.PodInfo | None:
    """A populator pod's discovery data from its labels and annotations; None if incomplete."""
    meta = pod.get("metadata") or {}
    lab = dict(meta.get("labels") or {})
    ann = dict(meta.get("annotations") or {})
    if contract.missing(lab, ann):
        return None
    try:
        port = int(ann.get(contract.METRICS_PORT_KEY, contract.METRICS_PORT))
        total = int(ann.get(contract.TOTAL_BYTES, "0"))
    except ValueError:
        return None
    scheme = ann.get(contract.METRICS_SCHEME_KEY, contract.METRICS_SCHEME)
    return tg.PodInfo(
        plan_id=lab[contract.PLAN],
        migration_id=lab[contract.MIGRATION],
        vm_id=lab[contract.VM],
        disk_id=lab[contract.DISK],
        cluster_id=ann[contract.CLUSTER],
        namespace=meta.get("namespace") or "",
        pod=meta.get("name") or "",
        owner_uid=ann[contract.OWNER_UID],
        pod_ip=(pod.get("status") or {}).get("podIP") or None,
        metrics_port=port,
        metrics_scheme=scheme if scheme in ("http", "https") else contract.METRICS_SCHEME,
        total_bytes=total,
        populator_kind=ann.get(contract.POPULATOR_KIND, ""),
    )


async def apply(engine: AsyncEngine, kind: str, pod: Obj) -> None:
    """One watch event: register a running pod, finish an ended one."""
    info = pod_info(pod)
    if info is None:
        return
    phase = (pod.get("status") or {}).get("phase")
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


async def apply_listed(engine: AsyncEngine, pods: list[Obj]) -> None:
    """A (re)list: every pod as the ``ADDED`` event a watch starting afresh delivers."""
    for pod in pods:
        await apply(engine, "ADDED", pod)


REMOTE_RECHECK_SECONDS = 5.0
CLIENT_RECHECK_SECONDS = 5.0
UNAVAILABLE_SECONDS = 30.0


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
    """Watch labelled pods in every namespace of one cluster (None: the local one), forever.

    The ``ListWatch`` relists and backs off by itself; this loop gets it a client. A cluster
    that cannot be used (not configured, its Secret unreadable) is asked again after
    ``UNAVAILABLE_SECONDS``; any other failure to get a client backs off up to 30 s."""
    delay = 1.0
    while True:
        try:
            api = await _client(clusters, cluster_id)
            delay = 1.0
            await _watch(engine, clusters, cluster_id, api)
            continue  # another client for the cluster: watch on it at once
        except asyncio.CancelledError:
            raise
        except ClusterUnavailable as exc:
            log.info("not watching populator pods: %s", exc)
            delay = UNAVAILABLE_SECONDS
        except Exception as exc:
            log.warning("pod watch interrupted (%s); again in %.0f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def _client(clusters: Clusters, cluster_id: str | None) -> client.ApiClient:
    return await (clusters.local() if cluster_id is None else clusters.api(cluster_id))


async def _watch(
    engine: AsyncEngine, clusters: Clusters, cluster_id: str | None, api: client.ApiClient
) -> None:
    """Watch on ``api`` for as long as ``Clusters`` hands it out for the cluster.

    A remote cluster's connection is made anew (and the old one closed) whenever its
    resolution expires, so the client is asked for again every ``CLIENT_RECHECK_SECONDS``,
    and at once when the watch cannot read the pods (the client it has may be closed): the
    watch moves to a new client without waiting out its backoff. A cluster that became
    unusable raises ``ClusterUnavailable``."""
    trouble = asyncio.Event()

    def problem(exc: BaseException | None) -> None:
        if exc is not None:
            trouble.set()

    watch = ListWatch(
        Kube(api),
        POD,
        name=f"populator pod ({cluster_id or 'local cluster'})",
        selector=contract.DISCOVERY_SELECTOR,
        on_list=functools.partial(apply_listed, engine),
        on_event=functools.partial(apply, engine),
        on_problem=problem,
        log=log,
    )
    task = asyncio.create_task(watch.run(), name=f"pod-listwatch-{cluster_id or 'local'}")
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(trouble.wait(), CLIENT_RECHECK_SECONDS)
            trouble.clear()
            if task.done():
                task.result()  # ListWatch.run ends only by raising: say why, start again
            if await _client(clusters, cluster_id) is not api:
                return
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
