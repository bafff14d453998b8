"""Durable JetStream pull consumers: bounded concurrency, retries with backoff, dead letters.

How a message is treated:

1. It is fetched only when a handler slot is free, so a slow handler slows intake instead of
   piling up unacknowledged messages that would time out and be redelivered.
2. While its handler runs, the message is kept alive with in-progress acks, so a long but
   healthy handler (a disk allocation that waits for a PVC) is not redelivered elsewhere.
3. Success: ack. ``RetryLater``: nak with the requested delay. Any other exception: nak with
   the backoff of that attempt. ``PermanentError``: dead-letter at once (reason
   ``PermanentError``). Both come from ``shared.errors``; a ``HoistError`` that is neither
   is treated as any other exception.
4. After ``max_deliveries`` attempts, or on arrival past it (earlier attempts died with their
   process), the message is republished on the dead-letter subject with the reason in headers
   and a log line at ERROR, then terminated. It is never dropped silently: if the dead-letter
   publish fails, the message is nak'ed and comes back.

Handlers must be idempotent: a crash after the handler's effects but before the ack
redelivers the message (see ``shared.db.inbox`` for the usual way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError

from shared import envelope as env
from shared import logs
from shared.bus import metrics
from shared.bus.connecting import TYPE_HEADER, Bus
from shared.catalog import DEADLETTER_SUBJECT, Delivery, EventSpec, Stream
from shared.errors import PermanentError, RetryLater
from shared.settings import ConsumerSettings

log = logging.getLogger("hoist.bus.consumer")

Handler = Callable[[env.Envelope[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """A service's durable interest in some events of one stream.

    Declared in the service's ``events.py``. The durable consumer is created at start-up even
    before a handler is attached, so that events published meanwhile wait in JetStream.
    """

    name: str
    events: tuple[EventSpec[Any], ...]
    description: str
    handler: Handler | None = None
    concurrency: int | None = None
    max_deliveries: int | None = None
    backoff: tuple[float, ...] | None = None
    ack_wait: float | None = None

    def __post_init__(self) -> None:
        streams = {e.stream for e in self.events}
        if not self.events or len(streams) != 1 or None in streams:
            raise ValueError(f"{self.name}: events must all be JetStream events of one stream")
        if any(e.delivery is not Delivery.STREAM for e in self.events):
            raise ValueError(f"{self.name}: only JetStream events can be consumed durably")

    @property
    def stream(self) -> Stream:
        stream = self.events[0].stream
        assert stream is not None
        return stream

    @property
    def types(self) -> frozenset[str]:
        return frozenset(e.ce_type for e in self.events)


class Consumer:
    """Runs one ``Subscription`` against a ``Bus``."""

    def __init__(self, bus: Bus, sub: Subscription, defaults: ConsumerSettings) -> None:
        self.bus = bus
        self.sub = sub
        self.concurrency = sub.concurrency or defaults.concurrency
        self.max_deliveries = sub.max_deliveries or defaults.max_deliveries
        self.backoff = tuple(sub.backoff or defaults.backoff_seconds) or (1.0,)
        self.ack_wait = sub.ack_wait or defaults.ack_wait_seconds
        self.durable = f"{bus.prefix}-{sub.name}"
        self.stream_name = bus.stream_name(sub.stream)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._psub: Any = None
        self._running: dict[int, tuple[Msg, float]] = {}
        self._in_flight = metrics.IN_FLIGHT.labels(self.durable)
        self._seconds = metrics.HANDLER_SECONDS.labels(self.durable)

    # --- lifecycle -----------------------------------------------------------------------

    async def declare(self) -> None:
        """Create the durable consumer or bring it to the declared configuration."""
        filters = [self.bus.subject(e.filter()) for e in self.sub.events]
        config = api.ConsumerConfig(
            durable_name=self.durable,
            description=self.sub.description,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            # Unlimited on the server: a server-side limit would silently stop delivering.
            # Our own count decides (dead letter after max_deliveries, or on arrival past
            # it), and a message whose dead-lettering fails keeps coming back until it works.
            max_deliver=-1,
            max_ack_pending=self.concurrency * 4,
            **(
                {"filter_subject": filters[0]}
                if len(filters) == 1
                else {"filter_subjects": filters}
            ),
        )
        await self.bus.js.add_consumer(self.stream_name, config)

    def start(self) -> None:
        if self.sub.handler is None:
            return  # declared for later: messages wait in JetStream meanwhile
        if self._loop is None or self._loop.done():
            self._stopping.clear()
            self._loop = asyncio.create_task(self._run(), name=f"consumer:{self.durable}")
            self._ticker = asyncio.create_task(self._keep_alive(), name=f"keepalive:{self.durable}")

    async def stop(self, grace: float) -> None:
        """Take no new messages; give in-flight handlers ``grace`` seconds, then cancel them
        (a cancelled handler's message is nak'ed so another replica takes it at once)."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def info(self) -> dict[str, Any]:
        """What an operator asks first: how much is waiting, in flight, redelivered."""
        base: dict[str, Any] = {
            "name": self.durable,
            "stream": self.stream_name,
            "events": sorted(self.sub.types),
            "handled": self.sub.handler is not None,
            "in_flight": self.in_flight,
        }
        try:
            ci = await self.bus.js.consumer_info(self.stream_name, self.durable)
        except NotFoundError:
            return {**base, "declared": False}
        return {
            **base,
            "declared": True,
            "pending": ci.num_pending,
            "ack_pending": ci.num_ack_pending,
            "redelivered": ci.num_redelivered,
        }

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._pull()
        finally:
            # Withdraw interest before in-flight messages are nak'ed, so their redelivery
            # goes to a live replica rather than to this one's last pull request.
            if self._psub is not None:
                with contextlib.suppress(Exception):
                    await self._psub.unsubscribe()
                self._psub = None

    async def _pull(self) -> None:
        psub: Any = None
        delay = 0.5
        while not self._stopping.is_set():
            try:
                if psub is None:
                    psub = self._psub = await self.bus.js.pull_subscribe_bind(
                        durable=self.durable, stream=self.stream_name
                    )
                while len(self._tasks) >= self.concurrency:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                try:
                    msgs = await psub.fetch(self.concurrency - len(self._tasks), timeout=1.0)
                except TimeoutError:
                    # Nothing to deliver within the timeout. nats-py raises its own
                    # TimeoutError or, on some paths of a batch fetch, asyncio's (the
                    # builtin): both are an empty fetch, not a failure to back off from.
                    continue
                delay = 0.5
                for msg in msgs:
                    task = asyncio.create_task(self._handle(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # NATS away or the consumer deleted under us: temporary, come back later.
                log.warning("consumer %s: %s; retry in %.1f s", self.durable, exc, delay)
                if psub is not None:
                    with contextlib.suppress(Exception):
                        await psub.unsubscribe()
                psub = self._psub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    def _delay_for(self, attempt: int) -> float:
        return self.backoff[min(attempt, len(self.backoff)) - 1]

    async def _handle(self, msg: Msg) -> None:
        attempt = msg.metadata.num_delivered
        ce_type = (msg.headers or {}).get(TYPE_HEADER, "unknown")
        try:
            event = env.decode(msg.data, ce_type if ce_type != "unknown" else None)
        except env.EnvelopeError as exc:
            await self._dead_letter(msg, ce_type, "Undecodable", str(exc))
            return
        if event.type not in self.sub.types:
            await self._dead_letter(msg, event.type, "UnexpectedType", event.type)
            return
        with logs.bound(event_id=event.id, event_type=event.type, **event.correlation):
            if attempt > self.max_deliveries:
                await self._dead_letter(
                    msg,
                    event.type,
                    "MaxDeliveriesExceeded",
                    f"{attempt - 1} earlier attempts never finished (process died or "
                    f"handler outlived ack_wait)",
                )
                return
            await self._run_handler(msg, event, attempt)

    async def _run_handler(self, msg: Msg, event: env.Envelope[Any], attempt: int) -> None:
        assert self.sub.handler is not None
        started = time.monotonic()
        self._running[id(msg)] = (msg, started)
        self._in_flight.inc()
        try:
            await self.sub.handler(event)
        except asyncio.CancelledError:
            await _quietly(msg.nak())
            raise
        except PermanentError as exc:
            await self._dead_letter(msg, event.type, "PermanentError", str(exc))
        except Exception as exc:
            wait = exc.delay if isinstance(exc, RetryLater) else self._delay_for(attempt)
            if attempt >= self.max_deliveries:
                log.warning("handler failed on its last attempt", exc_info=True)
                await self._dead_letter(msg, event.type, "MaxDeliveries", repr(exc))
                return
            log.warning(
                "handler failed (attempt %d of %d): %r; temporary, retry in %.1f s",
                attempt,
                self.max_deliveries,
                exc,
                wait,
                exc_info=not isinstance(exc, RetryLater),
            )
            metrics.HANDLED.labels(self.durable, event.type, "retry").inc()
            await _quietly(msg.nak(delay=wait))
        else:
            await _quietly(msg.ack())
            metrics.HANDLED.labels(self.durable, event.type, "ack").inc()
        finally:
            del self._running[id(msg)]
            self._in_flight.dec()
            self._seconds.observe(time.monotonic() - started)

    async def _keep_alive(self) -> None:
        """One ticker for all handlers: every message whose handler has run for a third of
        ack_wait gets an in-progress ack, so the server does not hand it to another replica."""
        period = self.ack_wait / 3
        while True:
            await asyncio.sleep(period)
            due = time.monotonic() - period
            for msg, started in list(self._running.values()):
                if started <= due:
                    await _quietly(msg.in_progress())

    async def _dead_letter(self, msg: Msg, ce_type: str, reason: str, error: str) -> None:
        meta = msg.metadata
        headers = {
            **{k: v for k, v in (msg.headers or {}).items() if k != "Nats-Msg-Id"},
            # Deterministic: dead-lettering the same delivery twice stores it once.
            "Nats-Msg-Id": f"dlq:{self.durable}:{meta.sequence.stream}",
            "Hoist-Dlq-Subject": msg.subject,
            "Hoist-Dlq-Consumer": self.durable,
            "Hoist-Dlq-Deliveries": str(meta.num_delivered),
            "Hoist-Dlq-Reason": reason,
            "Hoist-Dlq-Error": error[:2000].replace("\r", " ").replace("\n", " "),
        }
        subject = self.bus.subject(DEADLETTER_SUBJECT.format(consumer=self.durable))
        try:
            await self.bus.js.publish(subject, msg.data, headers=headers, timeout=5)
        except Exception as exc:
            log.error(
                "could not dead-letter %s (%s); it stays pending and returns in %.0f s",
                msg.subject,
                exc,
                self.backoff[-1],
            )
            await _quietly(msg.nak(delay=self.backoff[-1]))
            return
        await _quietly(msg.term())
        metrics.HANDLED.labels(self.durable, ce_type, "deadletter").inc()
        metrics.DEADLETTERED.labels(self.durable, reason).inc()
        log.error(
            "dead-lettered %s after %d deliveries: %s: %s; it waits on %s for a person",
            msg.subject,
            meta.num_delivered,
            reason,
            error,
            subject,
        )


async def _quietly(ack: Awaitable[Any]) -> None:
    """Acks can fail while NATS reconnects; the message then simply comes back later."""
    try:
        await ack
    except Exception as exc:
        log.debug("ack failed: %s", exc)
