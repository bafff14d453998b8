"""``demo-report.json``: what the demo migrated, how long each step took, and whether every
disk and VM came out as the source had it.

Shape (``docs/demo.md`` explains each field)::

    {"ok": bool, "scenario": str, "startedAt": iso, "seconds": float,
     "phases": {"stack": s, "providers": s, "plans": s, "migration": s, "verification": s},
     "problems": [str],                       # failures outside any one VM
     "plans": [{"name", "source", "namespace", "phase", "ok",
                "vms": [{"name", "id", "targetName", "status", "error", "ok",
                         "steps": [{"name", "state", "startedAt", "completedAt", "seconds"}],
                         "disks": [{"id", "name", "claim", "bytes", "dataBytes",
                                    "sourceSha256", "targetSha256", "match",
                                    "transferSeconds", "transferredBytes", "mibPerSecond",
                                    "dataMibPerSecond",
                                    "qemuCompare", "converted",
                                    "blockChecksum": {"algorithm", "blockSize", "value",
                                                      "verified", "source", "match"} | null,
                                    "error"}],
                         "config": {"ok", "mismatches": [str]}}]}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.verifying import ChecksumCheck, DiskComparison, mib_per_second

DISK_TRANSFER = "DiskTransfer"


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds(), 3)


def step_timings(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each pipeline step of a planner VM view (``GET /api/v1/plans/{plan}/vms/{vm}``)."""
    return [
        {
            "name": s.get("name"),
            "state": s.get("state"),
            "startedAt": s.get("startedAt"),
            "completedAt": s.get("completedAt"),
            "seconds": seconds_between(s.get("startedAt"), s.get("completedAt")),
        }
        for s in view.get("pipeline") or []
    ]


def transfer_task(view: Mapping[str, Any], disk_id: str) -> Mapping[str, Any] | None:
    """The DiskTransfer task of one disk (its task id is the disk id)."""
    for s in view.get("pipeline") or []:
        if s.get("name") == DISK_TRANSFER:
            for t in s.get("tasks") or []:
                if t.get("id") == disk_id:
                    return t  # type: ignore[no-any-return]
    return None


@dataclass
class DiskResult:
    id: str
    name: str
    bytes: int
    claim: str | None = None
    comparison: DiskComparison | None = None
    transfer_seconds: float | None = None
    transferred: int | None = None
    error: str | None = None
    #: ConvertGuest rewrote the volume: not compared with the source (the boot check is).
    converted: bool = False
    #: The block checksum the populator reported (on the volume) against the source's;
    #: None when it reported none (OpenStack, a warm copy's incremental last stage).
    checksum: ChecksumCheck | None = None

    @property
    def ok(self) -> bool:
        c = self.comparison
        if self.converted:
            return self.error is None and self.claim is not None
        if self.checksum is not None and not self.checksum.match:
            return False
        return self.error is None and c is not None and c.match and c.qemu_identical is not False

    def json(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "id": self.id,
            "name": self.name,
            "claim": self.claim,
            "bytes": self.bytes,
            "dataBytes": c.source.data_bytes if c else None,
            "sourceSha256": c.source.sha256 if c else None,
            "targetSha256": c.target.sha256 if c else None,
            "match": bool(c and c.match),
            "transferSeconds": self.transfer_seconds,
            "transferredBytes": self.transferred,
            "mibPerSecond": mib_per_second(self.bytes, self.transfer_seconds),
            "dataMibPerSecond": mib_per_second(c.source.data_bytes, self.transfer_seconds)
            if c
            else None,
            "qemuCompare": c.qemu_compare if c else None,
            "converted": self.converted,
            "blockChecksum": self.checksum.json() if self.checksum else None,
            "error": self.error,
        }


@dataclass
class VmResult:
    name: str
    id: str
    target_name: str | None = None
    status: str | None = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    disks: list[DiskResult] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    #: ``tools.bootcheck.BootResult.json()``; None: the plan asked for no boot check.
    boot: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return (
            self.status == "Succeeded"
            and not self.mismatches
            and bool(self.disks)
            and all(d.ok for d in self.disks)
            and (self.boot is None or self.boot.get("result") == "passed")
        )

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "targetName": self.target_name,
            "status": self.status,
            "error": self.error,
            "ok": self.ok,
            "steps": self.steps,
            "disks": [d.json() for d in self.disks],
            "config": {"ok": not self.mismatches, "mismatches": self.mismatches},
            "boot": self.boot or {"result": "skipped"},
        }


