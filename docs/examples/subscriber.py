#!/usr/bin/env python3
"""Follow a Hoist installation's events: plan lifecycle, VM steps and outcomes, progress.

Needs only nats-py (``pip install nats-py``), not Hoist's code. Stored events (JetStream)
are read through a durable pull consumer of your own, so a restart of this script resumes
where it stopped and misses nothing; progress samples (core NATS) are followed live.

    python subscriber.py --nats-url nats://nats.hoist:4222            # everything
    python subscriber.py --plan 3f2a…  --durable my-dashboard          # one plan, resumable
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import nats
from nats.js import api
from nats.js.errors import NotFoundError


def line(subject: str, event: dict[str, Any]) -> str:
    data = event.get("data", {})
    what = {
        "io.hoist.migration.vm.step.v1": lambda d: f"{d['step']} {d['state']}",
        "io.hoist.migration.vm.finished.v1": lambda d: d["outcome"],
        "io.hoist.plan.status.v1": lambda d: f"phase={d['phase']}",
        "io.hoist.progress.disk.v1": lambda d: f"{d['percent']:.1f}% of {d['bytes_total']} B",
        "io.hoist.progress.vm.v1": lambda d: (
            f"{d['percent']:.1f}% ({d['disks_done']}/{d['disks_total']} disks)"
        ),
    }.get(event.get("type", ""), lambda d: "")(data)
    ids = " ".join(f"{k}={event[k]}" for k in ("planid", "vmid", "diskid") if event.get(k))
    return f"{event.get('time', '')} {event.get('type', subject)} {ids} {what}".rstrip()


async def follow(args: argparse.Namespace) -> None:
    nc = await nats.connect(args.nats_url, max_reconnect_attempts=-1)
    js = nc.jetstream()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seen = 0

    def show(subject: str, raw: bytes) -> None:
        nonlocal seen
        try:
            print(line(subject, json.loads(raw)), flush=True)
        except (ValueError, KeyError) as exc:
            print(f"{subject}: unreadable event ({exc})", flush=True)
        seen += 1
        if args.max_events and seen >= args.max_events:
            stop.set()

    plan = args.plan or "*"
    # Stored events: a durable consumer per stream, filtered to the plan.
    pulls = []
    for stream, subject in (
        ("PLANS", f"{args.prefix}.plan.{plan}.>"),
        ("MIGRATIONS", f"{args.prefix}.migration.{plan}.>"),
    ):
        name = f"{args.prefix.upper()}_{stream}"
        durable = f"{args.durable}-{stream.lower()}"
        try:
            await js.add_consumer(
                name,
                api.ConsumerConfig(
                    durable_name=durable,
                    filter_subject=subject,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.NEW
                    if args.new_only
                    else api.DeliverPolicy.ALL,
                    inactive_threshold=args.forget_after,
                ),
            )
        except NotFoundError:
            print(
                f"stream {name} does not exist yet: is Hoist running with prefix {args.prefix!r}?"
            )
            continue
        pulls.append(await js.pull_subscribe_bind(durable=durable, stream=name))

    # Progress: live samples on core NATS.
    async def on_progress(msg: Any) -> None:
        show(msg.subject, msg.data)

    await nc.subscribe(f"{args.prefix}.progress.{plan}.>", cb=on_progress)

    async def drain(psub: Any) -> None:
        while not stop.is_set():
            try:
                msgs = await psub.fetch(50, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                show(msg.subject, msg.data)
                await msg.ack()  # acknowledged: a restart resumes after it

    readers = [asyncio.create_task(drain(p)) for p in pulls]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait(
        [waiter, *readers], timeout=args.timeout or None, return_when=asyncio.FIRST_COMPLETED
    )
    stop.set()
    await asyncio.gather(*readers, return_exceptions=True)
    waiter.cancel()
    for psub in pulls:  # a pull subscription left open makes drain() wait for its timeout
        await psub.unsubscribe()
    await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description="Follow Hoist's migration events.")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--prefix", default="hoist", help="the installation's HOIST_NATS_PREFIX")
    parser.add_argument("--plan", help="follow only this plan id")
    parser.add_argument(
        "--durable", default="example-subscriber", help="consumer name to resume with"
    )
    parser.add_argument("--new-only", action="store_true", help="skip events stored before now")
    parser.add_argument(
        "--forget-after",
        type=float,
        default=86400.0,
        help="seconds unused after which NATS deletes the consumer",
    )
    parser.add_argument("--max-events", type=int, default=0, help="exit after this many")
    parser.add_argument("--timeout", type=float, default=0, help="exit after this many seconds")
    asyncio.run(follow(parser.parse_args()))


if __name__ == "__main__":
    main()
