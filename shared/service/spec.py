"""What a service tells the runner about itself; the runner supplies everything else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter
from sqlalchemy import MetaData

from shared.bus import Subscription

if TYPE_CHECKING:
    from shared.service.runtime import Runtime


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    summary: str
    port: int
    routes: tuple[str, ...]
    """URL prefixes this service answers under; an ingress routes each to the service."""
    router: APIRouter
    metadata: MetaData
    migrations: Path
    subscriptions: Callable[[Runtime], Sequence[Subscription]]
    version: str = "0.1.0"
    domain: Callable[[Runtime], AbstractAsyncContextManager[object]] | None = None
    """The service's own long-lived parts (clients, background loops): entered once NATS
    and PostgreSQL are up, exited first on shutdown; what it yields is ``runtime.domain``."""

    @property
    def schema(self) -> str:
        assert self.metadata.schema, f"{self.name}: metadata needs a schema"
        return self.metadata.schema

    @property
    def base(self) -> str:
        """Where the service's own operational routes live (docs, status, dead letters)."""
        return f"/api/v1/{self.name}"
