"""Two replicas split the pods between them; when one dies, the other takes its pods over.

The split is read from each replica's ``hoist_progress_owned_pods`` gauge; the take-over
from PostgreSQL: every disk gets a sample newer than the kill. No time is asserted (the
bound of two intervals is the design's, see ``services.progress.sharding``).
"""

from __future__ import annotations

import re
import uuid

from kubernetes_asyncio import client

from shared.bus import Bus
from tests.conftest import eventually
from tests.progress.conftest import Replicas, Rows, announce, ids, metrics_pod, now, sampled_after
from tools.processes import ServiceProcess

PODS = 6


async def owned(proc: ServiceProcess) -> int:
    text = (await proc.client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("hoist_progress_owned_pods "):
            return int(float(line.split()[1]))
    return -1


async def test_a_dying_replica_s_pods_are_taken_over(
    replicas: Replicas, core: client.CoreV1Api, publisher: Bus, rows: Rows
) -> None:
    a = await replicas.start()
    b = await replicas.start()
    disks = []
    for _ in range(PODS):
        d, owner = ids("replica"), str(uuid.uuid4())
        name = f"pop-{d['disk_id']}"
        ip = await metrics_pod(core, name, owner)
        await announce(publisher, d, name, ip, owner, 1 << 30)
        disks.append(d)
    start = now()
    for d in disks:
        await sampled_after(rows, d["disk_id"], start)

    async def split() -> bool:
        na, nb = await owned(a), await owned(b)
        return na > 0 and nb > 0 and na + nb == PODS

    await eventually(split, within=20, what="both replicas scraping a share")
    victim, survivor = (a, b)
    assert victim.proc is not None
    victim.proc.kill()  # no goodbye: its heartbeat just stops
    await victim.proc.wait()
    killed = now()
    for d in disks:
        await sampled_after(rows, d["disk_id"], killed, within=30)
    assert await owned(survivor) == PODS
    found = re.search(r"progress replica (\S+):", victim.logs())
    assert found is not None
    assert f"{found.group(1)} gone" in survivor.logs()
