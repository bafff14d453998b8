"""What the inventory's API answers, typed for its OpenAPI document: a provider as
``providers.as_public`` shows it, a connection test, a server's certificate, and the objects
of a provider's collections as ``querying.view`` shows them.

Routes build their answers as dicts and send them as they are (a ``JSONResponse`` when it
carries an ``ETag``), so a model here documents the JSON; the fuzz test
(``tests/test_fuzz.py``) and the service's tests check real answers against these schemas.
Unknown keys are allowed, so a client of an older schema reads a newer answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.payloads import ProviderPhase, ProviderType
from shared.service.answers import Answer

CategoryName = Literal["Critical", "Warning", "Information"]


class SecretRef(Answer):
    namespace: str
    name: str


class ProviderCondition(Answer):
    type: str
    status: bool
    reason: str
    message: str
    last_transition: str | None = Field(description="RFC 3339.")


class Certificate(Answer):
    """A server's leaf certificate (its PEM only where a user must confirm it)."""

    sha256Fingerprint: str
    sha1Fingerprint: str
    subject: str
    issuer: str
    notBefore: str
    notAfter: str
    dnsNames: list[str]
    ipAddresses: list[str]
    selfSigned: bool
    pem: str | None = None


class ProviderStatus(Answer):
    phase: ProviderPhase
    conditions: list[ProviderCondition]
    lastRefresh: str | None = Field(description="RFC 3339; null: never refreshed.")
    certificate: Certificate | None
    facts: dict[str, Any] = Field(description="What the source said about itself.")
    counts: dict[str, int] = Field(description="Objects per collection.")


class Provider(Answer):
    """A provider, never its credentials (those are in the Secret ``secret`` names)."""

    id: str
    name: str
    type: ProviderType
    url: str
    tls: dict[str, Any]
    settings: dict[str, Any]
    secret: SecretRef
    status: ProviderStatus
    collections: list[str] = Field(
        description="What /providers/{ref}/{collection} serves for this provider's type."
    )
    revision: int
    createdAt: str
    updatedAt: str


class ProviderPage(Answer):
    items: list[Provider]


class DryRun(Answer):
    connection: Literal["ok"]
    facts: dict[str, Any] = Field(description="What the source said about itself.")


class ServerCertificate(Answer):
    url: str
    certificate: Certificate
    trustedBySystem: bool
    reason: str = Field(description="Why the system CAs do not trust it; empty if they do.")


class Refreshing(Answer):
    id: str
    accepted: bool


class InventoryObject(Answer):
    """An object of a collection (a VM, a disk, a network...): ``data`` and ``concerns``
    from ``detail=1``, the source's ``raw`` answer from ``detail=2``."""

    id: str
    kind: str
    name: str
    status: str | None
    parent: str | None
    revision: int
    concernCount: int
    concernLevel: CategoryName | None
    data: dict[str, Any] | None = None
    concerns: list[dict[str, Any]] | None = None
    raw: Any = None


class ObjectPage(Answer):
    items: list[InventoryObject]
    next: str | None = Field(description="The cursor of the next page; null: the last page.")
    total: int = Field(description="The objects of every page that match the filters.")
    revision: int = Field(description="The collection's revision (the ETag's first part).")


#: The ``ETag`` of a conditional read: 304 when ``If-None-Match`` is still it.
TAG = {"description": "Send it as If-None-Match to be answered 304", "schema": {"type": "string"}}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: If-None-Match is the ETag", "headers": {"ETag": TAG}}
}
