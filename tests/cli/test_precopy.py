"""How ``hoist watch`` words a warm VM's copies (``cli.precopy``), from the detail the
orchestrator puts in the WarmPrecopy and FinalCopy steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cli import precopy
from cli.watching import vm_state

NEXT = "2030-05-01T15:04:00+00:00"


def _local(at: str, fmt: str = "%H:%M:%S") -> str:
    return datetime.fromisoformat(at).astimezone().strftime(fmt)


def test_a_done_precopy_says_when_the_next_one_runs() -> None:
    now = datetime.fromisoformat(NEXT) - timedelta(minutes=5)
    done = {"step": "WarmPrecopy", "number": 3, "bytes": 120 << 20, "nextAt": NEXT,
            "running": False}  # fmt: skip
    assert precopy.text(done, now) == f"precopy 3 done: 120.0 MiB; next at {_local(NEXT)}"
    running = {**done, "number": 4, "bytes": 8 << 20, "running": True}
    assert precopy.text(running, now) == "precopy 4 running: 8.0 MiB"
    # No next time (the cutover comes first): nothing about it.
    assert precopy.text({**done, "nextAt": None}, now) == "precopy 3 done: 120.0 MiB"
    # Another day: with the date.
    later = datetime.fromisoformat(NEXT) - timedelta(days=2)
    assert precopy.text(done, later).endswith(f"next at {_local(NEXT, '%Y-%m-%d %H:%M:%S')}")


def test_the_final_copy() -> None:
    final = {"step": "FinalCopy", "number": 5, "bytes": 12 << 20, "nextAt": None,
             "running": True}  # fmt: skip
    assert precopy.text(final) == "final copy running: 12.0 MiB"
    assert precopy.text({**final, "running": False}) == "final copy done: 12.0 MiB"


def test_the_detail_is_picked_from_the_pipeline() -> None:
    detail = {"number": 2, "bytes": 1, "nextAt": None, "running": False}
    view = {
        "pipeline": [
            {"name": "Initialize", "state": "Completed", "detail": {}},
            {"name": "WarmPrecopy", "state": "Running", "detail": {"precopy": detail}},
            {"name": "FinalCopy", "state": "Pending", "detail": {}},
        ]
    }
    assert precopy.of(view) == {**detail, "step": "WarmPrecopy"}
    view["pipeline"][2]["detail"] = {"precopy": {**detail, "number": 3}}
    assert precopy.of(view) == {**detail, "number": 3, "step": "FinalCopy"}
    assert precopy.of({"pipeline": [{"name": "DiskTransfer", "state": "Running"}]}) is None


def test_a_vm_state_shows_the_copy_of_its_step_only() -> None:
    vm = {"phase": "Running", "step": "WarmPrecopy", "waiting": None}
    copy = {"step": "WarmPrecopy", "number": 1, "bytes": 0, "nextAt": None, "running": True}
    assert vm_state(vm, copy) == "WarmPrecopy — precopy 1 running: 0 B"
    assert vm_state({**vm, "step": "PowerOffSource"}, copy) == "PowerOffSource"
    assert vm_state({**vm, "phase": "Succeeded"}, copy) == "Succeeded"
    assert precopy.clock("not a time") == "not a time"
    assert precopy.clock("2030-05-01T15:04:00") == "2030-05-01T15:04:00"  # no timezone
    assert precopy.clock(datetime.now(UTC).isoformat()).count(":") == 2
