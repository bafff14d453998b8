"""Fixtures for the OpenStack simulator and populator tests.

One cloud (real Keystone and Glance, ~20 s to set up) for the whole session, run in a thread
of its own so openstacksdk's blocking calls and the populator's process can talk to it.
Faults are cleared after every test. The populator always runs as a real process with only
its normal arguments and env, as it would in its pod.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud, running_cloud

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]

SCENARIO = sc.Scenario(
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
    ]
)


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    with running_cloud(SCENARIO) as c:
        yield c


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """No fault outlives the test that set it."""
    yield
    if "cloud" in request.fixturenames:
        request.getfixturevalue("cloud").faults.clear()


@pytest.fixture
def conn(cloud: Cloud) -> Iterator[Any]:
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


def last_line(run: subprocess.CompletedProcess[str]) -> str:
    """The populator's verdict: the last line it wrote to stderr."""
    lines = run.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _command(
    cloud: Cloud,
    image_id: str,
    volume_path: Path,
    env: dict[str, str] | None,
    extra: list[str] | None,
    drop: tuple[str, ...],
) -> tuple[list[str], dict[str, str]]:
    """The populator's command line and env, as its pod has them: Forklift's args, the
    Secret's keys as env."""
    creds = {k: v for k, v in cloud.credentials().items() if k not in drop}
    full_env = {"PATH": os.environ.get("PATH", ""), **creds, **(env or {})}
    argv = [
        sys.executable, "-m", "services.populators.openstack",
        "--volume-path", str(volume_path), "--secret-name", "os-secret",
        "--cr-name", "populator-1", "--cr-namespace", "ns", "--owner-uid", "uid-1",
        "--pvc-size", "1Gi", "--endpoint", cloud.auth_url, "--image-id", image_id,
        "--metrics-port", "0", *(extra or []),
    ]  # fmt: skip
    return argv, full_env


def populate(
    cloud: Cloud,
    image_id: str,
    volume_path: Path,
    *,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    drop: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the populator to its end."""
    argv, full_env = _command(cloud, image_id, volume_path, env, extra, drop)
    return subprocess.run(
        argv, env=full_env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )


@contextlib.contextmanager
def populating(
    cloud: Cloud, image_id: str, volume_path: Path, *, extra: list[str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """The populator running in the background; killed if still running afterwards."""
    argv, env = _command(cloud, image_id, volume_path, None, extra, ())
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture(scope="module")
def web_image(cloud: Cloud) -> tuple[str, Path]:
    """The image of web-1's root disk (createImage), and the disk it came from."""
    conn = cloud.connection()
    try:
        web = next(conn.compute.servers(name="web-1"))
        image = wait_image(conn, conn.compute.create_server_image(web, "populator-web-1").id)
    finally:
        conn.close()
    root = cloud.state.servers[web.id].root_path
    assert root is not None
    return str(image.id), root


@pytest.fixture(scope="module")
def db_image(cloud: Cloud) -> tuple[str, Path]:
    """The image of db-1's boot volume (os-volume_upload_image), and the volume's file."""
    conn = cloud.connection()
    try:
        image_id = volume_image(conn, "db-1-root", "populator-db-1-root")
    finally:
        conn.close()
    vol = next(v for v in cloud.state.volumes.values() if v.name == "db-1-root")
    return image_id, vol.path
