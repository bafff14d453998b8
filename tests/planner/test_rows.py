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
