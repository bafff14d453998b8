"""Nova's CPU topology rules as the planner restates them: flavor vCPUs laid out by the
flavor extra specs and the image properties, the total always the flavor's vCPUs."""

from __future__ import annotations

from typing import Any

import pytest

from services.planner import cputopology, shaping
from services.planner.cputopology import Topology
from shared.payloads import ProviderType


def _topo(vcpus: int, specs: dict[str, Any] | None = None, **props: Any) -> Topology:
    choice = cputopology.openstack(vcpus, specs or {}, props)
    assert choice.topology.vcpus == vcpus
    return choice.topology


@pytest.mark.parametrize(
    ("vcpus", "specs", "props", "want"),
    [
        (4, {}, {}, (4, 1, 1)),  # nothing set: one core per socket
        (4, {}, {"hw_cpu_cores": "2"}, (2, 2, 1)),  # the case: not 4 x 2
        (8, {}, {"hw_cpu_cores": 4}, (2, 4, 1)),
        (8, {}, {"hw_cpu_threads": "2"}, (4, 1, 2)),
        (8, {}, {"hw_cpu_sockets": "1"}, (1, 8, 1)),
        (6, {}, {"hw_cpu_sockets": "2", "hw_cpu_threads": "3"}, (2, 1, 3)),
        (8, {"hw:cpu_sockets": "2"}, {}, (2, 4, 1)),
        (8, {"hw:cpu_cores": "2", "hw:cpu_threads": "2"}, {}, (2, 2, 2)),
        # any image preference replaces the flavor's as a whole
        (8, {"hw:cpu_sockets": "2", "hw:cpu_cores": "4"}, {"hw_cpu_threads": "2"}, (4, 1, 2)),
        # maxima: the flavor's, lowered by the image's
        (8, {"hw:cpu_max_sockets": "2"}, {}, (2, 4, 1)),
        (8, {"hw:cpu_max_sockets": "4"}, {"hw_cpu_max_sockets": "1"}, (1, 8, 1)),
        (8, {"hw:cpu_max_sockets": "1", "hw:cpu_max_cores": "4"}, {}, (1, 4, 2)),
        # a flavor preference beyond the image's maximum is dropped
        (8, {"hw:cpu_sockets": "4"}, {"hw_cpu_max_sockets": "2"}, (2, 4, 1)),
        (1, {}, {"hw_cpu_cores": "1"}, (1, 1, 1)),
        (7, {}, {"hw_cpu_cores": "2"}, (7, 1, 1)),  # no factor 2: the best remaining
    ],
)
def test_nova_rules(
    vcpus: int, specs: dict[str, Any], props: dict[str, Any], want: tuple[int, int, int]
) -> None:
    choice = cputopology.openstack(vcpus, specs, props)
    assert choice.topology == Topology(*want)
    assert choice.ignored is None


@pytest.mark.parametrize(
    ("specs", "props", "want", "why"),
    [
        # image maxima above the flavor's: Nova refuses; the flavor's stand
        ({"hw:cpu_max_sockets": "2"}, {"hw_cpu_max_sockets": "4"}, (2, 4, 1), "hw_cpu_max_sockets"),
        # an image preference above the maximum: left out, the flavor's preference used
        (
            {"hw:cpu_max_sockets": "2", "hw:cpu_cores": "2"},
            {"hw_cpu_sockets": "8"},
            (2, 2, 2),
            "hw_cpu_sockets",
        ),
        # nothing fits the maxima (2 x 1 x 1 < 8): the maxima give way, not the count
        (
            {"hw:cpu_max_sockets": "2", "hw:cpu_max_cores": "1", "hw:cpu_max_threads": "1"},
            {},
            (8, 1, 1),
            "no sockets x cores x threads",
        ),
        ({}, {"hw_cpu_cores": "two"}, (8, 1, 1), "'two' is not a positive integer"),
    ],
)
def test_values_nova_would_refuse_are_left_out(
    specs: dict[str, Any], props: dict[str, Any], want: tuple[int, int, int], why: str
) -> None:
    choice = cputopology.openstack(8, specs, props)
    assert choice.topology == Topology(*want)
    assert choice.ignored is not None
    assert why in choice.ignored


def test_large_flavors_stay_cheap() -> None:
    assert _topo(4096, hw_cpu_threads="2") == Topology(2048, 1, 2)


def test_unknown_vcpus_from_the_preferences() -> None:
    assert cputopology.openstack(0, {}, {"hw_cpu_sockets": "2", "hw_cpu_cores": "3"}).topology \
        == Topology(2, 3, 1)  # fmt: skip
    assert cputopology.openstack(0, {}, {}).topology == Topology(1, 1, 1)


def _server(vcpus: int, specs: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    flavor = {"vcpus": vcpus, "ramMiB": 4096, "extraSpecs": specs}
    return {"id": "s1", "data": {"flavor": flavor, "imageProperties": props}}


def test_machine_uses_flavor_vcpus_and_nova_topology() -> None:
    """The issue: 4 vCPUs and hw_cpu_cores=2 made 4 sockets x 2 cores = 8 CPUs."""
    m = shaping.machine(ProviderType.OPENSTACK, _server(4, {}, {"hw_cpu_cores": "2"}))
    assert m["cpu"] == {"sockets": 2, "cores": 2, "threads": 1}
    m = shaping.machine(ProviderType.OPENSTACK, _server(8, {"hw:cpu_threads": "2"}, {}))
    assert m["cpu"] == {"sockets": 4, "cores": 1, "threads": 2}
    m = shaping.machine(ProviderType.OPENSTACK, _server(2, {}, {}))
    assert m["cpu"] == {"sockets": 2, "cores": 1, "threads": 1}


def test_values_left_out_are_a_warning() -> None:
    """A server runs with metadata Nova would now refuse: the plan says what was ignored."""
    from services.planner import validating
    from services.planner.problems import WARNING, Result

    res = Result()
    vm = _server(8, {"hw:cpu_max_sockets": "2"}, {"hw_cpu_sockets": "4"})
    validating._check_cpu(res, "vms[0]", vm)
    [p] = res.problems
    assert (p.path, p.code, p.severity, p.vm) == ("vms[0].cpu", "CpuTopologyIgnored", WARNING, "s1")
    assert "hw_cpu_sockets" in p.message
    assert "2 socket(s) x 4 core(s)" in p.message
    res = Result()
    validating._check_cpu(res, "vms[0]", _server(4, {}, {"hw_cpu_cores": "2"}))
    assert res.problems == []
