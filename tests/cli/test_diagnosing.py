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


def test_hooks_show_their_log_failed_or_not(capsys: pytest.CaptureFixture[str]) -> None:
    ok = {"job": "web-prehook-1", "hook": "drain", "outcome": "Succeeded", "tries": 1}
    bad = {"job": "web-posthook-1", "hook": "smoke", "outcome": "Failed", "tries": 2}
    pipeline: list[dict[str, Any]] = [
        {"name": "PreHook", "state": "Completed", "tasks": [], "error": None,
         "detail": {**ok, "log": "--- pod a: Completed, exit code 0 ---\ndrained\n"}},
        {"name": "PostHook", "state": "Failed", "tasks": [],
         "error": {"reason": "HookFailed", "message": "hook 'smoke' failed", "permanent": False},
         "detail": {**bad, "log": "--- pod b: Error, exit code 3 ---\nno answer\n"}},
    ]  # fmt: skip
    failures = diagnosing._failures(pipeline)
    assert [(f["step"], f["job"]) for f in failures] == [("PostHook", "web-posthook-1")]
    hooks = diagnosing._hooks(pipeline)
    assert [(h["step"], h["hook"], h["state"]) for h in hooks] == [
        ("PreHook", "drain", "Completed"),
        ("PostHook", "smoke", "Failed"),
    ]
    report = [{"id": "1", "name": "web", "phase": "Failed", "error": None,
               "failures": failures, "hooks": hooks}]  # fmt: skip
    diagnosing.show("p", report, 5)
    shown = capsys.readouterr().out
    assert "PostHook: HookFailed (temporary): hook 'smoke' failed" in shown
    assert "Job web-posthook-1" in shown
    assert "| no answer" in shown
    assert "PreHook hook drain: Completed (Job web-prehook-1, 1 try)" in shown
    assert "| drained" in shown
