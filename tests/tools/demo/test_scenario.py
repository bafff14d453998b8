"""The demo's scenario file: the default one is valid, and every kind of mistake is one
readable message (the demo then exits 2 before starting anything)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.ovirt.scenario import from_dict
from tools import demoscenario as dsc

DEFAULT: dict[str, Any] = yaml.safe_load(dsc.DEFAULT_PATH.read_text())


def _bad(doc: object) -> str:
    with pytest.raises(dsc.ScenarioError) as info:
        dsc.parse(doc, "s.yaml")
    return str(info.value)


def _edit(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT)
    doc.update(changes)
    return doc


def test_the_default_scenario_is_what_the_issue_asks_for() -> None:
    s = dsc.load(dsc.DEFAULT_PATH)
    assert s.ovirt is not None
    assert s.openstack is not None
    inv, faults = from_dict(s.ovirt.sim_dict())
    assert (len(inv.vms), len(inv.disks), faults) == (3, 5, [])
    assert any(d.format == "cow" for d in inv.disks.values())
    sparse = [d for d in inv.disks.values() if d.provisioned_size == 20 << 30]
    assert len(sparse) == 1
    assert sparse[0].actual_size <= 128 << 20
    assert {v.bios_type for v in inv.vms.values()} == {
        "q35_sea_bios", "q35_ovmf", "q35_secure_boot"
    }  # fmt: skip
    boots = sorted(srv.boot for srv in s.openstack.servers)
    assert boots == ["image", "volume"]
    assert [p.source for p in s.plans] == ["ovirt", "openstack"]
    assert s.plans[0].storage["data"].cli() == "standard:Block"
    assert s.namespaces() == {"migrated"}


def test_storage_targets_as_the_cli_takes_them() -> None:
    st = dsc.StorageTarget.model_validate
    assert st({"storageClass": "a"}).cli() == "a"
    assert st({"storageClass": "a", "accessMode": "ReadWriteMany"}).cli() == "a::ReadWriteMany"
    full = {"storageClass": "a", "volumeMode": "Filesystem", "accessMode": "ReadWriteOnce"}
    assert st(full).cli() == "a:Filesystem:ReadWriteOnce"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({}, "plans: Field required"),
        (_edit(plan=[]), "plan: unknown key"),
        (_edit(namespace="Not_A_Name"), "namespace: String should match pattern"),
    ],
)
def test_top_level_mistakes(doc: object, message: str) -> None:
    assert message in _bad(doc)


def _ovirt_vm(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT)
    doc["ovirt"]["vms"][0].update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_ovirt_vm(memroy="2GiB"), "ovirt.vms.0.memroy: unknown key (a typo?)"),
        (_ovirt_vm(memory="2 parsecs"), "ovirt.vms.0.memory: Value error, size '2 parsecs'"),
        (_ovirt_vm(firmware="coreboot"), "ovirt.vms.0.firmware: Input should be 'bios'"),
        (_ovirt_vm(cpu={"sockets": 0}), "ovirt.vms.0.cpu.sockets: Input should be greater"),
        (_ovirt_vm(nics=[{"network": "prod", "mac": "zz"}]), "ovirt.vms.0.nics.0.mac"),
        (_ovirt_vm(disks=[{"format": "vmdk"}]), "ovirt.vms.0.disks.0.format"),
    ],
)
def test_ovirt_section_mistakes(doc: object, message: str) -> None:
    assert message in _bad(doc)


def test_openstack_section_mistakes() -> None:
    doc = copy.deepcopy(DEFAULT)
    doc["openstack"]["servers"][0]["boot"] = "pxe"
    assert "openstack.servers.0.boot: Input should be 'image' or 'volume'" in _bad(doc)
    doc = copy.deepcopy(DEFAULT)
    doc["openstack"]["servers"][0]["flavor"] = "m9.huge"
    assert "'os-web' names no flavor" in _bad(doc)


def _plan(index: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT)
    doc["plans"][index].update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_plan(0, vms=["web-1", "nope"]), "(ovirt-demo).vms: the oVirt scenario has no VM 'nope'"),
        (_plan(1, vms=["os-nope"]), "the OpenStack scenario has no server 'os-nope'"),
        (_plan(0, source="vmware"), "plans.0.source: Input should be 'ovirt' or 'openstack'"),
        (_plan(0, targetPowerState="maybe"), "plans.0.targetPowerState"),
        (_plan(0, name="Bad Name"), "plans.0.name: String should match pattern"),
        (_plan(1, name="ovirt-demo"), "two plans are named 'ovirt-demo'"),
        (_plan(0, vms=[]), "plans.0.vms: List should have at least 1 item"),
        (_plan(0, networks={"ovirtmgmt": "pod"}), "network 'prod' of the planned VMs is not"),
        (_plan(0, networks={"ovirtmgmt": "pod", "prod": "pod", "storage": "ignored",
                            "backup": "ignored"}), "VM 'web-1' has 2 NICs mapped to the pod"),
        (_plan(0, networks={"ovirtmgmt": "bridge", "prod": "pod", "storage": "ignored",
                            "backup": "ignored"}), "'bridge': expected pod, ignored or multus:"),
        (_plan(0, networks={**DEFAULT["plans"][0]["networks"], "dmz": "pod"}),
         "the source has no network 'dmz'"),
        (_plan(0, storage={}), "storage domain 'data' is not mapped"),
        (_plan(0, storage={"data": {"storageClass": "gold"}}), "no storage class 'gold'"),
        (_plan(0, storage={"data": {"storageClass": "standard", "volumeMode": "Raw"}}),
         "plans.0.storage.data.volumeMode"),
        (_plan(1, storage={"glance": {"storageClass": "standard"}}),
         "'standard' (used by the planned servers) is not mapped"),
        (_plan(1, source="ovirt"), "the oVirt scenario has no VM 'os-web'"),
        (_plan(0, vms=["web-1"], name="again") | {}, None),
    ],
)  # fmt: skip
def test_plan_mistakes(doc: dict[str, Any], message: str | None) -> None:
    if message is None:  # a subset of the VMs is a good plan
        dsc.parse(doc)
        return
    assert message in _bad(doc)


def test_a_vm_in_two_plans_and_a_missing_source_section() -> None:
    doc = copy.deepcopy(DEFAULT)
    doc["plans"].append(copy.deepcopy(doc["plans"][0]) | {"name": "twice"})
    assert "VM ovirt/web-1 is in plans ovirt-demo and twice" in _bad(doc)
    doc = copy.deepcopy(DEFAULT)
    del doc["openstack"]
    assert "source openstack, but the scenario has no openstack section" in _bad(doc)


def test_every_problem_is_listed_at_once() -> None:
    doc = _plan(0, vms=["nope"], storage={"data": {"storageClass": "gold"}})
    message = _bad(doc)
    assert "no VM 'nope'" in message
    assert "no storage class 'gold'" in message


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(dsc.ScenarioError, match="cannot read it"):
        dsc.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("plans: [unclosed\n")
    with pytest.raises(dsc.ScenarioError, match="not valid YAML"):
        dsc.load(broken)


def test_the_demo_exits_2_on_a_bad_scenario_without_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_ovirt_vm(memroy="1GiB")))
    report = tmp_path / "report.json"
    from tools.demo import main  # imports the whole stack: only this test needs it

    assert main(["--scenario", str(bad), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert "invalid scenario" in err
    assert "memroy: unknown key" in err
    assert "Traceback" not in err
    assert not report.exists()


def test_the_docs_show_the_default_scenario_as_it_is() -> None:
    docs = (dsc.DEFAULT_PATH.parents[2] / "docs" / "demo.md").read_text()
    assert dsc.DEFAULT_PATH.read_text().rstrip("\n") in docs, "paste it into docs/demo.md again"


def test_static_volumes_for_plans_onto_static_classes(tmp_path: Path) -> None:
    """A plan may name a static class (``local-static``, or "" for none) when the scenario
    lists volumes of it; the volumes become local PersistentVolumes with node affinity."""
    onto_static = _plan(0, storage={"data": {"storageClass": "local-static"}})
    assert "storage class 'local-static' is static: list the PersistentVolumes" in _bad(onto_static)
    volumes = [
        {"name": "pv-1", "size": "20GiB", "node": "node-1"},
        {"name": "pv-2", "storageClass": "", "size": "1GiB", "volumeMode": "Block"},
    ]
    scenario = dsc.parse(onto_static | {"volumes": volumes})
    first = scenario.volumes[0].manifest(tmp_path)
    assert first["spec"]["storageClassName"] == "local-static"
    assert first["spec"]["capacity"] == {"storage": str(20 << 30)}
    assert first["spec"]["local"] == {"path": str(tmp_path / "pv-1")}
    term = first["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["node-1"]
    assert "nodeAffinity" not in scenario.volumes[1].manifest(tmp_path)["spec"]
    dsc.parse(_plan(0, storage={"data": {"storageClass": ""}}) | {"volumes": volumes})
    standard = {"name": "pv-3", "storageClass": "standard", "size": "1GiB"}
    assert "storageClass 'standard' is not static" in _bad(
        onto_static | {"volumes": [*volumes, standard]}
    )
    assert "two volumes are named 'pv-1'" in _bad(onto_static | {"volumes": [*volumes, volumes[0]]})


def test_plans_into_two_clusters() -> None:
    """``target: remote`` puts a plan into the second cluster: its namespaces are made
    there, not in Hoist's own, and a static class (whose volumes the scenario makes in
    Hoist's cluster) is refused for it, precisely."""
    path = dsc.DEFAULT_PATH.parent / "remote.yaml"
    s = dsc.load(path)
    assert s.needs_remote()
    assert [p.target for p in s.plans] == ["local", "remote", "local"]
    assert s.namespaces("remote") == {"far-away"}
    assert s.namespaces() == {"migrated"}
    assert not dsc.load(dsc.DEFAULT_PATH).needs_remote()
    doc = yaml.safe_load(path.read_text())
    doc["plans"][1]["storage"] = {"data": {"storageClass": "local-static"}}
    assert "storage class 'local-static' is static, and the scenario's volumes are made in " in (
        _bad(doc)
    )
    doc["plans"][1]["target"] = "elsewhere"
    assert "plans.1.target: Input should be 'local' or 'remote'" in _bad(doc)
