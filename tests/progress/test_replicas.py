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
MAX_PODS = 24


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
    disks: list[dict[str, str]] = []

    async def add_pod() -> None:
        d, owner = ids("replica"), str(uuid.uuid4())
        name = f"pop-{d['disk_id']}"
        ip = await metrics_pod(core, name, owner)
        await announce(publisher, d, name, ip, owner, 1 << 30)
        disks.append(d)

    for _ in range(PODS):
        await add_pod()
    start = now()
    for d in disks:
        await sampled_after(rows, d["disk_id"], start)

    counts: list[int] = []

    async def all_owned() -> bool:
        counts[:] = [await owned(a), await owned(b)]
        return sum(counts) == len(disks)

    # VM ids are random, so the hash may give every pod to one replica (1 in 32 for six):
    # add pods until both have some.
    for _ in range(PODS, MAX_PODS):
        await eventually(all_owned, within=20, what="every pod owned by one replica")
        if min(counts) > 0:
            break
        await add_pod()
    assert min(counts) > 0, f"{len(disks)} pods all hashed to one replica: {counts}"
    victim, survivor = (a, b)
    assert victim.proc is not None
    victim.proc.kill()  # no goodbye: its heartbeat just stops
    await victim.proc.wait()
    killed = now()
    for d in disks:
        await sampled_after(rows, d["disk_id"], killed, within=30)
    assert await owned(survivor) == len(disks)
    found = re.search(r"progress replica (\S+):", victim.logs())
    assert found is not None
    assert f"{found.group(1)} gone" in survivor.logs()