@dataclass
class PlanResult:
    name: str
    source: str
    namespace: str
    phase: str | None = None
    vms: list[VmResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.phase == "Succeeded" and bool(self.vms) and all(v.ok for v in self.vms)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "namespace": self.namespace,
            "phase": self.phase,
            "ok": self.ok,
            "vms": [v.json() for v in self.vms],
        }


@dataclass
class Report:
    scenario: str
    started_at: str
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    plans: list[PlanResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.plans) and all(p.ok for p in self.plans)

    def json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "scenario": self.scenario,
            "startedAt": self.started_at,
            "seconds": round(self.seconds, 1),
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
            "problems": self.problems,
            "plans": [p.json() for p in self.plans],
        }


def write(path: Path, report: Report) -> None:
    """Atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.json(), indent=2) + "\n")
    os.replace(tmp, path)


def _why(d: DiskResult) -> str:
    c = d.comparison
    if d.checksum is not None and not d.checksum.match:
        return (
            f"the populator's {d.checksum.reported.algorithm} block checksum "
            f"{d.checksum.reported.value[:16]} is not the source's {d.checksum.source[:16]}"
        )
    if c is not None and c.match:
        return f"qemu-img compare: {c.qemu_compare}"
    return "content differs"


def _boot_lines(boot: dict[str, Any]) -> list[str]:
    took = f"{boot.get('seconds')} s, {boot.get('accel')}"
    if boot.get("result") == "passed":
        guest = boot.get("guest") or {}
        mounted = ", ".join(str(m.get("target")) for m in guest.get("fstab") or [])
        return [
            f"        boot: multi-user in {took}; the guest sees {guest.get('cpus')} CPUs, "
            f"{int(guest.get('ram') or 0) >> 20} MiB, {len(guest.get('disks') or [])} disks, "
            f"MACs {', '.join(guest.get('macs') or []) or 'none'}, mounted {mounted or '-'}"
        ]
    lines = [f"        boot: FAILED ({took}): {boot.get('error') or 'the guest differs'}"]
    lines += [f"        boot: {m}" for m in boot.get("mismatches") or []]
    return lines


def summary(report: Report) -> list[str]:
    """The lines the demo prints at the end: one per disk, then the verdict."""
    lines = []
    for p in report.plans:
        lines.append(f"plan {p.name} ({p.source} -> {p.namespace}): {p.phase or 'not started'}")
        for v in p.vms:
            mark = "ok " if v.ok else "BAD"
            lines.append(f"  {mark} VM {v.name} -> {v.target_name or '-'}: {v.status or '-'}")
            if v.error:
                lines.append(f"        error: {v.error}")
            for d in v.disks:
                j = d.json()
                rate = f"{j['mibPerSecond'] or '-'} MiB/s (data {j['dataMibPerSecond'] or '-'})"
                sha = (j["sourceSha256"] or "-")[:16]
                verdict = "sha256 match" if d.ok else f"MISMATCH ({d.error or _why(d)})"
                if d.converted:
                    verdict = "converted in place" if d.ok else f"FAILED ({d.error})"
                lines.append(
                    f"        disk {d.name:<16} {d.bytes / (1 << 20):>6.0f} MiB  {rate:>27}  "
                    f"{sha}  {verdict}"
                )
            for problem in v.mismatches:
                lines.append(f"        config: {problem}")
            if not v.mismatches and v.status == "Succeeded":
                lines.append("        config: CPU, memory, firmware, disks, NICs match the source")
            if v.boot is not None:
                lines += _boot_lines(v.boot)
    for problem in report.problems:
        lines.append(f"problem: {problem}")
    verdict = "PASSED" if report.ok else "FAILED"
    lines.append(f"demo {verdict} in {report.seconds:.0f} s")
    return lines
