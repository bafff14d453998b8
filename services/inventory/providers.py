"""Providers: their definition, validation, connection test, and status.

A provider is created only whole: the definition is checked (every problem at once), the
connection is tested with the given credentials (unless the user says not to), then the
row and the credentials Secret are written together. If the Secret cannot be written the
row is rolled back; if the commit fails after the Secret was written, the Secret is removed
(and an orphan left by a crash between the two is swept at start-up), so nothing is ever
half-created.

The database never holds a credential: the row names the Secret; responses show what trust
was chosen (CA given, pinned fingerprint, insecure) and never a password or a CA's PEM.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.inventory import db
from services.inventory.items import COLLECTIONS, KINDS_BY_TYPE
from services.inventory.sources import source_class
from services.inventory.sources.contract import ConnectionProblem, ProviderInfo
from shared import catalog
from shared.db.messaging import Outbox
from shared.ids import is_uuid
from shared.payloads import Condition, ProviderPhase, ProviderStatusChanged, ProviderType
from shared.populator.trust import FlagError, normalize_fingerprint, parse_flag
from shared.service.errors import Invalid, NotFound
from shared.urls import url_problem

NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Keys the API sets from ``tls`` and ``url``; credentials may not smuggle them in.
RESERVED_KEYS = frozenset({"cacert", "fingerprint", "insecureSkipVerify", "url"})
KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")  # a Secret data key


class TlsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ca_cert: str | None = Field(
        None, alias="caCert", description="PEM bundle to verify the server with."
    )
    fingerprint: str | None = Field(
        None,
        description="SHA-256 (or SHA-1) of the server certificate to pin (colons optional).",
    )
    insecure_skip_verify: bool = Field(
        False,
        alias="insecureSkipVerify",
        description="Do not verify the server at all. Only when set explicitly "
        "(true/1/yes/on; false/0/no/off).",
    )

    @field_validator("insecure_skip_verify", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool:
        try:
            return parse_flag(value)
        except FlagError as exc:
            raise ValueError(exc.reason) from None

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        return normalize_fingerprint(value) if value else None

    @field_validator("ca_cert")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if not value:
            return None
        from cryptography import x509

        try:
            certs = x509.load_pem_x509_certificates(value.encode())
        except ValueError:
            raise ValueError("not a PEM certificate bundle") from None
        if not certs:
            raise ValueError("the bundle holds no certificate")
        return value.strip() + "\n"

    @model_validator(mode="after")
    def _one_trust(self) -> TlsSpec:
        if self.insecure_skip_verify and (self.ca_cert or self.fingerprint):
            raise ValueError(
                "insecureSkipVerify cannot be combined with caCert or fingerprint: choose one"
            )
        return self

    def secret_keys(self) -> dict[str, str]:
        keys: dict[str, str] = {}
        if self.ca_cert:
            keys["cacert"] = self.ca_cert
        if self.fingerprint:
            keys["fingerprint"] = self.fingerprint
        if self.insecure_skip_verify:
            keys["insecureSkipVerify"] = "true"
        return keys

    def public(self) -> dict[str, Any]:
        mode = (
            "fingerprint"
            if self.fingerprint
            else "insecure"
            if self.insecure_skip_verify
            else "ca"
            if self.ca_cert
            else "system"
        )
        return {
            "mode": mode,
            "caCertProvided": bool(self.ca_cert),
            "fingerprint": self.fingerprint,
            "insecureSkipVerify": self.insecure_skip_verify,
        }


def check_url(url: str) -> str:
    """``url`` if it is empty (kubevirt: the cluster Hoist runs in) or names a server; a
    ``ValueError`` (422 at ``url``) if not: a bad port, an unclosed IPv6 bracket, no host.
    What each provider type wants of its URL beyond that, its source checks."""
    problem = url_problem(url) if url else None
    if problem:
        raise ValueError(problem)
    return url


class ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str = Field("", max_length=1000)
    refresh_seconds: float | None = Field(
        None,
        alias="refreshSeconds",
        ge=1,
        le=3600,
        description="This provider's refresh interval; default HOIST_INVENTORY_REFRESH_SECONDS.",
    )


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, description="DNS-1123 label, unique among providers.")
    type: ProviderType
    url: str = Field(
        "",
        max_length=2048,
        description="oVirt: https://engine/ovirt-engine/api; OpenStack: the Keystone v3 URL; "
        "kubevirt: the API server URL, or empty for the cluster Hoist runs in.",
    )
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="Secret keys as Forklift names them (oVirt: user, password; OpenStack: "
        "username, password, projectName, domainName, regionName, or application "
        "credentials, or token; remote kubevirt: token or kubeconfig).",
    )
    tls: TlsSpec = Field(default_factory=TlsSpec)
    settings: ProviderSettings = Field(default_factory=ProviderSettings)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("credentials")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if not KEY.match(k) or k in RESERVED_KEYS)
        if bad:
            raise ValueError(
                f"keys {bad} are not allowed here (Secret key syntax; TLS goes in `tls`, "
                "the URL in `url`)"
            )
        return value


class ProviderUpdate(BaseModel):
    """Fields to change; ``credentials`` given replaces the whole set."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    credentials: dict[str, str] | None = None
    tls: TlsSpec | None = None
    settings: ProviderSettings | None = None

    _url = field_validator("url")(classmethod(lambda cls, v: None if v is None else check_url(v)))
    _keys = field_validator("credentials")(
        classmethod(lambda cls, v: None if v is None else ProviderCreate._keys(v))
    )


