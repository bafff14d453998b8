"""Operational API every service shares: its status, and the messages it gave up on.

Dead letters are for a person: they say which subject, how many attempts and why; once the
cause is fixed (a provider reachable again, a bug deployed away) the person replays them to
their original subject, where the service's consumer picks them up as new messages.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from shared.catalog import DEADLETTER, DEADLETTER_SUBJECT
from shared.db import migrating
from shared.service.answers import errors
from shared.service.errors import Conflict, NotFound, Unavailable
from shared.service.runtime import Runtime

#: JetStream numbers a stream's messages 1, 2, ... as unsigned 64-bit integers: a number
#: outside that range is refused (422) before NATS is asked, which would fail on it.
MAX_SEQUENCE = 2**64 - 1

SequencePath = Annotated[
    int, Path(ge=1, le=MAX_SEQUENCE, description="The dead letter's stream sequence.")
]


class SubscriptionStatus(BaseModel):
    name: str
    stream: str
    events: list[str]
    handled: bool
    declared: bool = False
    in_flight: int = 0
    pending: int | None = None
    ack_pending: int | None = None
    redelivered: int | None = None


class ServiceStatus(BaseModel):
    service: str
    version: str
    phase: str
    database_revision: str | None
    database_head: str | None
    outbox_pending: int | None
    subscriptions: list[SubscriptionStatus]


class DeadLetter(BaseModel):
    sequence: int
    time: datetime | None
    consumer: str
    original_subject: str
    deliveries: int
    reason: str
    error: str
    event: dict[str, Any] | None
    raw: str | None = None


class Replayed(BaseModel):
    sequence: int
    subject: str
    event_id: str | None


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def build_router(base: str) -> APIRouter:
    router = APIRouter(prefix=base, tags=["operations"])

    @router.get("/status", response_model=ServiceStatus)
    async def service_status(request: Request) -> ServiceStatus:
        """Start-up phase, schema revision, outbox backlog and each subscription's lag."""
        rt = _runtime(request)
        try:
            revision = await migrating.current(rt.engine, rt.spec.schema)
            pending: int | None = await rt.outbox.pending()
        except Exception:
            revision, pending = None, None
        subs = []
        for consumer in rt.consumers:
            try:
                subs.append(SubscriptionStatus(**await consumer.info()))
            except Exception:
                subs.append(
                    SubscriptionStatus(
                        name=consumer.durable,
                        stream=consumer.stream_name,
                        events=sorted(consumer.sub.types),
                        handled=consumer.sub.handler is not None,
                    )
                )
        return ServiceStatus(
            service=rt.spec.name,
            version=rt.spec.version,
            phase=rt.phase,
            database_revision=revision,
            database_head=migrating.head(rt.spec.migrations),
            outbox_pending=pending,
            subscriptions=subs,
        )

    @router.get("/deadletters", response_model=list[DeadLetter])
    async def dead_letters(
        request: Request,
        after: int = Query(
            0, ge=0, le=MAX_SEQUENCE - 1, description="Return messages after this sequence."
        ),
        limit: int = Query(50, ge=1, le=500),
    ) -> list[DeadLetter]:
        """Messages this service's consumers gave up on, oldest first."""
        rt = _runtime(request)
        _require_bus(rt)
        stream = rt.bus.stream_name(DEADLETTER)
        own = {c.durable for c in rt.consumers}
        found: list[DeadLetter] = []
        seq = after + 1
        while len(found) < limit and seq <= MAX_SEQUENCE:
            try:
                msg = await rt.bus.js.get_msg(stream, seq, subject=_filter(rt), next=True)
            except NotFoundError:
                break
            if (msg.headers or {}).get("Hoist-Dlq-Consumer") in own:
                found.append(_dead_letter(msg))
            seq = (msg.seq or seq) + 1
        return found

    @router.post(
        "/deadletters/{sequence}/replay",
        response_model=Replayed,
        status_code=status.HTTP_202_ACCEPTED,
        responses=errors(
            404, 409, e404="No dead letter of this service", e409="It has no original subject"
        ),
    )
    async def replay(request: Request, sequence: SequencePath) -> Replayed:
        """Publish a dead letter again on its original subject, as a fresh delivery."""
        rt = _runtime(request)
        _require_bus(rt)
        msg = await _get_own(rt, sequence)
        headers = msg.headers or {}
        original = headers.get("Hoist-Dlq-Subject")
        if not original:
            raise Conflict(["path", "sequence"], "dead letter has no original subject")
        event_id = headers.get("Nats-Msg-Id")
        replay_headers = {
            k: v
            for k, v in headers.items()
            if not k.startswith("Hoist-Dlq-") and k != "Nats-Msg-Id"
        }
        # A new message id: the original id is still in the duplicate window of its stream.
        replay_headers["Nats-Msg-Id"] = f"replay:{sequence}:{event_id}"
        await rt.bus.js.publish(original, msg.data or b"", headers=replay_headers, timeout=5)
        await rt.bus.js.delete_msg(rt.bus.stream_name(DEADLETTER), sequence)
        return Replayed(sequence=sequence, subject=original, event_id=event_id)

    @router.delete(
        "/deadletters/{sequence}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses=errors(404, e404="No dead letter of this service"),
    )
    async def discard(request: Request, sequence: SequencePath) -> None:
        """Forget a dead letter a person has dealt with."""
        rt = _runtime(request)
        _require_bus(rt)
        await _get_own(rt, sequence)
        await rt.bus.js.delete_msg(rt.bus.stream_name(DEADLETTER), sequence)

    return router


def _require_bus(rt: Runtime) -> None:
    if not rt.bus.connected:
        raise Unavailable("not connected to NATS; try again when /readyz answers 200", 5)


def _filter(rt: Runtime) -> str:
    return rt.bus.subject(DEADLETTER_SUBJECT.format(consumer="*"))


async def _get_own(rt: Runtime, sequence: int) -> Any:
    own = {c.durable for c in rt.consumers}
    try:
        msg = await rt.bus.js.get_msg(rt.bus.stream_name(DEADLETTER), sequence)
    except NotFoundError:
        msg = None
    if msg is None or (msg.headers or {}).get("Hoist-Dlq-Consumer") not in own:
        raise NotFound(f"no dead letter {sequence} of this service")
    return msg


def _dead_letter(msg: Any) -> DeadLetter:
    headers = msg.headers or {}
    data: bytes = msg.data or b""
    try:
        event = json.loads(data)
        raw = None
    except ValueError:
        event, raw = None, data[:4096].decode(errors="replace")
    return DeadLetter(
        sequence=msg.seq,
        time=msg.time,
        consumer=headers.get("Hoist-Dlq-Consumer", ""),
        original_subject=headers.get("Hoist-Dlq-Subject", ""),
        deliveries=int(headers.get("Hoist-Dlq-Deliveries", "0") or 0),
        reason=headers.get("Hoist-Dlq-Reason", ""),
        error=headers.get("Hoist-Dlq-Error", ""),
        event=event if isinstance(event, dict) else None,
        raw=raw,
    )
