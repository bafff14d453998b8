"""Fixtures of the oVirt simulator's tests: one engine per module
(``tests.sim.ovirt.fixtures``)."""

from __future__ import annotations

from tests.sim.ovirt.fixtures import engine as engine  # the fixture, per module
