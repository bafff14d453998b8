"""``tools/downtime.py``: counting source VMs down at once from power timelines (pure; the
fetching is tested against each simulator in tests/sim/ovirt and tests/sim/openstack)."""

from __future__ import annotations

import pytest

from tools.downtime import (
    Change,
    Timeline,
    VmPower,
    down_at,
    down_intervals,
    max_down,
    parse,
    state_at,
    timelines_of,
)

# Plan starts at 100. a and b are migrated one after the other, c overlaps b, d was off
# before the plan and is never started, e is created at 150 already off.
TIMELINES: dict[str, list[tuple[float, str]]] = {
    "a": [(0, "up"), (110, "down"), (120, "up")],
    "b": [(0, "up"), (120, "down"), (130, "up")],
    "c": [(0, "up"), (125, "down"), (140, "up")],
    "d": [(0, "up"), (50, "down")],
    "e": [(150, "down")],
}


def test_state_at_is_the_last_change_at_or_before() -> None:
    a = TIMELINES["a"]
    assert state_at(a, -1) is None  # before it existed
    assert state_at(a, 0) == "up"
    assert state_at(a, 110) == "down"
    assert state_at(a, 119.9) == "down"
    assert state_at(a, 120) == "up"
    assert state_at([], 5) is None


def test_down_at_counts_every_vm_down_then() -> None:
    assert down_at(TIMELINES, 10) == 0
    assert down_at(TIMELINES, 60) == 1  # d
    assert down_at(TIMELINES, 115) == 2  # a, d
    assert down_at(TIMELINES, 127) == 3  # b, c, d
    assert down_at(TIMELINES, 200) == 2  # d, e


def test_max_down_counts_only_vms_the_plan_took_down() -> None:
    # a goes up at the very moment b goes down: never two at once.
    assert max_down(TIMELINES, since=100, until=200) == 2  # b and c
    assert max_down(TIMELINES, since=100, until=124) == 1
    assert max_down(TIMELINES, since=100, until=105) == 0
    assert max_down(TIMELINES, since=100) == 2
    # Counting the VMs already off (d) and those that appear (e) too:
    assert max_down(TIMELINES, since=100, until=200, ignore_initially_down=False) == 3
    assert max_down(TIMELINES, since=0, until=200, ignore_initially_down=False) == 3
    assert max_down(TIMELINES, since=140, until=200, ignore_initially_down=False) == 2


def test_max_down_of_some_vms_only() -> None:
    assert max_down(TIMELINES, 100, 200, vms=["a", "b"]) == 1
    assert max_down(TIMELINES, 100, 200, vms=["c", "d"]) == 1  # d was off already
    assert max_down(TIMELINES, 100, 200, vms=[]) == 0
    with pytest.raises(KeyError, match="zz"):
        max_down(TIMELINES, 100, 200, vms=["a", "zz"])


def test_max_down_starts_with_the_vms_down_at_since() -> None:
    # With the window opening while b and c are down, they count from the start.
    assert max_down(TIMELINES, 127, 128, ignore_initially_down=False) == 3
    assert max_down(TIMELINES, 127, 128) == 0  # not up at 127: not the plan's doing


def test_max_down_tolerates_repeated_states_and_raw_statuses() -> None:
    timelines: dict[str, Timeline] = {
        "x": [(0.0, "up", "up"), (1.0, "down", "down"), (2.0, "down", "down"), (3.0, "up", "x")],
        "y": [(0.0, "up"), (1.5, "down"), (1.6, "up")],
    }
    assert max_down(timelines, 0.5, 10) == 2
    assert max_down(timelines, 0.5, 1.2) == 1


def test_down_intervals_from_since() -> None:
    assert down_intervals(TIMELINES["a"], since=100) == [(110, 120)]
    assert down_intervals(TIMELINES["a"], since=115) == [(115, 120)]  # clipped to since
    assert down_intervals(TIMELINES["a"], since=120) == []  # over by then
    assert down_intervals(TIMELINES["d"], since=100) == [(100, None)]  # still down
    flapping = [(0.0, "up"), (1.0, "down"), (2.0, "up"), (3.0, "down"), (3.0, "down")]
    assert down_intervals(flapping, since=0) == [(1.0, 2.0), (3.0, None)]
    assert down_intervals([], since=0) == []


def test_parse_what_a_simulator_serves() -> None:
    body = {
        "vms": {
            "id-1": {
                "name": "web-1",
                "timeline": [
                    {"at": 1.5, "state": "up", "status": "ACTIVE"},
                    {"at": 2, "state": "down", "status": "SHUTOFF"},
                ],
            }
        }
    }
    got = parse(body, "openstack")
    assert got == {
        "id-1": VmPower(
            "id-1",
            "web-1",
            "openstack",
            (Change(1.5, "up", "ACTIVE"), Change(2.0, "down", "SHUTOFF")),
        )
    }
    assert timelines_of(got) == {"id-1": [(1.5, "up"), (2.0, "down")]}
    assert max_down({"id-1": got["id-1"].changes}, since=1.6) == 1
