"""Typed rows of the planner's tables: they name every column, and only columns."""

from __future__ import annotations

import typing
from typing import Any

from services.planner import db


def test_a_plan_row_has_the_columns_of_plans() -> None:
    hints = typing.get_type_hints(db.PlanRow)
    assert list(hints) == list(db.plans.c.keys())
    nullable = {c.name for c in db.plans.c if c.nullable}
    assert {k for k, t in hints.items() if type(None) in typing.get_args(t)} == nullable


def test_plan_row_is_a_plain_dict_of_the_row() -> None:
    row: dict[str, Any] = {c.name: None for c in db.plans.c}
    made = typing.cast(dict[str, Any], db.plan_row(row))  # a copy: the caller's row stays
    assert (made, type(made)) == (row, dict)
    assert made is not row


def test_validating_keeps_a_finished_migrations_phase() -> None:
    """Issue 24: ``POST /plans/{id}/validate`` turned a Succeeded plan back to Ready. Only
    validating (``keep_phase``) leaves what a migration made of the plan; a plan not run
    yet moves between NotReady and Ready, and a change (PATCH) makes it ready to run again."""
    from services.planner.plans import outcome
    from services.planner.problems import Result

    clean, broken = Result(), Result()
    broken.add("vms[0]", "VmMissing", "no such VM")
    for finished in ("Succeeded", "Failed", "Canceled"):
        plan: dict[str, Any] = {"phase": finished, "vms": []}
        for res in (clean, broken):
            assert outcome(plan, res, keep_phase=True)["phase"] == finished
        assert outcome(plan, clean, keep_phase=False)["phase"] == "Ready"
    for not_run in (None, "NotReady", "Ready"):
        plan = {"phase": not_run, "vms": []}
        assert outcome(plan, clean, keep_phase=True)["phase"] == "Ready"
        assert outcome(plan, broken, keep_phase=True)["phase"] == "NotReady"
