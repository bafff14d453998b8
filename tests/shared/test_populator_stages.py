"""The multi-stage (warm) part of the populator contract: what the orchestrator asks, what
the controller runs and records, what a stage pod reports."""

from __future__ import annotations

from typing import Any

import pytest

from shared.populator import BackupMode, Checkpoint, PodArgs, StageArgs, StageResult, Stages
from shared.populator.kinds import OvirtSpec, Source
from shared.populator.stages import spec_with_stages


def _cr(
    checkpoints: list[Checkpoint] | None, final: bool = False, copied: tuple[str, ...] = ()
) -> dict[str, Any]:
    spec: dict[str, Any] = {"engineUrl": "https://e", "engineSecretName": "s", "diskId": "d"}
    if checkpoints is not None:
        spec = spec_with_stages(spec, checkpoints, final)
    status = {"stages": [{"current": c, "backupId": "b", "bytes": 5} for c in copied]}
    return {"spec": spec, "status": status}


def test_a_cr_without_checkpoints_is_copied_once_cold() -> None:
    assert Stages.of(_cr(None)) is None


def test_a_warm_cr_waits_for_its_first_checkpoint_then_runs_the_last_uncopied_one() -> None:
    first = Checkpoint("c1", "b1")
    second = Checkpoint("c2", "b2", previous="c1", mode=BackupMode.INCREMENTAL)
    empty = Stages.of(_cr([]))
    assert empty is not None
    assert empty.pending() is None
    assert not empty.complete()
    one = Stages.of(_cr([first]))
    assert one is not None
    assert one.pending() == first
    assert one.index_of("c1") == 0
    two = Stages.of(_cr([first, second], copied=("c1",)))
    assert two is not None
    assert two.pending() == second
    assert not two.complete()
    done = Stages.of(_cr([first, second], final=True, copied=("c1", "c2")))
    assert done is not None
    assert done.pending() is None
    assert done.complete()
    assert done.copied[1].bytes == 5


def test_a_checkpoint_round_trips_and_refuses_what_the_crd_refuses() -> None:
    c = Checkpoint("c2", "b2", previous="c1", mode=BackupMode.INCREMENTAL)
    assert Checkpoint.of(c.to_dict()) == c
    with pytest.raises(ValueError, match="needs current and backupId"):
        Checkpoint.of({"current": "c"})
    with pytest.raises(ValueError, match="partial"):
        Checkpoint.of({"current": "c", "backupId": "b", "mode": "partial"})


def test_stage_flags_are_built_and_parsed_from_one_table() -> None:
    stage = StageArgs.for_checkpoint(Checkpoint("c2", "b2", "c1", BackupMode.INCREMENTAL), 1)
    args = PodArgs(
        Source.OVIRT,
        "/v",
        "s",
        "c",
        "ns",
        "u",
        "1Gi",
        OvirtSpec("https://e", "s", "d"),
        stage=stage,
    )
    parsed = PodArgs.parser(Source.OVIRT, "test").parse_args(args.argv()[1:])
    assert StageArgs.parsed(parsed) == stage
    cold = PodArgs(Source.OVIRT, "/v", "s", "c", "ns", "u", "1Gi", OvirtSpec("https://e", "s", "d"))
    assert (
        StageArgs.parsed(PodArgs.parser(Source.OVIRT, "test").parse_args(cold.argv()[1:])) is None
    )
    first = StageArgs.for_checkpoint(Checkpoint("c1", "b1"), 0)
    assert first.fresh
    assert "--fresh-volume" in first.argv()


def test_a_stage_result_is_what_the_pod_wrote_or_nothing() -> None:
    result = StageResult(copied=10, zeroed=4)
    assert StageResult.parse(result.to_json()) == result
    assert result.bytes == 14
    assert StageResult.parse("ovirt-populator: failed: boom") is None
    assert StageResult.parse('{"copied": 1}') is None
