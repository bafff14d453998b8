"""demo-report.json: step timings and disk rates from the planner's VM view, the verdict,
and an atomic write."""

from __future__ import annotations

import json
from pathlib import Path

from shared.populator.checksum import BlockChecksum
from tools import demoreport as rep
from tools.verifying import ChecksumCheck, Digest, DiskComparison

MiB = 1 << 20
VIEW = {
    "phase": "Succeeded",
    "pipeline": [
        {"name": "Initialize", "state": "Completed", "startedAt": "2026-01-01T10:00:00+00:00",
         "completedAt": "2026-01-01T10:00:01.500000+00:00", "tasks": []},
        {"name": "DiskTransfer", "state": "Completed", "startedAt": "2026-01-01T10:00:02+00:00",
         "completedAt": "2026-01-01T10:00:12+00:00",
         "tasks": [{"id": "d1", "startedAt": "2026-01-01T10:00:02+00:00",
                    "completedAt": "2026-01-01T10:00:06+00:00",
                    "progress": {"completed": 64 * MiB, "total": 64 * MiB}}]},
        {"name": "Cleanup", "state": "Pending", "startedAt": None, "completedAt": None,
         "tasks": []},
    ],
}  # fmt: skip


def _comparison(same: bool = True) -> DiskComparison:
    src = Digest("a" * 64, 64 * MiB, 16 * MiB, 0.1)
    tgt = Digest("a" * 64 if same else "b" * 64, 64 * MiB, 16 * MiB, 0.1)
    return DiskComparison(src, tgt, "exit 0: Images are identical.")


def _report(same: bool = True, status: str = "Succeeded") -> rep.Report:
    disk = rep.DiskResult("d1", "root", 64 * MiB, claim="web-1-disk-0")
    task = rep.transfer_task(VIEW, "d1")
    assert task is not None
    disk.transfer_seconds = rep.seconds_between(task["startedAt"], task["completedAt"])
    disk.transferred = task["progress"]["total"]
    disk.comparison = _comparison(same)
    vm = rep.VmResult("web-1", "id-1", "web-1", status, steps=rep.step_timings(VIEW), disks=[disk])
    plan = rep.PlanResult("ovirt-demo", "ovirt", "migrated", "Succeeded", [vm])
    return rep.Report("demo.yaml", "2026-01-01T10:00:00+00:00", 42.0, {"stack": 9.0}, [], [plan])


def test_steps_and_rates_from_the_planner_view() -> None:
    steps = rep.step_timings(VIEW)
    assert [(s["name"], s["seconds"]) for s in steps] == [
        ("Initialize", 1.5), ("DiskTransfer", 10.0), ("Cleanup", None)
    ]  # fmt: skip
    assert rep.transfer_task(VIEW, "nope") is None
    disk = _report().plans[0].vms[0].disks[0].json()
    assert disk["mibPerSecond"] == 16.0
    assert disk["transferSeconds"] == 4.0
    assert disk["dataMibPerSecond"] == 4.0
    assert disk["match"] is True
    assert disk["dataBytes"] == 16 * MiB


def test_write_and_verdict(tmp_path: Path) -> None:
    path = tmp_path / "out" / "demo-report.json"
    rep.write(path, _report())
    doc = json.loads(path.read_text())
    assert doc["ok"] is True
    assert doc["plans"][0]["vms"][0]["config"] == {"ok": True, "mismatches": []}
    assert [p.name for p in path.parent.iterdir()] == ["demo-report.json"]  # no temp left
    assert rep.summary(_report())[-1] == "demo PASSED in 42 s"


def test_any_mismatch_or_failure_fails_the_report() -> None:
    bad_disk = _report(same=False)
    assert not bad_disk.ok
    assert bad_disk.json()["plans"][0]["vms"][0]["disks"][0]["match"] is False
    assert any("MISMATCH (content differs)" in line for line in rep.summary(bad_disk))
    tail = _report()
    comparison = tail.plans[0].vms[0].disks[0].comparison
    assert comparison is not None
    tail.plans[0].vms[0].disks[0].comparison = DiskComparison(
        comparison.source, comparison.target, "exit 1: Content mismatch at offset 67108864!"
    )
    assert not tail.ok  # equal prefixes, but the guest would see garbage past the disk
    assert any("qemu-img compare: exit 1" in line for line in rep.summary(tail))
    failed = _report(status="Failed")
    assert not failed.ok
    assert rep.summary(failed)[-1].startswith("demo FAILED")
    config = _report()
    config.plans[0].vms[0].mismatches.append("cpu.cores: source 2, target 1")
    assert not config.ok
    assert "        config: cpu.cores: source 2, target 1" in rep.summary(config)
    problem = _report()
    problem.problems.append("plan x: not finished")
    assert not problem.ok
    no_disks = _report()
    no_disks.plans[0].vms[0].disks[0].comparison = None
    no_disks.plans[0].vms[0].disks[0].error = "no claim in the target namespace"
    assert not no_disks.ok
    assert rep.Report("s", "t").ok is False  # nothing migrated is no success


def test_a_reported_block_checksum_unlike_the_sources_fails_the_disk() -> None:
    reported = BlockChecksum("sha256", MiB, "c" * 64, verified=True)
    good = _report()
    good.plans[0].vms[0].disks[0].checksum = ChecksumCheck(reported, "c" * 64)
    assert good.ok
    assert good.json()["plans"][0]["vms"][0]["disks"][0]["blockChecksum"]["match"] is True
    bad = _report()
    bad.plans[0].vms[0].disks[0].checksum = ChecksumCheck(reported, "d" * 64)
    assert not bad.ok
    assert any("block checksum cccccccc" in line for line in rep.summary(bad))
