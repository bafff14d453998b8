"""The chaos run of ``tools.chaos`` at its test size: 20 VMs over oVirt and OpenStack, some
failing, some canceled, every service and the controller SIGKILLed (some two at once), NATS
and PostgreSQL SIGKILLed once each, all at seeded points of the plans' progress.
``bench/chaos.py`` runs longer ones (more VMs, more kills, other seeds)."""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

from tools import chaos

SEED = 24


def test_schedule_is_seeded_and_kills_everything_once() -> None:
    first, again = chaos.schedule(SEED), chaos.schedule(SEED)
    assert first == again
    assert chaos.schedule(SEED + 1) != first
    killed = [v for k in first for v in k.victims]
    for name in (*chaos.COMPONENTS, "nats", "postgresql"):
        assert name in killed, name
    assert killed.count("nats") == killed.count("postgresql") == 1
    assert first[0].at == 0.0
    assert all(a.at <= b.at for a, b in itertools.pairwise(first))


async def test_chaos(tmp_path: Path) -> None:
    result = await chaos.run(SEED, 20, tmp_path)
    report = asdict(result)
    assert result.disks_checked > 0, report
    assert result.unexpected == [], report
    assert result.disks_mismatched == [], report
    assert result.leftovers == [], report
    assert result.duplicates == [], report
    assert result.power_wrong == [], report
    assert result.deadletters == 0, report
    assert result.api_5xx == [], report
    assert len(result.kills) == len(chaos.schedule(SEED)), report
    # Most kills land while VMs run (the schedule's thresholds stop at half of them ended).
    assert result.kills_in_flight >= len(result.kills) // 2, report
