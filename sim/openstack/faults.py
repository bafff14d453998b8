"""Faults the simulated cloud can inject, switched on by tests (or ``POST /sim/faults``).

Each one stands for something real clouds do to a migration:

* ``stuck_saving``: an image upload (``createImage`` or ``os-volume_upload_image``) sends
  half of the data, then stalls ``stuck_saving_seconds`` (``None``: until the fault is
  cleared) before the rest. Glance shows the image in ``saving`` meanwhile, as it does for a
  slow or hung backend.
* ``fail_next``: the next N requests to a service (``compute``, ``volume``, ``network``,
  ``image``) answer ``status`` (a 5xx burst from an overloaded API or load balancer).
* ``revoke_token_after_bytes``: while an image is downloaded, after that many bytes the
  caller's token is revoked in the real Keystone and the connection is cut: a token that
  expires mid-transfer. Glance itself then refuses the token (real keystonemiddleware).
* ``volume_quota``: Cinder refuses new volumes with 413 ``overLimit`` once this many exist.
* ``reset_after_bytes``: a download is cut after that many bytes, ``resets`` times.
* ``lose_uploads``: the next N image uploads break halfway, and their image is left behind
  (``queued`` or ``saving``, never to change): Cinder or Nova deletes the image of a failed
  copy, and here that delete failed too. The volume (or server) is free again meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ConnectionResetFault(Exception):
    """Raised inside a streaming response: the server drops the connection mid-body."""


@dataclass
class Faults:
    stuck_saving: bool = False
    stuck_saving_seconds: float | None = None
    fail_next: dict[str, int] = field(default_factory=dict)
    fail_status: int = 503
    revoke_token_after_bytes: int | None = None
    reset_after_bytes: int | None = None
    resets: int = 1
    volume_quota: int | None = None
    lose_uploads: int = 0
    fail_uploads: int = 0
    revoke_tokens: bool = False
    # What happened, for tests to assert on.
    injected: list[str] = field(default_factory=list)

    def clear(self) -> None:
        keep = self.injected
        self.__init__()  # type: ignore[misc]
        self.injected = keep

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key) or key == "injected":
                raise ValueError(f"unknown fault {key!r}")
            setattr(self, key, value)

    def take_failure(self, service: str) -> int | None:
        """The status to answer instead of serving, if a burst for ``service`` is on."""
        left = self.fail_next.get(service, 0)
        if left <= 0:
            return None
        self.fail_next[service] = left - 1
        self.injected.append(f"{service}:{self.fail_status}")
        return self.fail_status

    def take_reset(self) -> int | None:
        """The byte count after which to cut this download, if a reset is due."""
        if self.reset_after_bytes is None or self.resets <= 0:
            return None
        self.resets -= 1
        return self.reset_after_bytes

    def take_lost_upload(self) -> bool:
        """Whether this upload is one to break and leave its image behind."""
        if self.lose_uploads <= 0:
            return False
        self.lose_uploads -= 1
        return True

    def take_failed_upload(self) -> bool:
        """Whether this upload is one Glance refuses (its image is then deleted)."""
        if self.fail_uploads <= 0:
            return False
        self.fail_uploads -= 1
        return True

    def take_revoke_all(self) -> bool:
        due, self.revoke_tokens = self.revoke_tokens, False
        return due

    def take_revoke(self) -> int | None:
        after, self.revoke_token_after_bytes = self.revoke_token_after_bytes, None
        return after
