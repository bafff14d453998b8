"""Disks that hold a user's image file (``image: PATH``): an image-backed server's root disk
and Cinder volumes carry the image's bytes, raw as the simulator stores every disk, through
Glance (Nova's snapshot, Cinder's upload) as through the files; and every mistake is a
precise error. After ``test_sim.py`` (file order): the session cloud it checks gets one
server more here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import CloudState
from tests.sim.imagefiles import MiB, broken_qcow2, guest_bytes, make, sha256
from tests.sim.openstack.fixtures import volume_image, wait_image
from tests.sim.openstack.test_sim import download
from tools import vmcheck


@pytest.fixture
def images(tmp_path: Path) -> Path:
    make(tmp_path / "root.img", "qcow2", 3 * MiB + (512 << 10), [(0x5A, 0, MiB)])
    make(tmp_path / "data.raw", "raw", 2 * MiB, [(0xC3, MiB, 256 << 10)])
    return tmp_path


def _write(path: Path, servers: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"servers": servers}))
    return path


def test_image_disks_hold_the_image_bytes_raw(images: Path, tmp_path: Path) -> None:
    before = {p.name: sha256(p) for p in (images / "root.img", images / "data.raw")}
    scenario = sc.load(
        _write(
            images / "s.yaml",
            [
                {"name": "web", "flavor": "m1.small", "root": {"image": "root.img"},
                 "volumes": [{"name": "web-data", "image": "data.raw", "size_mib": 5}]},
                {"name": "bfv", "flavor": "m1.small", "boot": "volume",
                 "root": {"image": str(images / "data.raw")}},
            ],
        )
    )  # fmt: skip
    root = scenario.servers[0].root
    assert root.image == str(images / "root.img")  # relative to the scenario file
    assert root.size_mib == 4  # 3.5 MiB, rounded up
    state = CloudState(tmp_path / "cloud")
    state.load(scenario, "project-1")
    servers = {s.name: s for s in state.servers.values()}
    web, bfv = servers["web"], servers["bfv"]
    assert web.root_path is not None
    assert web.root_path.read_bytes() == guest_bytes(images / "root.img", 4 * MiB)
    volumes = {v.name: v for v in state.volumes.values()}
    assert volumes["web-data"].path.read_bytes() == guest_bytes(images / "data.raw", 5 * MiB)
    assert volumes["bfv-root"].path.read_bytes() == (images / "data.raw").read_bytes()
    assert volumes["bfv-root"].bootable
    # Holes stay holes: 1 MiB of data in a 4 MiB root, 256 KiB (and qemu-img create's
    # first 4 KiB of a raw file) in the volumes.
    assert os.stat(web.root_path).st_blocks * 512 == MiB
    assert os.stat(volumes["web-data"].path).st_blocks * 512 <= (256 << 10) + 4096
    # The demo's check compares the target with these files, as raw.
    for server, image, size in ((web, "root.img", 4 * MiB), (bfv, "data.raw", 2 * MiB)):
        expected = vmcheck.from_openstack(state, server, {}, "auto")
        first = expected.disks[0]
        assert (first.format, first.size, first.boot) == ("raw", size, True)
        assert first.path is not None
        assert first.path.read_bytes() == guest_bytes(images / image, size)
    assert {p.name: sha256(p) for p in (images / "root.img", images / "data.raw")} == before


def test_glance_images_of_image_disks_carry_the_image_bytes(
    cloud: Cloud, conn: Any, images: Path
) -> None:
    """Through the APIs, as Hoist reads them: Nova's snapshot of the image-backed root disk,
    and Cinder's upload of a volume made from an image, downloaded from the real Glance."""
    server = cloud.add_server(
        sc.Server(
            name="from-image",
            flavor="m1.small",
            root=sc.Disk(image=str(images / "root.img")),
            volumes=[sc.Volume(name="from-image-data", image=str(images / "data.raw"))],
        )
    )
    try:
        snap = wait_image(conn, conn.compute.create_server_image(server.id, "from-image-snap").id)
        assert snap.disk_format == "raw"
        assert download(conn, snap.id) == guest_bytes(images / "root.img", 4 * MiB)
        image_id = volume_image(conn, "from-image-data", "from-image-data-image")
        assert download(conn, image_id) == (images / "data.raw").read_bytes()
        for image in (snap.id, image_id):
            conn.image.delete_image(image)
    finally:
        conn.compute.delete_server(server.id)


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        ({"image": "nope.raw"}, r"^servers\[0\]\.root\.image: .*/nope\.raw: no such file"),
        ({"image": "broken.qcow2"},
         r"servers\[0\]\.root\.image: .*broken\.qcow2: not a disk image qemu-img can read"),
        ({"image": "root.img", "size_mib": 3},
         r"servers\[0\]\.root: size_mib 3 MiB \(3145728 bytes\) is smaller than the image's "
         r"virtual size 3584 KiB \(3670016 bytes\) of .*root\.img"),
        ({"image": "root.img", "data_mib": 2},
         r"servers\[0\]\.root: data_mib does not apply to a disk made from an image"),
        ({"image": "root.img", "data_mib": 2, "seed": 7}, r"data_mib, seed do not apply"),
    ],
)  # fmt: skip
def test_image_mistakes(images: Path, disk: dict[str, Any], message: str) -> None:
    broken_qcow2(images / "root.img", images / "broken.qcow2")
    path = _write(images / "s.yaml", [{"name": "a", "flavor": "m1.small", "root": disk}])
    with pytest.raises(ValueError, match=message):
        sc.load(path)


def test_a_volume_names_its_key_and_a_direct_scenario_is_checked_too(
    images: Path, tmp_path: Path
) -> None:
    volume = {"name": "v", "image": "gone.qcow2"}
    path = _write(images / "s.yaml", [{"name": "a", "flavor": "m1.small", "volumes": [volume]}])
    with pytest.raises(ValueError, match=r"^servers\[0\]\.volumes\[0\]\.image: .*gone\.qcow2"):
        sc.load(path)
    root = sc.Disk(image=str(images / "gone.raw"))
    direct = sc.Scenario(servers=[sc.Server(name="a", flavor="m1.small", root=root)])
    with pytest.raises(ValueError, match=r"^servers\[0\]\.root\.image: .*gone\.raw: no such"):
        CloudState(tmp_path / "cloud").load(direct, "project-1")
