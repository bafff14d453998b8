"""Fixtures of the OpenStack simulator's tests: the session's simulated cloud, a connection
to it, faults cleared after every test (``tests.sim.openstack.fixtures``)."""

from __future__ import annotations

from tests.sim.openstack.fixtures import _clear_faults as _clear_faults  # autouse fixture
from tests.sim.openstack.fixtures import cloud as cloud  # the session's, fixture
from tests.sim.openstack.fixtures import conn as conn  # fixture
