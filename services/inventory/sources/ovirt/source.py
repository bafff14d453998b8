"""``OvirtSource``: the oVirt engine as an inventory source (see the modules it delegates to).

- ``definition``: checks of a definition before connecting;
- ``shared.sources.ovirt_connect``: TLS, SSO and the pool of ovirtsdk4 connections;
- ``collecting``: the full load and the event-driven refresh;
- ``normalizing``: SDK objects -> items;
- ``concerns``: validation concerns of a VM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from services.inventory.items import Batch, Concern, Item
from services.inventory.sources.contract import ProviderInfo, Source, SourceContext
from services.inventory.sources.ovirt import concerns, definition
from services.inventory.sources.ovirt.collecting import Collector
from shared.payloads import ProviderType
from shared.sources.ovirt_connect import EngineClient


class OvirtSource(Source):
    type: ClassVar[ProviderType] = ProviderType.OVIRT

    def __init__(
        self, provider: ProviderInfo, secret: Mapping[str, str], context: SourceContext
    ) -> None:
        super().__init__(provider, secret, context)
        self.client = EngineClient(
            provider.url,
            secret,
            context.calls,
            connect_timeout=context.settings.connect_timeout_seconds,
            call_timeout=context.settings.call_timeout_seconds,
            size=context.calls.pool.per_provider,
        )
        self.collector = Collector(self.client)

    @classmethod
    def check_definition(cls, url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
        return definition.check_definition(url, secret)

    async def probe(self) -> dict[str, Any]:
        return await self.client.open()

    async def load(self) -> Batch:
        return await self.collector.load()

    async def refresh(self) -> Batch:
        return await self.collector.refresh()

    @property
    def last_event(self) -> int | None:
        """The id of the newest engine event already reflected in what was returned."""
        return self.collector.last_event

    def assess(self, vm: Item) -> list[Concern]:
        return concerns.assess(vm)

    async def close(self) -> None:
        await self.client.close()
