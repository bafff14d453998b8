"""The connection to NATS: connect with backoff, declare streams, publish events.

A service holds one ``Bus``. It survives NATS restarts: nats-py reconnects forever with a
wait between attempts and buffers publishes meanwhile; JetStream publishes that fail while
NATS is away raise, and the caller (the outbox relay, a handler) retries them later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as CoreSubscription
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import BaseModel

from shared import envelope as env
from shared.bus import metrics
from shared.catalog import STREAMS, Delivery, EventSpec, Stream
from shared.settings import NatsSettings

log = logging.getLogger("hoist.bus")

MSG_ID_HEADER = "Nats-Msg-Id"
TYPE_HEADER = "Ce-Type"


class BusUnavailable(ConnectionError):
    """NATS is not reachable now; temporary: the caller should retry after a delay."""


@dataclass(frozen=True)
class Published:
    subject: str
    event_id: str
    stream: str | None = None
    sequence: int | None = None
    duplicate: bool = False


class Bus:
    """One NATS connection with JetStream, bound to an installation prefix and a source."""

    def __init__(self, settings: NatsSettings, *, source: str) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.source = source
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._closing = False

    # --- connection ----------------------------------------------------------------------

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise BusUnavailable("not connected to NATS yet")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailable("not connected to NATS yet")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect once; raise ``BusUnavailable`` (temporary) when NATS does not answer.

        Retrying is the caller's: the service runtime retries every start-up step with the
        same backoff and reports on /readyz what it waits for. Once connected, nats-py
        reconnects by itself, forever.
        """
        try:
            self._nc = await nats.connect(**self._options())
        except Exception as exc:  # nats-py raises several unrelated types here
            raise BusUnavailable(f"NATS at {self.settings.url} unreachable: {exc!r}") from exc
        self._js = self._nc.jetstream()
        log.info(
            "connected to NATS at %s",
            self._nc.connected_url.netloc if self._nc.connected_url else "?",
        )

    def _options(self) -> dict[str, Any]:
        s = self.settings

        async def on_error(exc: Exception) -> None:
            log.warning("NATS error: %s", exc)

        async def on_disconnected() -> None:
            if not self._closing:
                log.warning("disconnected from NATS; reconnecting every %.1f s", s.reconnect_wait)

        async def on_reconnected() -> None:
            log.info("reconnected to NATS")

        opts: dict[str, Any] = {
            "servers": s.servers,
            "name": self.source,
            "connect_timeout": s.connect_timeout,
            "reconnect_time_wait": s.reconnect_wait,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        if s.user:
            opts["user"] = s.user
        if s.password:
            opts["password"] = s.password.get_secret_value()
        if s.token:
            opts["token"] = s.token.get_secret_value()
        if s.creds_file:
            opts["user_credentials"] = str(s.creds_file)
        if s.tls_ca_file:
            opts["tls"] = ssl.create_default_context(cafile=str(s.tls_ca_file))
        return opts

    async def ping(self, timeout: float = 2.0) -> None:
        """Check that NATS and JetStream really answer (for /readyz); raises on failure."""
        if not self.connected:
            raise BusUnavailable("not connected to NATS")
        await asyncio.wait_for(self.nc.flush(), timeout)
        await self.js.account_info()

    async def drain(self) -> None:
        """Stop subscriptions, flush what is buffered, close. Safe to call twice."""
        nc, self._nc, self._js = self._nc, None, None
        self._closing = True
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.drain(), timeout=10)
        except Exception as exc:
            log.warning("NATS drain incomplete (%s); closing", exc)
            await nc.close()

    # --- names ---------------------------------------------------------------------------

    def subject(self, relative: str) -> str:
        return f"{self.prefix}.{relative}"

    def stream_name(self, stream: Stream) -> str:
        return f"{self.prefix.upper().replace('-', '_')}_{stream.name}"

    # --- streams -------------------------------------------------------------------------

    async def ensure_streams(self, streams: tuple[Stream, ...] = STREAMS) -> None:
        """Create Hoist's streams, or update them to the declared configuration.

        Idempotent, so every replica of every service runs it at start-up: whichever starts
        first creates the streams, the others find them as declared.
        """
        for stream in streams:
            max_age = (
                stream.max_age.total_seconds()
                if stream.max_age
                else self.settings.stream_max_age_days * 86400
            )
            config = api.StreamConfig(
                name=self.stream_name(stream),
                description=stream.description,
                subjects=[self.subject(s) for s in stream.subjects],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                max_age=max_age,
                num_replicas=self.settings.stream_replicas,
                duplicate_window=self.settings.duplicate_window_seconds,
            )
            try:
                await self.js.add_stream(config)
            except BadRequestError as exc:
                if exc.err_code != 10058:  # "stream name already in use" with another config
                    raise
                await self.js.update_stream(config)

    async def delete_streams(self, streams: tuple[Stream, ...] = STREAMS) -> None:
        """Remove this installation's streams (tests and uninstall only)."""
        for stream in streams:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream_name(stream))

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self,
        spec: EventSpec[Any],
        data: BaseModel,
        *,
        event_id: str | None = None,
    ) -> Published:
        """Publish one event as the catalog says: JetStream (stored, de-duplicated by
        ``event_id``) or core NATS (at most once)."""
        return await self.publish_envelope(
            env.build(spec, data, source=self.source, event_id=event_id), spec.delivery
        )

    async def publish_envelope(
        self, envelope: env.Envelope[Any], delivery: Delivery = Delivery.STREAM
    ) -> Published:
        return await self.publish_raw(
            envelope.subject,
            env.encode(envelope),
            event_id=envelope.id,
            ce_type=envelope.type,
            delivery=delivery,
        )

    async def publish_raw(
        self,
        relative_subject: str,
        body: bytes,
        *,
        event_id: str,
        ce_type: str,
        delivery: Delivery,
    ) -> Published:
        """Publish an already encoded envelope (the outbox relay stores them encoded)."""
        subject = self.subject(relative_subject)
        headers = {MSG_ID_HEADER: event_id, TYPE_HEADER: ce_type}
        if delivery is Delivery.CORE:
            if not self.connected:
                raise BusUnavailable("not connected to NATS")
            await self.nc.publish(subject, body, headers=headers)
            metrics.PUBLISHED.labels(ce_type, "core").inc()
            return Published(subject, event_id)
        try:
            ack = await self.js.publish(subject, body, headers=headers, timeout=5)
        except (
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.errors.NoRespondersError,
        ) as exc:
            raise BusUnavailable(f"JetStream did not confirm {subject}: {exc!r}") from exc
        metrics.PUBLISHED.labels(ce_type, "duplicate" if ack.duplicate else "stored").inc()
        return Published(subject, event_id, ack.stream, ack.seq, bool(ack.duplicate))

    async def subscribe_core(
        self,
        spec: EventSpec[Any],
        handler: Callable[[env.Envelope[Any]], Awaitable[None]],
        **tokens: str,
    ) -> CoreSubscription:
        """Subscribe to a core (at-most-once) event; undecodable messages are logged and
        skipped, since nothing would redeliver them anyway."""
        if spec.delivery is not Delivery.CORE:
            raise ValueError(f"{spec.name} is a JetStream event: declare a Subscription")

        async def on_msg(msg: Msg) -> None:
            try:
                event = env.decode(msg.data)
            except env.EnvelopeError as exc:
                log.warning("dropped undecodable message on %s: %s", msg.subject, exc)
                return
            try:
                await handler(event)
            except Exception:
                log.exception("handler of %s failed", msg.subject)

        return await self.nc.subscribe(self.subject(spec.filter(**tokens)), cb=on_msg)
