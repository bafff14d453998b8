"""The bus against a real nats-server: delivery, dedupe, retries, dead letters, concurrency."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from nats.js.errors import NotFoundError

from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.bus import Bus, Consumer, PermanentError, RetryLater, Subscription
from shared.settings import ConsumerSettings, HoistSettings
from tests.conftest import eventually


def cancel(plan: str = "plan-1", vms: list[str] | None = None) -> p.PlanCancelRequested:
    return p.PlanCancelRequested(plan_id=plan, migration_id="mig-1", vm_ids=vms or [])


def subscription(handler: Any, **kw: Any) -> Subscription:
    return Subscription(
        name=kw.pop("name", "tests-plans"),
        events=(catalog.PLAN_CANCEL_REQUESTED, catalog.PLAN_STARTED),
        description="test",
        handler=handler,
        **kw,
    )


async def start(bus: Bus, sub: Subscription, settings: HoistSettings) -> Consumer:
    consumer = Consumer(bus, sub, settings.consumer)
    await consumer.declare()
    consumer.start()
    return consumer


async def dead_letters(bus: Bus) -> list[Any]:
    stream = bus.stream_name(catalog.DEADLETTER)
    found: list[Any] = []
    seq = 1
    while True:
        try:
            msg = await bus.js.get_msg(stream, seq, next=True)
        except NotFoundError:
            return found
        found.append(msg)
        seq = (msg.seq or seq) + 1


async def test_publish_and_consume(bus: Bus, settings: HoistSettings) -> None:
    got: list[env.Envelope[Any]] = []

    async def handler(event: env.Envelope[Any]) -> None:
        got.append(event)

    consumer = await start(bus, subscription(handler), settings)
    published = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(vms=["vm-7"]))
    await eventually(lambda: len(got) == 1, what="delivery")
    await consumer.stop(1)

    event = got[0]
    assert published.subject == f"{bus.prefix}.plan.plan-1.cancel"
    assert published.stream == bus.stream_name(catalog.PLANS)
    assert event.id == published.event_id
    assert event.type == "io.hoist.plan.cancel.requested.v1"
    assert event.source == "/hoist/tests"
    assert (event.planid, event.migrationid) == ("plan-1", "mig-1")
    assert isinstance(event.data, p.PlanCancelRequested)
    assert event.data.vm_ids == ["vm-7"]


async def test_duplicate_publish_is_deduplicated(bus: Bus, settings: HoistSettings) -> None:
    got: list[str] = []

    async def handler(event: env.Envelope[Any]) -> None:
        got.append(event.id)

    first = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="cancel-plan-1")
    again = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="cancel-plan-1")
    other = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="cancel-plan-2")
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.sequence == first.sequence

    consumer = await start(bus, subscription(handler), settings)
    await eventually(lambda: len(got) == 2, what="two deliveries")
    await asyncio.sleep(0.5)  # room for a wrong third delivery to show up
    await consumer.stop(1)
    assert sorted(got) == ["cancel-plan-1", "cancel-plan-2"]


async def test_redelivery_after_handler_crash(bus: Bus, settings: HoistSettings) -> None:
    attempts: Counter[str] = Counter()
    done = asyncio.Event()

    async def handler(event: env.Envelope[Any]) -> None:
        attempts[event.id] += 1
        if attempts[event.id] < 3:
            raise RuntimeError("simulated crash inside the handler")
        done.set()

    consumer = await start(bus, subscription(handler), settings)
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="e1")
    await asyncio.wait_for(done.wait(), 15)
    await consumer.stop(1)
    assert attempts["e1"] == 3
    assert await dead_letters(bus) == []


async def test_retry_later_waits_as_asked(bus: Bus, settings: HoistSettings) -> None:
    seen: list[float] = []

    async def handler(event: env.Envelope[Any]) -> None:
        seen.append(asyncio.get_running_loop().time())
        if len(seen) == 1:
            raise RetryLater("PVC not bound yet", delay=1.0)

    consumer = await start(bus, subscription(handler), settings)
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel())
    await eventually(lambda: len(seen) == 2, what="retry")
    await consumer.stop(1)
    # The server held the message back; ordering of events, not a timing benchmark.
    assert seen[1] - seen[0] >= 0.9


async def test_dead_letter_after_max_deliveries(
    bus: Bus, settings: HoistSettings, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0

    async def handler(event: env.Envelope[Any]) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("provider refused the request")

    consumer = await start(bus, subscription(handler), settings)
    with caplog.at_level(logging.ERROR, logger="hoist.bus.consumer"):
        sent = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="doomed")
        await eventually(lambda: len(caplog.records) > 0, what="dead-letter log line")
    await consumer.stop(1)

    assert attempts == settings.consumer.max_deliveries
    (letter,) = await dead_letters(bus)
    headers = letter.headers
    assert letter.subject == f"{bus.prefix}.dlq.{consumer.durable}"
    assert headers["Hoist-Dlq-Subject"] == sent.subject
    assert headers["Hoist-Dlq-Reason"] == "MaxDeliveries"
    assert headers["Hoist-Dlq-Deliveries"] == str(attempts)
    assert "provider refused the request" in headers["Hoist-Dlq-Error"]
    assert env.decode(letter.data).id == "doomed"  # the original envelope, unchanged
    assert "dead-lettered" in caplog.records[0].getMessage()

    info = await consumer.info()
    assert info["pending"] == 0
    assert info["ack_pending"] == 0


async def test_permanent_error_and_garbage_go_straight_to_dead_letters(
    bus: Bus, settings: HoistSettings
) -> None:
    attempts = 0

    async def handler(event: env.Envelope[Any]) -> None:
        nonlocal attempts
        attempts += 1
        raise PermanentError("plan references a deleted provider")

    consumer = await start(bus, subscription(handler), settings)
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel())
    await bus.js.publish(bus.subject("plan.x.cancel"), b"{not json", headers={"Nats-Msg-Id": "g"})
    await eventually(lambda: _count(dead_letters(bus), 2), what="two dead letters")
    await consumer.stop(1)
    reasons = sorted(m.headers["Hoist-Dlq-Reason"] for m in await dead_letters(bus))
    assert reasons == ["PermanentError", "Undecodable"]
    assert attempts == 1


async def _count(letters: Any, n: int) -> bool:
    return len(await letters) >= n


async def test_message_of_a_dead_consumer_is_redelivered(bus: Bus, settings: HoistSettings) -> None:
    """A replica that dies mid-handler never acks: after ack_wait another replica gets it."""
    defaults = ConsumerSettings(ack_wait_seconds=1.0, backoff_seconds=[0.2])
    started = asyncio.Event()
    finished: list[int] = []

    async def hangs(event: env.Envelope[Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    async def works(event: env.Envelope[Any]) -> None:
        finished.append(1)

    doomed_bus = Bus(bus.settings, source="/hoist/doomed")  # its own connection, like a pod
    await doomed_bus.connect()
    doomed = Consumer(doomed_bus, subscription(hangs), defaults)
    await doomed.declare()
    doomed.start()
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel())
    await asyncio.wait_for(started.wait(), 10)
    await doomed_bus.nc.close()  # the pod is gone: no ack, no nak, no in-progress

    survivor = Consumer(bus, subscription(works), defaults)
    survivor.start()
    await eventually(lambda: finished == [1], what="redelivery to the surviving replica")
    await survivor.stop(1)
    await doomed.stop(0.1)


async def test_long_handler_is_kept_alive(bus: Bus, settings: HoistSettings) -> None:
    settings = settings.model_copy(
        update={"consumer": ConsumerSettings(ack_wait_seconds=1.0, backoff_seconds=[0.2])}
    )
    calls = 0

    async def slow(event: env.Envelope[Any]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(2.5)  # longer than ack_wait: in-progress acks must cover it

    consumer = await start(bus, subscription(slow), settings)
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel())
    await eventually(lambda: calls == 1, what="first delivery")
    await eventually(lambda: _acked(consumer), what="ack after the slow handler", within=15)
    await consumer.stop(1)
    assert calls == 1


async def _acked(consumer: Consumer) -> bool:
    info = await consumer.info()
    return bool(info["ack_pending"] == 0 and info["pending"] == 0 and consumer.in_flight == 0)


async def test_concurrency_is_bounded(bus: Bus, settings: HoistSettings) -> None:
    running = 0
    peak = 0
    handled = 0

    async def handler(event: env.Envelope[Any]) -> None:
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        handled += 1

    for i in range(30):
        await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(plan=f"p{i}"))
    consumer = await start(bus, subscription(handler, concurrency=3), settings)
    await eventually(lambda: handled == 30, what="all 30 handled")
    await consumer.stop(1)
    assert peak == 3


async def test_graceful_stop_naks_unfinished_work(bus: Bus, settings: HoistSettings) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def hangs(event: env.Envelope[Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    async def works(event: env.Envelope[Any]) -> None:
        finished.append(event.id)

    first = await start(bus, subscription(hangs), settings)
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="in-flight")
    await asyncio.wait_for(started.wait(), 10)
    await first.stop(grace=0.2)  # shorter than the handler: it is cancelled and nak'ed
    second = await start(bus, subscription(works), settings)
    # Redelivered at once thanks to the nak (ack_wait is 5 s here).
    await eventually(lambda: finished == ["in-flight"], what="redelivery", within=4)
    await second.stop(1)


async def test_unhandled_subscription_keeps_messages(bus: Bus, settings: HoistSettings) -> None:
    declared_only = Consumer(bus, subscription(None), settings.consumer)
    await declared_only.declare()
    declared_only.start()  # no handler: nothing pulled
    await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel())
    await eventually(
        lambda: _pending(declared_only, 1), what="message waiting in the durable consumer"
    )


async def _pending(consumer: Consumer, n: int) -> bool:
    return bool((await consumer.info())["pending"] == n)


async def test_core_events(bus: Bus) -> None:
    got: list[env.Envelope[Any]] = []

    async def on_progress(event: env.Envelope[Any]) -> None:
        got.append(event)

    sub = await bus.subscribe_core(catalog.VM_PROGRESS, on_progress, plan_id="plan-9")
    from datetime import UTC, datetime

    for plan in ("plan-8", "plan-9"):
        await bus.publish(
            catalog.VM_PROGRESS,
            p.VmProgress(
                plan_id=plan,
                migration_id="m",
                vm_id="vm.with.dots",
                disks_total=2,
                disks_done=1,
                bytes_done=10,
                bytes_total=20,
                percent=50,
                observed_at=datetime.now(UTC),
            ),
        )
    await eventually(lambda: len(got) == 1, what="core delivery")
    await sub.unsubscribe()
    assert got[0].planid == "plan-9"
    assert got[0].subject == "progress.plan-9.vm.vm%2Ewith%2Edots"
    with pytest.raises(ValueError, match="JetStream event"):
        await bus.subscribe_core(catalog.PLAN_STARTED, on_progress)


async def test_streams_are_declared_idempotently(bus: Bus) -> None:
    await bus.ensure_streams()  # a second replica starting: same config, no error
    changed = Bus(bus.settings.model_copy(update={"stream_max_age_days": 3}), source="x")
    changed._nc, changed._js = bus._nc, bus._js
    await changed.ensure_streams()  # a new configuration is applied, not refused
    info = await bus.js.stream_info(bus.stream_name(catalog.PLANS))
    assert info.config.max_age == 3 * 86400
    assert info.config.duplicate_window == bus.settings.duplicate_window_seconds
    assert info.config.subjects == [f"{bus.prefix}.plan.>"]


async def test_poison_message_that_kills_its_process_is_dead_lettered(
    bus: Bus, settings: HoistSettings
) -> None:
    """A message whose handler takes its process down every time must not crash-loop the
    fleet: past max_deliveries it is dead-lettered on arrival, its handler not run again."""
    defaults = ConsumerSettings(ack_wait_seconds=1.0, backoff_seconds=[0.2], max_deliveries=2)
    ran = 0

    async def dies(event: env.Envelope[Any]) -> None:
        nonlocal ran
        ran += 1
        await asyncio.Event().wait()

    sent = await bus.publish(catalog.PLAN_CANCEL_REQUESTED, cancel(), event_id="poison")
    for _ in range(defaults.max_deliveries):  # each replica dies holding the message
        doomed_bus = Bus(bus.settings, source="/hoist/doomed")
        await doomed_bus.connect()
        doomed = Consumer(doomed_bus, subscription(dies), defaults)
        await doomed.declare()
        before = ran
        doomed.start()
        await eventually(lambda before=before: ran == before + 1, what="delivery")
        await doomed_bus.nc.close()
        await doomed.stop(0.1)

    survivor = Consumer(bus, subscription(dies), defaults)
    survivor.start()
    await eventually(lambda: _count(dead_letters(bus), 1), what="dead letter")
    await survivor.stop(1)
    (letter,) = await dead_letters(bus)
    assert letter.headers["Hoist-Dlq-Reason"] == "MaxDeliveriesExceeded"
    assert letter.headers["Hoist-Dlq-Subject"] == sent.subject
    assert ran == defaults.max_deliveries  # the survivor never ran the poison
