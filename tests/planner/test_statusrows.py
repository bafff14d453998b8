"""The projector's statements (``statusrows``): compiled once, their SQL as PostgreSQL gets
it, with values bound by ``values()`` and ``inline()`` rendered into the text."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import bindparam, select

from services.planner import db, statusrows
from services.planner.statusrows import Prepared, inline
from shared.db.engine import values
from shared.payloads import Step
from shared.pipeline import PLAN_VM_FINAL, POSITION, steps_of

PREPARED = sorted(name for name, v in vars(statusrows).items() if isinstance(v, Prepared))
_V = db.vms


def test_there_are_prepared_statements() -> None:
    assert {"LOCK_VM", "READ_PIPELINE", "WRITE_STEP", "INSERT_STEP"} <= set(PREPARED)


@pytest.mark.parametrize("name", PREPARED)
def test_prepared_text_is_the_compiled_statement(name: str) -> None:
    """Compiling for placeholders changed nothing of the statements that have none."""
    prepared: Prepared = getattr(statusrows, name)
    assert "POSTCOMPILE" not in prepared.sql
    compiled = prepared.statement.compile(dialect=statusrows._DIALECT)
    assert prepared.sql == str(compiled)
    assert prepared.names == tuple(compiled.positiontup or ())


def test_bound_values_are_rendered_into_the_text() -> None:
    prepared = Prepared(
        select(_V.c.vm_id).where(
            _V.c.migration_id == bindparam("mid"),
            _V.c.phase.in_(values("final", PLAN_VM_FINAL)),
            _V.c.step == inline("transfer", Step.DISK_TRANSFER),
            _V.c.name == bindparam("name"),
        )
    )
    assert " ".join(prepared.sql.split()) == (
        "SELECT planner.vms.vm_id FROM planner.vms WHERE planner.vms.migration_id = $1::VARCHAR"
        " AND planner.vms.phase IN ('Succeeded', 'Failed', 'Canceled')"
        " AND planner.vms.step = 'DiskTransfer' AND planner.vms.name = $2::VARCHAR"
    )
    assert prepared.names == ("mid", "name")


def test_a_list_parameter_is_refused() -> None:
    """A plain expanding list would change the text (and the parameters' names) per call."""
    with pytest.raises(ValueError, match=r"with values\(\)"):
        Prepared(select(_V.c.vm_id).where(_V.c.phase.in_(bindparam("phases", expanding=True))))


def test_steps_sort_where_they_run() -> None:
    assert [statusrows.position(s) for s in steps_of("openstack")] == sorted(
        POSITION[s] for s in steps_of("openstack")
    )
    assert statusrows.position(Step.DISK_TRANSFER) == POSITION["DiskTransfer"]


def test_an_unknown_step_sorts_last_and_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newer orchestrator's step (a rolling upgrade) is shown after the known ones."""
    with caplog.at_level(logging.WARNING, logger="hoist.planner.statusrows"):
        first = statusrows.position("FutureStepForTests")
        again = statusrows.position("FutureStepForTests")
        other = statusrows.position("AnotherFutureStepForTests")
    assert first == again == other == len(POSITION)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "'FutureStepForTests'" in warned[0]
    assert "'AnotherFutureStepForTests'" in warned[1]
