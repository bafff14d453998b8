"""Structured logs: one JSON object per line, carrying the correlation ids of the work at hand.

Correlation ids (plan, migration, VM, disk, event, request) live in a context variable, so
every log line written while handling one event or one request carries them without each
call site passing them along; asyncio copies the context into tasks it spawns.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from shared.settings import LogSettings

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "hoist_log_context", default=_EMPTY
)

# Attributes every LogRecord has; anything else passed through ``extra=`` is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add correlation ids to every log line written inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, str]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: the same fields, one readable line."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = _context.get()
        return line + (" [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]" if ctx else "")


def configure(service: str, settings: LogSettings) -> None:
    """Route every logger (ours, uvicorn's, the libraries') to one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service) if settings.format == "json" else TextFormatter(service)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # nats-py and asyncpg are chatty at DEBUG about things we already log our way.
    for noisy in ("nats", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(settings.level)))
