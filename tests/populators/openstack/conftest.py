"""Fixtures of the OpenStack populator tests: the session's simulated cloud
(``tests.sim.openstack.fixtures``, faults cleared after every test), images of its servers,
and the populator run as a real process with only its normal arguments and env, as it
would in its pod.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.openstack.cloud import Cloud
from tests.sim.openstack.fixtures import _clear_faults as _clear_faults  # autouse fixture
from tests.sim.openstack.fixtures import cloud as cloud  # the session's, fixture
from tests.sim.openstack.fixtures import conn as conn  # fixture
from tests.sim.openstack.fixtures import volume_image, wait_image

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[3]


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
