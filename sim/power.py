"""Each simulated source VM's power-state timeline: when its guest went down and came back.

Why: a migration plan must not take down more source VMs at once than it admits, so tests and
benchmarks have to count the VMs that are down at any moment, in both simulators. Each one
records every change of a VM's status here, normalized to ``up`` (the guest runs) or
``down`` (it does not), with the raw status kept beside it; consecutive statuses that map to
the same state add nothing. Times are wall-clock (``time.time()``), so a test can compare
them with timestamps taken in other processes (the services, the populator pods).

Both simulators serve the timelines as ``GET /sim/power-timeline`` (``timelines_json``);
``tools/downtime.py`` reads and counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

State = Literal["up", "down"]


class PowerChange(NamedTuple):
    """One entry: from ``at`` (epoch seconds) the VM is ``state``; ``status`` is what the
    simulator's API showed at that moment (``down``, ``powering_up``, ``SHUTOFF``...)."""

    at: float
    state: State
    status: str


class PowerTimeline:
    """A VM's power changes, oldest first. ``is_up`` maps a raw status to the guest running.

    One event loop writes it; other threads may read ``changes`` (appends are atomic, and
    readers copy the list)."""

    __slots__ = ("_is_up", "changes")

    def __init__(self, is_up: Callable[[str], bool]) -> None:
        self._is_up = is_up
        self.changes: list[PowerChange] = []

    def note(self, status: str, at: float | None = None) -> None:
        """Record ``status`` if it changes the VM's state (the first call records the
        initial state)."""
        state: State = "up" if self._is_up(status) else "down"
        if self.changes and self.changes[-1].state == state:
            return
        self.changes.append(PowerChange(time.time() if at is None else at, state, status))

    def json(self) -> list[dict[str, Any]]:
        return [{"at": c.at, "state": c.state, "status": c.status} for c in list(self.changes)]


class TracksPower:
    """Mixin for a simulated VM dataclass with ``status`` and a ``power`` field:
    every assignment of ``status`` is noted, however it is made (an API action, a scenario
    change, a test setting it), so no path that changes a status can be missed."""

    status: str
    power: PowerTimeline

    def __post_init__(self) -> None:
        self.power.note(self.status)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "status" and "power" in self.__dict__:  # not before __init__ made it
            self.power.note(value)


def timelines_json(vms: Iterable[tuple[str, str, PowerTimeline]]) -> dict[str, Any]:
    """The body of ``GET /sim/power-timeline``: ``{"vms": {id: {"name", "timeline"}}}``
    for ``(id, name, timeline)`` triples."""
    return {"vms": {vid: {"name": name, "timeline": tl.json()} for vid, name, tl in vms}}
