"""The demo's scenario with disks made from image files (``image: PATH``): paths relative to
the scenario file, ``~``, the simulators fed absolute paths, and every mistake named by its
key path along with the others."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.openstack.state import CloudState
from sim.ovirt.scenario import from_dict
from tests.sim.imagefiles import MiB, broken_qcow2, make
from tools import demoscenario as dsc

DEFAULT: dict[str, Any] = yaml.safe_load(dsc.DEFAULT_PATH.read_text())


@pytest.fixture
def where(tmp_path: Path) -> Path:
    """A scenario's directory, its images under ``images/``."""
    (tmp_path / "images").mkdir()
    make(tmp_path / "images" / "os.qcow2", "qcow2", 3 * MiB, [(0x5A, 0, MiB)])
    make(tmp_path / "images" / "data.raw", "raw", 2 * MiB, [(0xA5, 0, MiB)])
    return tmp_path


def _scenario(where: Path, ovirt_disk: dict[str, Any], os_root: dict[str, Any]) -> Path:
    doc = copy.deepcopy(DEFAULT)
    doc["ovirt"]["vms"][0]["disks"][0] = {"name": "web-1-root", "format": "cow", **ovirt_disk}
    doc["openstack"]["servers"][0]["root"] = os_root
    path = where / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_image_paths_are_relative_to_the_scenario_file(
    where: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "images")  # not where the paths are relative to
    s = dsc.load(_scenario(where, {"image": "images/os.qcow2"}, {"image": "images/data.raw"}))
    assert s.ovirt is not None
    assert s.openstack is not None
    assert s.ovirt.vms[0].disks[0].image == str(where / "images" / "os.qcow2")
    root = s.openstack.servers[0].root
    assert (root.image, root.size_mib) == (str(where / "images" / "data.raw"), 2)
    # The simulators get absolute paths: they read them from anywhere.
    monkeypatch.chdir("/")
    inv, _ = from_dict(s.ovirt.sim_dict())
    disk = inv.disk_by_name("web-1-root")
    assert (disk.format, disk.provisioned_size, disk.actual_size) == ("cow", 3 * MiB, MiB)
    state = CloudState(tmp_path / "cloud")
    state.load(s.openstack, "project-1")
    server = next(srv for srv in state.servers.values() if srv.name == "os-web")
    assert server.root_path is not None
    assert server.root_path.read_bytes()[:MiB] == b"\xa5" * MiB


def test_resolve_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    base = tmp_path / "scenarios"
    assert dsc.resolve_image("~/disk.qcow2", base) == tmp_path / "home" / "disk.qcow2"
    assert dsc.resolve_image("/srv/disk.raw", base) == Path("/srv/disk.raw")
    assert dsc.resolve_image("sub/disk.raw", base) == base / "sub" / "disk.raw"


def test_every_image_mistake_is_listed_with_its_key_path(where: Path) -> None:
    broken_qcow2(where / "images" / "os.qcow2", where / "images" / "broken.qcow2")
    doc = copy.deepcopy(DEFAULT)
    disks = doc["ovirt"]["vms"][0]["disks"]
    disks[0] = {"name": "a", "image": "images/nope.qcow2"}
    disks[1] = {"name": "b", "image": "images/os.qcow2", "size": "1MiB"}
    doc["ovirt"]["vms"][1]["disks"][0] = {"name": "c", "image": "images/os.qcow2",
                                          "allocated": 0.5, "layout": "scattered"}  # fmt: skip
    doc["ovirt"]["disks"] = [{"name": "floating", "image": "images/broken.qcow2"}]
    doc["openstack"]["servers"][0]["root"] = {"image": "images/data.raw", "data_mib": 4}
    doc["openstack"]["servers"][1]["root"] = {"image": "images/os.qcow2", "size_mib": 2}
    path = where / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(dsc.ScenarioError) as info:
        dsc.load(path)
    message = str(info.value)
    for expected in (
        f"ovirt.vms[0].disks[0].image: {where}/images/nope.qcow2: no such file",
        "ovirt.vms[0].disks[1]: size 1 MiB (1048576 bytes) is smaller than the image's "
        f"virtual size 3 MiB (3145728 bytes) of {where}/images/os.qcow2",
        "ovirt.vms[1].disks[0]: allocated, layout do not apply to a disk made from an image",
        f"ovirt.disks[0].image: {where}/images/broken.qcow2: not a disk image qemu-img can read",
        "openstack.servers[0].root: data_mib does not apply to a disk made from an image",
        "openstack.servers[1].root: size_mib 2 MiB (2097152 bytes) is smaller than",
    ):
        assert expected in message, message


def test_unset_disk_keys_are_left_to_the_simulator() -> None:
    """A disk's size and pattern keys are not filled in here: with ``image`` they would be
    errors, without it the simulator has its own defaults."""
    doc = copy.deepcopy(DEFAULT)
    doc["ovirt"]["disks"] = [{"name": "plain"}]
    s = dsc.parse(doc)
    assert s.ovirt is not None
    dumped = s.ovirt.sim_dict()["disks"][0]
    assert not {"image", "size", "allocated", "layout", "extent"} & set(dumped)
    inv, _ = from_dict(s.ovirt.sim_dict())
    plain = inv.disk_by_name("plain")
    assert (plain.provisioned_size, plain.actual_size) == (64 * MiB, 16 * MiB)
