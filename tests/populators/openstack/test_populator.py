"""The OpenStack populator as a process, against the real Glance behind the simulator.

Images come the two ways Forklift makes them: ``createImage`` of an image-backed server and
``os-volume_upload_image`` of a (boot) volume. Each copy is compared byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx

from shared.devservices import free_port
from sim.certs import client_context
from sim.openstack.cloud import Cloud
from tests.populators.openstack.conftest import MiB, allocated, last_line, populate, populating
from tests.sim.openstack.fixtures import volume_image, wait_for, wait_image


def data_bytes(path: Path) -> int:
    """Bytes of 64 KiB blocks that are not all zero: what a sparse copy must allocate."""
    block, zero, n = 64 << 10, bytes(64 << 10), 0
    with path.open("rb") as f:
        while chunk := f.read(block):
            n += len(chunk) if chunk != zero[: len(chunk)] else 0
    return n


def test_image_backed_server_byte_exact_and_sparse(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = web_image
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 0, run.stderr
    target = tmp_path / "disk.img"
    assert target.read_bytes() == source.read_bytes()
    # Holes stay holes: no more than the source's data (plus a block of file metadata).
    assert allocated(target) <= allocated(source)
    assert allocated(target) <= data_bytes(source) + 64 * 1024
    assert "sha512 verified" in run.stderr
    assert last_line(run) == "openstack-populator: done"


def test_boot_from_volume_server_byte_exact(
    cloud: Cloud, db_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = db_image
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "disk.img").read_bytes() == source.read_bytes()


def test_block_volume_with_old_data_is_overwritten_exactly(
    cloud: Cloud, db_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = db_image
    device = tmp_path / "block"  # a regular file stands in for the device
    device.write_bytes(b"\xa5" * (source.stat().st_size + MiB))
    run = populate(cloud, image_id, device)
    assert run.returncode == 0, run.stderr
    assert device.read_bytes()[: source.stat().st_size] == source.read_bytes()


def test_connection_reset_mid_download_resumes_with_range(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = web_image
    cloud.faults.reset_after_bytes, cloud.faults.resets = 5 * MiB + 123, 2
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 0, run.stderr
    assert sum(i.startswith("reset:") for i in cloud.faults.injected) == 2
    assert "resuming with Range" in run.stderr
    assert (tmp_path / "disk.img").read_bytes() == source.read_bytes()


def test_5xx_burst_is_retried(cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path) -> None:
    image_id, source = web_image
    cloud.faults.fail_next = {"image": 3}
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 0, run.stderr
    assert cloud.faults.injected.count("image:503") == 3
    assert (tmp_path / "disk.img").read_bytes() == source.read_bytes()


def test_token_expiry_mid_download_renews_the_token(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    image_id, source = web_image
    cloud.faults.revoke_token_after_bytes = 4 * MiB
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 0, run.stderr
    assert any(i.startswith("token:") for i in cloud.faults.injected)
    assert "authenticating again" in run.stderr
    assert (tmp_path / "disk.img").read_bytes() == source.read_bytes()


def test_token_only_credentials_fail_precisely_when_the_token_dies(
    cloud: Cloud, conn: Any, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    token = conn.session.get_token()
    cloud.faults.revoke_token_after_bytes = 4 * MiB
    drop = ("username", "password")
    run = populate(cloud, web_image[0], tmp_path, env={"token": token}, drop=drop)
    assert run.returncode == 1
    assert "refused the token (expired or revoked)" in last_line(run)


def test_application_credential(
    cloud: Cloud, conn: Any, db_image: tuple[str, Path], tmp_path: Path
) -> None:
    user = conn.current_user_id
    cred = conn.identity.create_application_credential(user, "populator", secret="s3cret-app")
    env = {"applicationCredentialID": cred.id, "applicationCredentialSecret": "s3cret-app"}
    run = populate(cloud, db_image[0], tmp_path, env=env, drop=("username", "password"))
    assert run.returncode == 0, run.stderr
    assert "application_credential auth" in run.stderr
    assert (tmp_path / "disk.img").read_bytes() == db_image[1].read_bytes()


def test_wrong_password_fails_precisely(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    run = populate(cloud, web_image[0], tmp_path, env={"password": "wrong"})
    assert run.returncode == 1
    assert "refused the password credentials (HTTP 401)" in last_line(run)


def test_missing_credentials_are_a_usage_error(
    cloud: Cloud, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    run = populate(cloud, web_image[0], tmp_path, drop=("username", "password"))
    assert run.returncode == 2
    assert "no OpenStack credentials" in last_line(run)


def test_tls_is_verified_unless_told_otherwise(
    cloud: Cloud, db_image: tuple[str, Path], tmp_path: Path
) -> None:
    run = populate(cloud, db_image[0], tmp_path, drop=("cacert",))  # system CA store only
    assert run.returncode == 1
    assert "failed TLS verification" in last_line(run)
    run = populate(
        cloud, db_image[0], tmp_path, env={"insecureSkipVerify": "true"}, drop=("cacert",)
    )
    assert run.returncode == 0, run.stderr
    assert "TLS verification: skipped" in run.stderr


def test_image_stuck_in_saving_fails_after_the_wait_then_succeeds(
    cloud: Cloud, conn: Any, tmp_path: Path
) -> None:
    cloud.faults.stuck_saving = True
    vol = next(v for v in conn.block_storage.volumes() if v.name == "web-1-data")
    out = conn.block_storage.upload_volume_to_image(vol, "slow", force=True, disk_format="raw")
    wait_image(conn, out["image_id"], "saving")
    run = populate(cloud, out["image_id"], tmp_path, extra=["--image-wait", "2"])
    assert run.returncode == 1
    assert "is still saving after 2 s" in last_line(run)
    # A patient populator waits, serving its metrics meanwhile, and copies once Glance is done.
    port = free_port()
    with populating(cloud, out["image_id"], tmp_path, extra=["--metrics-port", str(port)]) as proc:
        metrics = scrape(port, proc)
        assert 'openstack_populator_progress{ownerUID="uid-1"} 0' in metrics
        assert 'hoist_populator_bytes_transferred{ownerUID="uid-1"} 0' in metrics
        cloud.faults.stuck_saving = False
        assert proc.wait(120) == 0
    assert (tmp_path / "disk.img").read_bytes() == cloud.state.volumes[vol.id].path.read_bytes()


def scrape(port: int, proc: subprocess.Popen[str]) -> str:
    """The populator's /metrics (TLS, self-signed), once it answers."""
    text: list[str] = []

    def answered() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            r = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=False)  # noqa: S501
        except httpx.TransportError:
            return False
        text.append(r.text)
        return r.status_code == 200

    wait_for(answered, "the populator's /metrics")
    return text[-1]


