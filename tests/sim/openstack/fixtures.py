"""The simulated cloud of the OpenStack simulator's and populator's tests
(``tests/sim/openstack``, ``tests/populators/openstack``), and openstacksdk helpers.

One cloud (real Keystone and Glance, ~20 s to set up) for the whole session, run in a thread
of its own so openstacksdk's blocking calls and the populator's process can talk to it:
``tests/conftest.py`` starts it (``openstack_sim_cloud``, once for both directories; the
inventory's ``cloud`` there is another scenario), and each directory's conftest imports
``cloud`` from here, which names it. Faults are cleared after every test.

``_clear_faults`` and ``conn`` take whichever ``cloud`` the test sees, so the OpenStack
source's tests (``tests/inventory/sources/openstack``) import them too, for their cloud.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud

SCENARIO = sc.Scenario(
    flavors=[
        sc.Flavor(name="m1.small"),
        sc.Flavor(name="m1.quad", vcpus=4, extra_specs={"hw:cpu_sockets": "2"}),
    ],
    servers=[
        sc.Server(
            name="web-1",
            flavor="m1.small",
            boot="image",
            root=sc.Disk(size_mib=24, data_mib=6),
            volumes=[sc.Volume(name="web-1-data", size_mib=16, data_mib=3)],
            networks=["private"],
        ),
        sc.Server(
            name="db-1",
            flavor="m1.small",
            boot="volume",
            root=sc.Disk(size_mib=20, data_mib=5),
            networks=["private"],
            status="SHUTOFF",
        ),
    ],
    security_groups=[
        sc.SecurityGroup(
            name="web",
            description="ssh from anywhere",
            rules=[
                sc.SecurityGroupRule(
                    protocol="tcp",
                    port_range_min=22,
                    port_range_max=22,
                    remote_ip_prefix="0.0.0.0/0",
                )
            ],
        )
    ],
)


@pytest.fixture(scope="session")
def cloud(openstack_sim_cloud: Cloud) -> Cloud:
    """The session's simulated cloud (started once, by ``tests/conftest.py``)."""
    return openstack_sim_cloud


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """No fault outlives the test that set it (of the cloud the test uses, if one)."""
    yield
    if "cloud" in request.fixturenames:
        request.getfixturevalue("cloud").faults.clear()


@pytest.fixture
def conn(cloud: Cloud) -> Iterator[Any]:
    """openstacksdk as the scenario's user, to change the cloud through its APIs."""
    c = cloud.connection()
    yield c
    c.close()


def wait_for(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """A hang guard, not a performance assertion."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.1)


def wait_image(conn: Any, image_id: str, status: str = "active") -> Any:
    found: list[Any] = []

    def ready() -> bool:
        found[:] = [conn.image.get_image(image_id)]
        return bool(found[0].status == status)

    wait_for(ready, f"image {image_id} {status}")
    return found[0]


def volume_image(conn: Any, volume_name: str, image_name: str) -> str:
    """Upload a volume to Glance (os-volume_upload_image, raw) and wait for the image."""
    vol = next(v for v in conn.block_storage.volumes() if v.name == volume_name)
    out = conn.block_storage.upload_volume_to_image(
        vol, image_name, force=True, disk_format="raw", container_format="bare"
    )
    wait_image(conn, out["image_id"])
    return str(out["image_id"])
