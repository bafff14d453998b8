"""A problem validation found: where (a path in the API's field names), what (a code), how
bad (``error`` blocks a start, ``warning`` is shown), and a message a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.payloads import PlannedVm, ProviderRef

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str
    severity: str = ERROR
    vm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "code": self.code, "severity": self.severity}
        out["message"] = self.message
        if self.vm is not None:
            out["vm"] = self.vm
        return out


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    vms: list[PlannedVm] = field(default_factory=list)
    source: ProviderRef | None = None
    target: ProviderRef | None = None
    #: Names of the VMs found in the inventory (id -> name), for display.
    names: dict[str, str] = field(default_factory=dict)
    #: Problems of map entries, reported only if a VM of the plan uses the entry (a map
    #: serves many plans; an entry another plan needs must not block this one).
    deferred: dict[tuple[str, str], list[Problem]] = field(default_factory=dict)
    #: Severity of a map entry whose source does not exist (a plan: harmless, a warning).
    missing_source: str = ERROR

    def use(self, kind: str, key: str) -> bool:
        """Report the deferred problems of the entry ``key`` maps through; True if any."""
        found = self.deferred.get((kind, key), [])
        for p in found:
            if p not in self.problems:
                self.problems.append(p)
        return bool(found)

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def add(
        self, path: str, code: str, message: str, severity: str = ERROR, vm: str | None = None
    ) -> None:
        self.problems.append(Problem(path, code, message, severity, vm))
