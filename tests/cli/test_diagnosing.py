"""``hoist plans logs``' reading of an orchestrator pipeline, without services: which
failures it finds, how it names VMs, how it says an error."""

from __future__ import annotations

from typing import Any

import pytest

from cli import diagnosing
from cli.runner import Failure

PIPELINE: list[dict[str, Any]] = [
    {"name": "Initialize", "tasks": [], "error": None},
    {
        "name": "DiskTransfer",
        "error": {"reason": "PopulatorFailed", "message": "disk a failed", "permanent": False},
        "tasks": [
            {
                "task": "a",
                "error": {"reason": "PopulatorFailed", "message": "disk a failed"},
                "detail": {"pod": "populate-1", "recreations": 3, "log": "one\ntwo\n"},
            },
            {"task": "b", "error": None, "detail": {}},
        ],
    },
    {"name": "CreateVm", "tasks": [], "error": {"reason": "Conflict", "message": "taken"}},
]


def test_failures_are_the_failed_tasks_or_else_the_failed_step() -> None:
    found = diagnosing._failures(PIPELINE)
    assert [(f["step"], f["task"]) for f in found] == [("DiskTransfer", "a"), ("CreateVm", None)]
    assert (found[0]["pod"], found[0]["recreations"], found[0]["log"]) == (
        "populate-1",
        3,
        "one\ntwo\n",
    )


def test_vms_default_to_the_failed_ones_and_unknown_names_are_refused() -> None:
    listed = [
        {"id": "1", "name": "web", "phase": "Failed"},
        {"id": "2", "name": "db", "phase": "Succeeded"},
    ]
    assert [v["id"] for v in diagnosing._pick(listed, "p", ())] == ["1"]
    assert [v["id"] for v in diagnosing._pick(listed, "p", ("db", "1"))] == ["2", "1"]
    with pytest.raises(Failure, match="not in plan p's current migration: nope"):
        diagnosing._pick(listed, "p", ("nope",))


def test_an_error_reads_as_reason_permanence_and_message() -> None:
    said = diagnosing._said({"reason": "DiskLost", "message": "gone", "permanent": True})
    assert said == "DiskLost (permanent): gone"
    assert diagnosing._said("plain") == "plain"
