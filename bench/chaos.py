"""Benchmark: a seeded chaos run, longer than the test's (``tools/chaos.py`` says what it does).

Set-up: private NATS and PostgreSQL (``synchronous_commit=on``), the whole stack on them
(``tools.stack``: oVirt engine with real imageio, OpenStack cloud with real Keystone and
Glance, the simulated cluster, the four services and the controller as processes). ``--vms``
VMs, half per source, each one up with one 4 MiB disk (half data, oVirt transfers at
512 KiB/s), at most 3 VMs of a plan in flight; a fifth of the oVirt VMs fail (their disk
never transfers), a few of each plan are canceled once they run. Both plans start at once;
at seeded points of their progress every service and the controller are SIGKILLed at least
once (``--extra-kills`` more, some two at once), NATS and
PostgreSQL once each, and started again.

Targets, each 0: ``disks_mismatched`` (a succeeded VM's disk not byte-exact), ``leftovers``
(objects in the target namespace that should be gone), ``duplicates`` (two claims or
VirtualMachines of one disk or VM, or two populator pods of one disk alive at once),
``api_5xx`` (answers 500-599 but 503, which a service gives while NATS or PostgreSQL is
down) and ``deadletters``. Also counted: ``power_wrong`` (a source VM off after a failure
or cancel, or on after a success) and ``unexpected`` (a VM ended other than planned).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import _report
from tools import chaos


def main() -> int:
    p = _report.parser(__doc__)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--vms", type=int, default=40)
    p.add_argument("--extra-kills", type=int, default=8, help="kills beyond one per process")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoist-chaos-") as tmp:
        result = asyncio.run(chaos.run(args.seed, args.vms, Path(tmp), args.extra_kills))
    figures = {
        "seed": result.seed,
        "vms": result.vms,
        "kills": len(result.kills),
        "processes_killed": sum(len(k) for k in result.kills),
        "kills_in_flight": result.kills_in_flight,
        "disks_checked": result.disks_checked,
        "disks_mismatched": len(result.disks_mismatched),
        "leftovers": len(result.leftovers),
        "duplicates": len(result.duplicates),
        "power_wrong": len(result.power_wrong),
        "unexpected": len(result.unexpected),
        "api_5xx": len(result.api_5xx),
        "deadletters": result.deadletters,
        "wall_s": result.wall_s,
    }
    targets = {
        key: _report.target(figures[key], "<=", 0)
        for key in ("disks_mismatched", "leftovers", "duplicates", "api_5xx", "deadletters")
    }
    details = {k: v for k, v in asdict(result).items() if isinstance(v, list) and v}
    if details:
        print(f"details: {details}", file=sys.stderr)
    missed = [k for k, t in targets.items() if not t["met"]]
    if missed:
        print(f"targets NOT met: {', '.join(missed)}")
    return _report.emit({"bench": "chaos", "figures": figures, "targets": targets}, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