def test_checksum_mismatch_is_caught(cloud: Cloud, conn: Any, tmp_path: Path) -> None:
    image_id = volume_image(conn, "web-1-data", "to-corrupt")
    stored = cloud.workdir / "openstack" / "glance" / "images" / image_id
    with stored.open("r+b") as f:  # bit rot in Glance's store, after the checksum was taken
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    run = populate(cloud, image_id, tmp_path)
    assert run.returncode == 1
    assert f"checksum mismatch for image {image_id}" in last_line(run)


def _upload_qcow2(cloud: Cloud, conn: Any, raw: Path, qcow2: Path) -> str:
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True
    )
    image = conn.image.create_image(
        name="qcow2-image", disk_format="qcow2", container_format="bare"
    )
    token = conn.session.get_token()
    with httpx.Client(verify=client_context(cloud.ca_file), timeout=60) as c:
        r = c.put(
            f"{cloud.glance_url}/v2/images/{image.id}/file",
            content=qcow2.read_bytes(),
            headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()
    wait_image(conn, image.id)
    return str(image.id)


def test_qcow2_image_is_converted_to_raw(
    cloud: Cloud, conn: Any, web_image: tuple[str, Path], tmp_path: Path
) -> None:
    raw = web_image[1]
    image_id = _upload_qcow2(cloud, conn, raw, tmp_path / "src.qcow2")
    volume = tmp_path / "volume"
    volume.mkdir()
    run = populate(cloud, image_id, volume)
    assert run.returncode == 0, run.stderr
    assert "qcow2 converted: yes" in run.stderr
    assert sorted(os.listdir(volume)) == ["disk.img"]  # the scratch download is gone
    assert (volume / "disk.img").read_bytes() == raw.read_bytes()
    block = tmp_path / "block"
    block.write_bytes(bytes(raw.stat().st_size))
    run = populate(cloud, image_id, block)
    assert run.returncode == 1
    assert "is qcow2 and needs conversion to raw" in last_line(run)


def test_pvc_smaller_than_the_image_fails_precisely(
    cloud: Cloud, db_image: tuple[str, Path], tmp_path: Path
) -> None:
    run = populate(cloud, db_image[0], tmp_path, extra=["--pvc-size", "1Mi"])
    assert run.returncode == 1
    assert "the PVC is too small" in last_line(run)
    assert not (tmp_path / "disk.img").exists()