def secret_data(url: str, credentials: Mapping[str, str], tls: TlsSpec) -> dict[str, str]:
    data = dict(credentials) | tls.secret_keys()
    if url:
        data["url"] = url
    return data


def check_definition(
    ptype: ProviderType, url: str, credentials: Mapping[str, str], tls: TlsSpec
) -> None:
    """Raise ``Invalid`` with every static problem of a definition."""
    problems: list[tuple[list[str | int], str, str]] = []
    for fld, message in source_class(ptype).check_definition(
        url, secret_data(url, credentials, tls)
    ):
        loc: list[str | int] = ["body", *fld.split(".", 1)]
        problems.append((loc, "value_error.provider", message))
    if problems:
        raise Invalid(problems)


def connection_failed(problem: ConnectionProblem) -> Invalid:
    """A failed connection test, as the API answers it: the field at fault, and the server's
    certificate (when one was seen) for the user to confirm."""
    return Invalid(
        [(["body", problem.field], problem.reason.value, problem.message)],
        certificate=problem.certificate,
    )


def new_id() -> str:
    return str(uuid.uuid4())


def secret_name(provider_id: str) -> str:
    return f"hoist-provider-{provider_id}"


def info_of(row: Any) -> ProviderInfo:
    return ProviderInfo(
        id=row["id"],
        name=row["name"],
        type=ProviderType(row["type"]),
        url=row["url"],
        settings=row["settings"] or {},
    )


def as_public(row: Any) -> dict[str, Any]:
    """The API's view of a provider: no secret, ever."""
    cert = row["certificate"]
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "url": row["url"],
        "tls": row["tls"],
        "settings": row["settings"],
        "secret": {"namespace": row["secret_namespace"], "name": row["secret_name"]},
        "status": {
            "phase": row["phase"],
            "conditions": row["conditions"],
            "lastRefresh": row["last_refresh"].isoformat() if row["last_refresh"] else None,
            "certificate": {k: v for k, v in cert.items() if k != "pem"} if cert else None,
            "facts": row["facts"],
            "counts": row["counts"],
        },
        # What ``/providers/{ref}/{collection}`` serves for this type, so a client lists
        # them rather than knowing each type's kinds.
        "collections": [COLLECTIONS[k] for k in KINDS_BY_TYPE[ProviderType(row["type"])]],
        "revision": row["revision"],
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


async def find(conn: AsyncConnection | AsyncSession, ref: str, *, lock: bool = False) -> Any:
    """A provider by id or by name; ``NotFound`` otherwise. ``lock`` holds its row until
    the transaction ends (a delete waits for a batch being stored, and the other way)."""
    p = db.providers
    column = p.c.id if is_uuid(ref) else p.c.name
    query = select(p).where(column == ref)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no provider {ref!r}")
    return row


def condition(
    ctype: str, ok: bool, reason: str = "", message: str = "", since: datetime | None = None
) -> dict[str, Any]:
    return Condition(
        type=ctype,
        status=ok,
        reason=reason,
        message=message,
        last_transition=since or datetime.now(UTC),
    ).model_dump(mode="json")


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping the transition time of those whose status,
    reason and message did not change (so "since" means since it became so)."""
    by_type = {c["type"]: c for c in old}
    for c in new:
        before = by_type.get(c["type"])
        if before and all(before.get(k) == c.get(k) for k in ("status", "reason", "message")):
            continue
        by_type[c["type"]] = c
    return sorted(by_type.values(), key=lambda c: str(c["type"]))


async def set_status(
    session: AsyncSession,
    outbox: Outbox,
    provider_id: str,
    *,
    phase: ProviderPhase | None = None,
    conditions: list[dict[str, Any]] | None = None,
    refreshed: bool = False,
    **fields: Any,
) -> bool:
    """Update a provider's status in ``session``; announce it when phase or conditions
    changed. Returns whether anything visible changed."""
    p = db.providers
    row = (
        (await session.execute(select(p).where(p.c.id == provider_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        return False
    values: dict[str, Any] = dict(fields)
    if refreshed:
        values["last_refresh"] = func.now()
    merged = merge_conditions(row["conditions"], conditions or [])
    visible = (phase is not None and phase.value != row["phase"]) or merged != row["conditions"]
    visible |= any(row[k] != v for k, v in fields.items())
    if visible:
        values |= {
            "phase": (phase or ProviderPhase(row["phase"])).value,
            "conditions": merged,
            "revision": db.revision_seq.next_value(),
            "updated_at": func.now(),
        }
    if not values:
        return False
    updated = (
        (await session.execute(update(p).where(p.c.id == provider_id).values(values).returning(p)))
        .mappings()
        .one()
    )
    if visible and (phase is not None or conditions):
        await outbox.add(
            session,
            catalog.PROVIDER_STATUS,
            ProviderStatusChanged(
                provider_id=provider_id,
                provider_type=ProviderType(updated["type"]),
                name=updated["name"],
                phase=ProviderPhase(updated["phase"]),
                conditions=[Condition(**c) for c in updated["conditions"]],
                last_refresh=updated["last_refresh"],
                revision=updated["revision"],
            ),
            event_id=f"provider-{provider_id}-{updated['revision']}",
        )
    return bool(visible)
