"""The CPU topology Nova gave an OpenStack server, so the KubeVirt VM gets the same one.

Nova keeps no topology on the server: the libvirt driver derives it at every boot from the
flavor's vCPU count, the flavor extra specs (``hw:cpu_sockets``, ``hw:cpu_cores``,
``hw:cpu_threads`` and the maxima ``hw:cpu_max_*``) and the image properties
(``hw_cpu_sockets``, ... ``hw_cpu_max_*``). The guest's OS may license or schedule by
socket, so a migration must reproduce what Nova chose, not just the vCPU count. The rules
(``nova.virt.hardware``'s topology constraints and best topology), restated:

- the maxima are the image's ``hw_cpu_max_*``, which may only lower the flavor's
  ``hw:cpu_max_*``; unset, unlimited;
- the preferred topology is the image's ``hw_cpu_*`` if any of them is set (then the
  flavor's are ignored as a whole), else the flavor's ``hw:cpu_*``; a flavor preference
  beyond an image maximum is dropped;
- every sockets x cores x threads equal to the flavor's vCPUs within the maxima is a
  candidate, ordered by most sockets x cores (fewest threads), then most sockets, then most
  threads; the first candidate matching the most preferred values wins. A preference that
  is unset is a wildcard: ``hw_cpu_cores=2`` with 4 vCPUs gives 2 sockets x 2 cores.

Nova refuses to boot where these rules conflict (image maxima above the flavor's, an image
preference above a maximum, no topology within the maxima). A server that runs anyway was
booted before its image or flavor was changed; the conflicting values are then left out
(the reason says which), so the total stays the flavor's vCPUs whatever the metadata say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AXES = ("sockets", "cores", "threads")


@dataclass(frozen=True)
class Topology:
    sockets: int
    cores: int
    threads: int

    @property
    def vcpus(self) -> int:
        return self.sockets * self.cores * self.threads

    def as_dict(self) -> dict[str, int]:
        return {"sockets": self.sockets, "cores": self.cores, "threads": self.threads}


@dataclass(frozen=True)
class Choice:
    topology: Topology
    #: Why some flavor or image values were left out (None: all were honoured).
    ignored: str | None = None


def _counts(source: Mapping[str, Any], prefix: str, what: str, bad: list[str]) -> dict[str, int]:
    """The positive integer values of ``prefix + axis`` (0: unset); others are reported."""
    out: dict[str, int] = {}
    for axis in AXES:
        raw = source.get(prefix + axis)
        if raw in (None, ""):
            out[axis] = 0
            continue
        try:
            value = int(str(raw))
        except ValueError:
            value = -1
        if value < 1:
            bad.append(f"{what} {prefix}{axis}={raw!r} is not a positive integer")
            value = 0
        out[axis] = value
    return out


def _candidates(vcpus: int, maxima: Mapping[str, int]) -> list[Topology]:
    """Every exact factorization of ``vcpus`` within ``maxima`` (0: unlimited), in Nova's
    order of preference before scoring. Divisors only: a 256-vCPU flavor stays cheap."""
    divisors = [d for d in range(1, vcpus + 1) if vcpus % d == 0]

    def fits(axis: str, n: int) -> bool:
        return not maxima[axis] or n <= maxima[axis]

    found = [
        Topology(s, c, vcpus // (s * c))
        for s in divisors
        if fits("sockets", s)
        for c in divisors
        if (vcpus // s) % c == 0 and fits("cores", c) and fits("threads", vcpus // (s * c))
    ]
    found.sort(key=lambda t: (t.sockets * t.cores, t.sockets, t.threads), reverse=True)
    return found


def _best(candidates: list[Topology], preferred: Mapping[str, int]) -> Topology:
    """The first candidate among those matching the most preferred (set) values."""

    def score(t: Topology) -> int:
        return sum(1 for a in AXES if preferred[a] and getattr(t, a) == preferred[a])

    top = max(score(t) for t in candidates)
    return next(t for t in candidates if score(t) == top)


def openstack(vcpus: int, extra_specs: Mapping[str, Any], props: Mapping[str, Any]) -> Choice:
    """The topology Nova derives for ``vcpus`` from a flavor's extra specs and the image
    properties (of the image, or of the boot volume's ``volume_image_metadata``)."""
    notes: list[str] = []
    flavor_max = _counts(extra_specs, "hw:cpu_max_", "flavor extra spec", notes)
    image_max = _counts(props, "hw_cpu_max_", "image property", notes)
    flavor_pref = _counts(extra_specs, "hw:cpu_", "flavor extra spec", notes)
    image_pref = _counts(props, "hw_cpu_", "image property", notes)
    over = [a for a in AXES if flavor_max[a] and image_max[a] > flavor_max[a]]
    if over:
        notes.append(
            "image hw_cpu_max_" + ", hw_cpu_max_".join(over) + " exceed the flavor's "
            "hw:cpu_max_* (Nova refuses that image with this flavor)"
        )
        image_max = dict.fromkeys(AXES, 0)
    maxima = {a: image_max[a] or flavor_max[a] for a in AXES}
    if any(maxima[a] and flavor_pref[a] > maxima[a] for a in AXES):
        flavor_pref = dict.fromkeys(AXES, 0)  # Nova drops it silently: no note
    over = [a for a in AXES if maxima[a] and image_pref[a] > maxima[a]]
    if over:
        notes.append(
            "image hw_cpu_" + ", hw_cpu_".join(over) + " exceed the maximum "
            "(Nova refuses that image with this flavor)"
        )
        image_pref = dict.fromkeys(AXES, 0)
    preferred = image_pref if any(image_pref.values()) else flavor_pref
    if vcpus < 1:  # no flavor vCPU count known: what the preferences multiply to
        vcpus = 1
        for a in AXES:
            vcpus *= preferred[a] or 1
    candidates = _candidates(vcpus, maxima)
    if not candidates:
        notes.append(
            f"no sockets x cores x threads gives {vcpus} vCPUs within the maxima "
            f"{'/'.join(str(maxima[a] or '-') for a in AXES)}"
        )
        candidates = _candidates(vcpus, dict.fromkeys(AXES, 0))
    return Choice(_best(candidates, preferred), "; ".join(notes) or None)
