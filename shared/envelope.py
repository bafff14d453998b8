"""The envelope every Hoist event travels in: CloudEvents 1.0 attributes around a payload.

It is a structured-mode CloudEvent in JSON, so generic CloudEvents tooling can read it.
Correlation ids (plan, migration, VM, disk) are CloudEvents extension attributes, lifted from
the payload when it has them, so a subscriber can route or log without knowing the payload.

``id`` is also the JetStream ``Nats-Msg-Id``: a producer that may publish the same fact twice
(a retry after a crash) passes a deterministic id, and JetStream drops the second copy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.catalog import EventSpec, spec_for

P = TypeVar("P")
M = TypeVar("M", bound=BaseModel)

CORRELATION_FIELDS = ("plan_id", "migration_id", "vm_id", "disk_id")
"""Payload fields lifted into the envelope (as ``planid``, ``migrationid``, ...)."""


class Envelope(BaseModel, Generic[P]):
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=256)
    type: str
    source: str = Field(description="The producing service, e.g. /hoist/planner.")
    time: datetime
    subject: str = Field(description="The NATS subject, without the installation prefix.")
    datacontenttype: Literal["application/json"] = "application/json"
    schemaversion: int = Field(ge=1)
    planid: str | None = None
    migrationid: str | None = None
    vmid: str | None = None
    diskid: str | None = None
    data: P

    @property
    def correlation(self) -> dict[str, str]:
        """The correlation ids that are set, keyed by their payload names (for logs)."""
        pairs = {
            "plan_id": self.planid,
            "migration_id": self.migrationid,
            "vm_id": self.vmid,
            "disk_id": self.diskid,
        }
        return {k: v for k, v in pairs.items() if v}


class EnvelopeError(ValueError):
    """A message that is not a Hoist event we understand; retrying cannot fix it."""


_ENVELOPES: dict[type[Any], type[Envelope[Any]]] = {}


def envelope_of(payload: type[Any]) -> type[Envelope[Any]]:
    """The parametrized envelope class of a payload type (built once: it is hot)."""
    cls = _ENVELOPES.get(payload)
    if cls is None:
        cls = _ENVELOPES[payload] = Envelope[payload]  # type: ignore[valid-type]
    return cls


def build(
    spec: EventSpec[M],
    data: M,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Envelope[M]:
    """Wrap a payload; ``event_id`` defaults to a random one (pass a deterministic id when the
    same fact may be published again, so JetStream de-duplicates it)."""
    if not isinstance(data, spec.payload):
        raise TypeError(f"{spec.name} takes {spec.payload.__name__}, not {type(data).__name__}")
    if event_id is not None and not 0 < len(event_id) <= 256:
        raise ValueError("event ids are 1 to 256 characters")
    ids: dict[str, Any] = {
        name.replace("_", ""): getattr(data, name, None) for name in CORRELATION_FIELDS
    }
    # Every part is already valid (the payload was validated when it was made), so the
    # envelope is assembled without validating it again: publishing is a hot path.
    return envelope_of(spec.payload).model_construct(
        id=event_id or str(uuid.uuid4()),
        type=spec.ce_type,
        source=source,
        time=time or datetime.now(UTC),
        subject=spec.render(data),
        schemaversion=spec.version,
        data=data,
        **ids,
    )


def encode(envelope: Envelope[Any]) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes, ce_type: str | None = None) -> Envelope[BaseModel]:
    """Parse and validate a message against the catalog; raises ``EnvelopeError``.

    ``ce_type`` (the ``Ce-Type`` header) lets the typed model parse the bytes in one pass;
    without it, or when it is not in the catalog, the envelope is read generically first.
    """
    spec = spec_for(ce_type) if ce_type else None
    if spec is None:
        try:
            head = Envelope[dict[str, Any]].model_validate_json(raw)
        except ValidationError as exc:
            raise EnvelopeError(f"not a Hoist event envelope: {_first_error(exc)}") from exc
        spec = spec_for(head.type)
        if spec is None:
            raise EnvelopeError(f"unknown event type {head.type!r}")
    try:
        event = envelope_of(spec.payload).model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(f"{spec.ce_type}: invalid payload: {_first_error(exc)}") from exc
    if event.type != spec.ce_type:  # a header that lies about the body
        return decode(raw)
    return event


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']} ({exc.error_count()} error(s))"
