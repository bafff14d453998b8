"""One vocabulary for what went wrong: what (a reason), for whom (a message), and what next
(whether, and after how long, trying again can help).

Why one: a bus handler, a pipeline step, a provider probe and an API route each had their
own exceptions for the same three facts, and each caller sorted them its own way. Every
Hoist error now answers the same questions:

- ``reason``: machine-readable, CamelCase (``AuthRefused``, ``TargetConflict``);
- ``message``: a sentence for a person, with no secret in it;
- ``retry_after``: ``None`` when retrying the same thing fails the same way (a person must
  act), else the seconds to wait before trying again.

Who treats them how: the bus dead-letters a ``PermanentError`` at once and redelivers a
``RetryLater`` after its ``delay`` (``shared.bus``); the API answers ``ApiError``s with
their status (``shared.service.errors``). This module is stdlib-only at import, so that any
process, however small, can raise these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.payloads import ErrorInfo

__all__ = ["HoistError", "PermanentError", "RetryLater"]


class HoistError(Exception):
    """What failed (``reason``), for a person (``message``), and whether and when to try
    again: ``retry_after`` is ``None`` for permanent, else seconds. ``str()`` is the message.
    """

    def __init__(self, message: str, *, reason: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """True: retrying the same thing fails the same way; a person must act."""
        return self.retry_after is None

    def info(self) -> ErrorInfo:
        """The error as the payloads carry it (a step's or a provider's error)."""
        from shared.payloads import ErrorInfo  # pydantic: only for those that report

        return ErrorInfo(reason=self.reason, message=self.message, permanent=self.permanent)


class PermanentError(HoistError):
    """Can never succeed as asked: do not retry (a bus message is dead-lettered at once)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message, reason=reason, retry_after=None)


class RetryLater(HoistError):
    """Temporary: try again after ``delay`` seconds (e.g. a PVC not bound yet)."""

    def __init__(self, message: str, delay: float, *, reason: str = "") -> None:
        super().__init__(message, reason=reason, retry_after=delay)
        self.delay = delay
