"""What a source (oVirt, OpenStack, a KubeVirt target) implements, and what it is given.

A ``Source`` is one provider's client. The collector loop (``collecting.py``) owns its
lifecycle: ``probe()`` once per (re)connection, ``load()`` for a full inventory, then
``refresh()`` every interval; the store turns each ``Batch`` into revisions, concerns and
events. A source never touches the database, NATS or Kubernetes Secrets: it gets its
provider's non-secret description, the Secret's keys, and a ``SourceContext`` with the
bounded thread pool its blocking SDK calls must go through (``shared.sources.blocking``).

Errors say what happens next: ``ConnectionProblem`` with a ``Reason``
(``shared.sources.problems``, re-exported here) (the provider turns
ConnectionFailed with that reason; temporary ones are retried with backoff, permanent ones
wait for the user to fix the provider). Any other exception from ``refresh()`` is treated
as temporary and retried.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from services.inventory.items import Batch, Concern, Item
from shared.payloads import ProviderType
from shared.settings import InventorySettings, KubeSettings
from shared.sources.blocking import Blocking, Calls
from shared.sources.problems import (
    FIELD_OF,
    PERMANENT,
    ConnectionProblem,
    Reason,
    check_tls,
    host_port,
)

__all__ = [
    "FIELD_OF",
    "PERMANENT",
    "Blocking",
    "Calls",
    "ConnectionProblem",
    "ProviderInfo",
    "Reason",
    "Source",
    "SourceContext",
    "check_tls",
    "host_port",
]


@dataclass(frozen=True)
class ProviderInfo:
    """A provider without its secrets."""

    id: str
    name: str
    type: ProviderType
    url: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceContext:
    calls: Calls
    settings: InventorySettings
    kube: KubeSettings
    """How to reach the cluster Hoist runs in (a ``kubevirt`` provider without URL)."""


class Source(ABC):
    """One provider's client; subclasses live in ``sources/<type>/``."""

    type: ClassVar[ProviderType]

    def __init__(
        self, provider: ProviderInfo, secret: Mapping[str, str], context: SourceContext
    ) -> None:
        self.provider = provider
        self.secret = secret
        self.context = context

    @classmethod
    @abstractmethod
    def check_definition(cls, url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
        """Static checks before any connection: ``[(field, problem)]``, empty when fine.

        ``field`` is ``url`` or ``credentials.<key>``; missing or contradictory keys
        (``username`` without ``password``) are reported here, all at once.
        """

    @abstractmethod
    async def probe(self) -> dict[str, Any]:
        """Connect, authenticate and check the API version; raise ``ConnectionProblem``.

        Returns facts worth showing (product, version, ...). Must not take longer than
        ``context.settings.connect_timeout_seconds`` per network step.
        """

    @abstractmethod
    async def load(self) -> Batch:
        """The whole inventory: a batch ``complete`` for every kind the type collects."""

    @abstractmethod
    async def refresh(self) -> Batch:
        """What changed since the last ``load()`` or ``refresh()``."""

    def conditions(self, facts: Mapping[str, Any]) -> list[tuple[str, bool, str, str]]:
        """Provider conditions besides ``Connected`` that a probe's facts decide:
        ``(type, ok, reason, message)``; a problem the provider works despite, which a
        connection failure would hide."""
        return []

    def assess(self, vm: Item) -> list[Concern]:
        """Validation concerns of one VM, from its ``data`` alone (the collector embeds in a
        VM what its concerns need: its disks' status, NIC models, ...)."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called when the provider is deleted or reconnects."""
