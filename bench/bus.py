"""Benchmark: Hoist's bus against raw nats-py on the same nats-server, in the same run.

Both sides publish N JetStream messages (awaiting each ack) and then consume them with a
durable pull consumer and explicit acks. Hoist's side adds what makes it reliable: the
envelope (build, JSON, validation on both ends), message ids, bounded concurrent handlers
and per-message bookkeeping. The figure that matters is the ratio: how much of raw NATS
throughput survives that. Rounds are interleaved so machine noise hits both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

import nats
from nats.js import api

from bench import _report
from shared import catalog
from shared import payloads as p
from shared.bus import Bus, Consumer, Subscription
from shared.devservices import dev_services
from shared.settings import ConsumerSettings, NatsSettings


def payload(i: int) -> p.VmStepChanged:
    return p.VmStepChanged(
        plan_id="plan-1",
        migration_id="mig-1",
        vm_id=f"vm-{i % 100}",
        step=p.Step.DISK_TRANSFER,
        state=p.StepState.RUNNING,
        attempt=1,
        detail={"disk": f"disk-{i}"},
    )


async def hoist_round(url: str, n: int) -> tuple[float, float]:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    bus = Bus(NatsSettings(url=url, prefix=prefix), source="/bench")
    await bus.connect()
    await bus.ensure_streams((catalog.MIGRATIONS, catalog.DEADLETTER))
    started = time.perf_counter()
    for i in range(n):
        await bus.publish(catalog.VM_STEP_CHANGED, payload(i))
    publish_s = time.perf_counter() - started

    done = asyncio.Event()
    count = 0

    async def handler(event: Any) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    sub = Subscription("bench", (catalog.VM_STEP_CHANGED,), "bench", handler=handler)
    consumer = Consumer(bus, sub, ConsumerSettings(concurrency=64))
    await consumer.declare()
    started = time.perf_counter()
    consumer.start()
    await done.wait()
    consume_s = time.perf_counter() - started
    await consumer.stop(5)
    await bus.delete_streams((catalog.MIGRATIONS, catalog.DEADLETTER))
    await bus.drain()
    return publish_s, consume_s


async def raw_round(url: str, n: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = f"RAW{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    body = json.dumps(payload(0).model_dump(mode="json")).encode()
    started = time.perf_counter()
    for i in range(n):
        await js.publish(f"{name}.step.{i % 100}", body)
    publish_s = time.perf_counter() - started

    await js.add_consumer(
        name, api.ConsumerConfig(durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT)
    )
    psub = await js.pull_subscribe_bind(durable="raw", stream=name)
    started = time.perf_counter()
    got = 0
    while got < n:
        for msg in await psub.fetch(64, timeout=5):
            json.loads(msg.data)
            await msg.ack()
            got += 1
    consume_s = time.perf_counter() - started
    await psub.unsubscribe()
    await js.delete_stream(name)
    await nc.drain()
    return publish_s, consume_s


async def main_async(n: int, rounds: int) -> dict[str, Any]:
    hoist_pub, hoist_con, raw_pub, raw_con = [], [], [], []
    async with dev_services(use_env=False) as ds:
        await raw_round(ds.nats_url, min(n, 500))  # warm-up: file store, connections
        for _ in range(rounds):
            hp, hc = await hoist_round(ds.nats_url, n)
            rp, rc = await raw_round(ds.nats_url, n)
            hoist_pub.append(n / hp)
            hoist_con.append(n / hc)
            raw_pub.append(n / rp)
            raw_con.append(n / rc)
    med = statistics.median
    figures = {
        "messages": n,
        "rounds": rounds,
        "hoist_publish_per_s": round(med(hoist_pub)),
        "raw_publish_per_s": round(med(raw_pub)),
        "hoist_consume_per_s": round(med(hoist_con)),
        "raw_consume_per_s": round(med(raw_con)),
        "publish_ratio": round(med(hoist_pub) / med(raw_pub), 3),
        "consume_ratio": round(med(hoist_con) / med(raw_con), 3),
    }
    floors = {"publish_ratio": 0.55, "consume_ratio": 0.5}
    targets = {name: _report.target(figures[name], ">=", floor) for name, floor in floors.items()}
    return {"bench": "bus", "figures": figures, "targets": targets}


def main() -> int:
    parser = _report.parser(__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    return _report.emit(asyncio.run(main_async(args.messages, args.rounds)), args.json)


if __name__ == "__main__":
    sys.exit(main())
