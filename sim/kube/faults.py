"""Faults a test can inject into a running simulated cluster.

They are the failures Hoist must survive in production: a provisioner that fails or is
slow, a populator pod killed mid-copy, an API server that answers 5xx or 429 for a share of
requests, and watches cut off under a client. Each is switched on and off at run time, from
a test in the same process or over HTTP (`/sim/faults`) for a cluster in another process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProvisioningFault:
    #: When set, provisioning fails with this message (an event, the claim stays Pending).
    fail: str | None = None
    #: Seconds to wait before a volume is provisioned.
    delay: float = 0.0


@dataclass
class Faults:
    #: Share of API requests (0..1) answered with `http_error_code` instead of being served.
    http_error_rate: float = 0.0
    http_error_code: int = 503
    #: Seconds a 429 asks the client to wait (Retry-After).
    retry_after: int = 1
    #: Only requests whose path contains this text are hit (empty: all requests).
    http_path_filter: str = ""
    #: StorageClass name ("*" for all) -> what goes wrong when provisioning from it.
    provisioning: dict[str, ProvisioningFault] = field(default_factory=dict)

    def request_fault(self, path: str) -> int | None:
        """The status code to answer instead of serving this request, if any."""
        if self.http_error_rate <= 0 or path.startswith("/sim/"):
            return None
        if self.http_path_filter and self.http_path_filter not in path:
            return None
        if random.random() < self.http_error_rate:
            return self.http_error_code
        return None

    def for_class(self, storage_class: str) -> ProvisioningFault | None:
        return self.provisioning.get(storage_class) or self.provisioning.get("*")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON document of changes (the body of `PUT /sim/faults`)."""
        for name in ("http_error_rate", "http_error_code", "retry_after", "http_path_filter"):
            if name in changes:
                setattr(self, name, type(getattr(self, name))(changes[name]))
        if "provisioning" in changes:
            self.provisioning = {
                sc: ProvisioningFault(fail=f.get("fail"), delay=float(f.get("delay", 0)))
                for sc, f in (changes["provisioning"] or {}).items()
            }

    def describe(self) -> dict[str, Any]:
        return {
            "http_error_rate": self.http_error_rate,
            "http_error_code": self.http_error_code,
            "retry_after": self.retry_after,
            "http_path_filter": self.http_path_filter,
            "provisioning": {
                sc: {"fail": f.fail, "delay": f.delay} for sc, f in self.provisioning.items()
            },
        }
