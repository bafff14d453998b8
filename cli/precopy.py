"""A warm VM's copies as ``hoist watch`` and ``hoist plans status`` show them.

A warm VM sits in WarmPrecopy for hours (a precopy every interval until the cutover), so
its step alone says nothing about progress; the orchestrator puts the last precopy in the
step's ``detail.precopy`` (``{number, bytes, nextAt, running}``), and FinalCopy's the same
way for the copy after the power-off. The planner passes ``detail`` through to a VM's
pipeline; this module picks it out and words it: ``precopy 3 done: 120.0 MiB; next at
15:04:00``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cli.output import size

WARM_PRECOPY = "WarmPrecopy"
FINAL_COPY = "FinalCopy"
WARM_STEPS = (WARM_PRECOPY, FINAL_COPY)


def of(view: dict[str, Any]) -> dict[str, Any] | None:
    """The precopy detail of a VM's pipeline (``GET .../vms/{vm}``): that of FinalCopy once
    it reported one, else WarmPrecopy's, with the step's name under ``step``; None for a
    VM whose steps report none (a cold one)."""
    found: dict[str, Any] | None = None
    for s in view.get("pipeline") or []:
        detail = (s.get("detail") or {}).get("precopy") if s["name"] in WARM_STEPS else None
        if isinstance(detail, dict):
            found = {**detail, "step": s["name"]}
    return found


def clock(at: str, now: datetime | None = None) -> str:
    """A time in the viewer's timezone: ``15:04:00`` today, with the date on another day;
    the text itself when it is not a time with a timezone."""
    try:
        when = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return str(at)
    if when.tzinfo is None:
        return at
    local = when.astimezone()
    today = (now or datetime.now(local.tzinfo)).astimezone(local.tzinfo).date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


def text(precopy: dict[str, Any], now: datetime | None = None) -> str:
    """``precopy 3 done: 120.0 MiB; next at 15:04:00``, ``precopy 4 running: 8.0 MiB``,
    ``final copy done: 12.0 MiB``."""
    final = precopy.get("step") == FINAL_COPY
    number = precopy.get("number")
    what = "final copy" if final else f"precopy {number}" if number is not None else "precopy"
    running = bool(precopy.get("running"))
    line = f"{what} {'running' if running else 'done'}: {size(precopy.get('bytes') or 0)}"
    next_at = precopy.get("nextAt")
    if not final and not running and next_at:
        line += f"; next at {clock(str(next_at), now)}"
    return line
