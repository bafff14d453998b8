"""Scenarios: the YAML format, disk contents, and the big-inventory generator (no cloud)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from sim.openstack import generate
from sim.openstack import scenario as sc
from sim.openstack.state import CloudState, sparse_copy

SMALL = Path(__file__).resolve().parents[3] / "sim" / "openstack" / "scenarios" / "small.yaml"


def test_small_scenario_builds_servers_volumes_and_ports(tmp_path: Path) -> None:
    scenario = sc.load(SMALL)
    state = CloudState(tmp_path)
    state.load(scenario, "project-1")
    servers = {s.name: s for s in state.servers.values()}
    assert servers["web-1"].boot == "image"
    assert servers["db-1"].status == "SHUTOFF"
    assert len(servers["db-1"].port_ids) == 2
    assert sorted(v.name for v in state.volumes.values()) == ["db-1-root", "web-1-data"]
    root = servers["web-1"].root_path
    assert root is not None
    assert root.stat().st_size == 64 << 20
    assert os.stat(root).st_blocks * 512 == 8 << 20  # 8 MiB of data, the rest holes


def test_disk_contents_are_deterministic_and_copies_stay_sparse(tmp_path: Path) -> None:
    disk = sc.Disk(size_mib=16, data_mib=4)
    sc.write_disk(tmp_path / "a", disk, 42)
    sc.write_disk(tmp_path / "b", disk, 42)
    sc.write_disk(tmp_path / "c", disk, 43)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()
    sparse_copy(tmp_path / "a", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == (tmp_path / "a").read_bytes()
    assert os.stat(tmp_path / "copy").st_blocks == os.stat(tmp_path / "a").st_blocks


def test_generated_big_inventory_loads(tmp_path: Path) -> None:
    data = generate.generate(servers=2000, networks=10, seed=7, data_mib=0)
    assert data == generate.generate(servers=2000, networks=10, seed=7, data_mib=0)
    scenario = sc.Scenario.model_validate(yaml.safe_load(yaml.safe_dump(data)))
    state = CloudState(tmp_path)
    state.load(scenario, "project-1")
    assert len(state.servers) == 2000
    assert len(state.volumes) >= 2000 * 0.3
    assert len(state.ports) >= 2000
    assert sum(os.stat(v.path).st_blocks for v in state.volumes.values()) == 0
