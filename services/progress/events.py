"""What the progress service consumes and publishes.

Consumes ``POPULATOR_POD_STARTED`` and ``POPULATOR_POD_FINISHED`` (which pods to scrape):
each is applied once (inbox) to the ``disks`` table, from which every replica reads its
share. Publishes ``DISK_PROGRESS`` and ``VM_PROGRESS`` on core NATS when they change
(``recording``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.progress import targets as tg
from shared import catalog
from shared import envelope as env
from shared.bus import Subscription
from shared.db.messaging import idempotent
from shared.payloads import Outcome, PopulatorPodFinished, PopulatorPodStarted
from shared.service.runtime import Runtime

CONSUMER = "progress-populators"


async def apply(event: env.Envelope[Any], session: AsyncSession) -> None:
    data = event.data
    if isinstance(data, PopulatorPodStarted):
        await tg.register(
            session,
            tg.PodInfo(
                plan_id=data.plan_id,
                migration_id=data.migration_id,
                vm_id=data.vm_id,
                disk_id=data.disk_id,
                cluster_id=data.cluster_id,
                namespace=data.pod.namespace,
                pod=data.pod.name,
                owner_uid=data.owner_uid,
                pod_ip=data.pod_ip,
                metrics_port=data.metrics_port,
                metrics_scheme=data.metrics_scheme,
                total_bytes=data.total_bytes,
                populator_kind=data.populator_kind,
            ),
            source="event",
        )
    elif isinstance(data, PopulatorPodFinished):
        await tg.finish(
            session,
            disk_id=data.disk_id,
            migration_id=data.migration_id,
            pod=data.pod.name,
            state=tg.SUCCEEDED if data.outcome is Outcome.SUCCEEDED else tg.FAILED,
            bytes_done=data.bytes_transferred,
            error=(data.error.message if data.error else None)
            if data.outcome is not Outcome.SUCCEEDED
            else None,
        )


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    """Durable consumers of this service; created at start-up so nothing published for it
    is lost, whether or not a handler is attached yet."""
    return (
        Subscription(
            name=CONSUMER,
            events=(catalog.POPULATOR_POD_STARTED, catalog.POPULATOR_POD_FINISHED),
            description="Populator pods to start and stop scraping.",
            handler=idempotent(runtime.sessionmaker, runtime.inbox, CONSUMER, apply),
        ),
    )
