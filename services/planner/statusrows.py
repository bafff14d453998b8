"""The status tables' rows as the projector and the progress follower read and write them.

The projector is the planner's hot path: every step of every VM is an event, some 18,000
for a plan of 1,000 VMs, and each runs in its own transaction. Measured on two cores
(``bench/planner.py``), its CPU went to SQLAlchemy rather than to PostgreSQL: building a
statement per event cost more than the round trip it made, and running a built one through
the session still cost about twice what asyncpg itself does. So the statements here are
SQLAlchemy Core, built once, compiled once for asyncpg (``Prepared``), and run on the
session's own asyncpg connection, inside the session's transaction: the SQL is still
written (and type-checked) in one place, and a step event costs the inbox claim plus three
round trips (lock the VM, read its pipeline, one write).

Why the VM lock and the pipeline read are two statements: a statement that waited for the
lock would return the steps as its snapshot had them, before the holder of the lock
changed them (PostgreSQL re-reads only the locked row after the wait).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    String,
    and_,
    bindparam,
    case,
    func,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import BindParameter

from services.planner import db
from shared.payloads import StepState, VmStepChanged
from shared.pipeline import POSITION

log = logging.getLogger("hoist.planner.statusrows")

#: What a step and a task have in common (the projector's ``merge`` decides them).
STATE_COLUMNS = (
    "state",
    "attempt",
    "started_at",
    "completed_at",
    "progress_completed",
    "progress_total",
    "error",
)
STEP_WRITTEN = (*STATE_COLUMNS, "detail")
TASK_WRITTEN = (*STATE_COLUMNS, "observed_at")
#: What an outcome writes of its VM.
VM_WRITTEN = (
    "phase",
    "step",
    "started_at",
    "completed_at",
    "error",
    "target_vm",
    "bytes_done",
    "bytes_total",
    "rate",
    "eta_seconds",
)
#: What a step event can change of its VM (not its outcome, error, target, rate or ETA).
VM_STEPPED = ("phase", "step", "started_at", "bytes_done", "bytes_total")
MIGRATION_WRITTEN = ("vms_succeeded", "vms_failed", "vms_canceled", "phase", "completed_at")


def inline(name: str, member: StrEnum) -> BindParameter[Any]:
    """One value (a step, a state, a phase) for ``text()`` SQL, rendered into the statement
    at execution, as ``shared.db.engine.values()`` renders a list: the value is declared
    once in Python, and PostgreSQL still gets the literal it always got (the same text, so
    the same plans, whatever asyncpg's prepared statements make of parameters)."""
    return bindparam(name, member.value, literal_execute=True)


RESUM_STEPS = text(
    """
    UPDATE planner.steps AS s SET
        progress_completed = CASE WHEN s.state = :completed
                                  THEN greatest(t.done, t.total) ELSE t.done END,
        progress_total = t.total, updated_at = now()
    FROM (
        SELECT k.migration_id, k.vm_id, k.step,
               CAST(sum(x.progress_completed) AS bigint) AS done,
               CAST(sum(x.progress_total) AS bigint) AS total
        FROM unnest(CAST(:migration_id AS text[]), CAST(:vm_id AS text[]),
                    CAST(:step AS text[])) AS k(migration_id, vm_id, step)
        JOIN planner.tasks AS x
          ON x.migration_id = k.migration_id AND x.vm_id = k.vm_id AND x.step = k.step
        GROUP BY k.migration_id, k.vm_id, k.step
    ) AS t
    WHERE s.migration_id = t.migration_id AND s.vm_id = t.vm_id AND s.step = t.step
      AND (s.progress_completed, s.progress_total) IS DISTINCT FROM (
          CASE WHEN s.state = :completed THEN greatest(t.done, t.total) ELSE t.done END,
          t.total)
    """
).bindparams(inline("completed", StepState.COMPLETED))
"""A step with tasks gets their sums as its progress (batched: one row per array entry).
The projector does the same sum itself, from the rows it read under the VM's lock."""

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


class Prepared:
    """A Core statement compiled once for asyncpg, run on the asyncpg connection under
    ``session`` (so in its transaction). Parameters by name, as for ``session.execute``;
    rows come back as dicts (JSON columns decoded by the codec SQLAlchemy installed on the
    connection, which takes JSON text: JSON parameters are serialized here)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=_DIALECT)
        if compiled.post_compile_params:
            raise ValueError("a list parameter changes the SQL per call: bind it with values()")
        if compiled.literal_execute_params:
            # A value or list bound with ``inline()`` or ``values()`` is rendered into the
            # text here, once, as SQLAlchemy does at each execution; left to the compiler,
            # the text would keep a ``__[POSTCOMPILE_...]`` placeholder asyncpg cannot run.
            # Rendering needs a value for every parameter: the others stay ``$n``.
            inline = {b.key for b in compiled.literal_execute_params}
            others = {name: None for name in compiled.binds if name not in inline}
            compiled = statement.params(others).compile(
                dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
            )
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Every value is a named parameter: a literal in the statement would become a bound
        # parameter with a made-up name that no caller passes.
        self.json = frozenset(
            name for name, b in compiled.binds.items() if isinstance(b.type, sqltypes.JSON)
        )

    def _args(self, params: dict[str, Any]) -> list[Any]:
        return [json.dumps(params[n]) if n in self.json else params[n] for n in self.names]

    async def rows(self, session: AsyncSession, params: dict[str, Any]) -> list[dict[str, Any]]:
        driver = await _driver(session)
        return [dict(r) for r in await driver.fetch(self.sql, *self._args(params))]

    async def first(self, session: AsyncSession, params: dict[str, Any]) -> dict[str, Any] | None:
        driver = await _driver(session)
        row = await driver.fetchrow(self.sql, *self._args(params))
        return dict(row) if row is not None else None

    async def run(self, session: AsyncSession, params: dict[str, Any]) -> None:
        driver = await _driver(session)
        await driver.execute(self.sql, *self._args(params))


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection of ``session``'s transaction (begun if it was not)."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


def _set(table: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    """``SET column = :<prefix><column>`` for ``columns``, typed as the columns, and
    ``updated_at``."""
    return {
        **{k: bindparam(f"{prefix}{k}", type_=table.c[k].type) for k in columns},
        "updated_at": func.now(),
    }


_V, _S, _T, _M, _P = db.vms, db.steps, db.tasks, db.migrations, db.plans

LOCK_VM = Prepared(
    select(_V)
    .where(_V.c.migration_id == bindparam("mid"), _V.c.vm_id == bindparam("vid"))
    .with_for_update()
)
LOCK_VM_FOR_STEP = Prepared(
    select(_V.c.migration_id, _V.c.vm_id, *(_V.c[k] for k in VM_STEPPED))
    .where(_V.c.migration_id == bindparam("mid"), _V.c.vm_id == bindparam("vid"))
    .with_for_update()
)
LOCK_PLAN = Prepared(
    select(_P.c.id, _P.c.migration_id, _P.c.phase)
    .where(_P.c.id == bindparam("pid"))
    .with_for_update()
)
LOCK_MIGRATION = Prepared(
    select(*db.migration_status).where(_M.c.id == bindparam("id")).with_for_update()
)

STEP_READ = ("step", "position", *STATE_COLUMNS, "detail")
_ONE_STEP = _S.c.step == bindparam("with_tasks", type_=String)
_ONE_TASK = _T.c.task == bindparam("the_task", type_=String)
# Every step of a VM, and the tasks of one step (``with_tasks``; NULL: none), with the JSON
# of that step and of one of its tasks (``the_task``) only: the others' are not needed.
READ_PIPELINE = Prepared(
    select(
        *(
            case((_ONE_STEP, _S.c[k]), else_=null()).label(k)
            if k in ("error", "detail")
            else _S.c[k]
            for k in STEP_READ
        ),
        *(
            case((_ONE_TASK, _T.c[k]), else_=null()).label(f"task_{k}")
            if k == "error"
            else _T.c[k].label(f"task_{k}")
            for k in ("task", *TASK_WRITTEN)
        ),
    )
    .select_from(
        _S.outerjoin(
            _T,
            and_(
                _T.c.migration_id == _S.c.migration_id,
                _T.c.vm_id == _S.c.vm_id,
                _T.c.step == _S.c.step,
                _ONE_STEP,
            ),
        )
    )
    .where(_S.c.migration_id == bindparam("mid"), _S.c.vm_id == bindparam("vid"))
)
COUNT_PHASES = Prepared(
    select(_V.c.phase, func.count().label("n"))
    .where(_V.c.migration_id == bindparam("mid"))
    .group_by(_V.c.phase)
)
LAST_COMPLETED = Prepared(
    select(func.max(_V.c.completed_at).label("last")).where(_V.c.migration_id == bindparam("mid"))
)

# The writes of a step event in one statement: its step, its task and its VM, each only if
# its flag says it changed (data-modifying CTEs run whether or not they are referenced).
_K_MID: Any = bindparam("k_mid", type_=String)
_K_VID: Any = bindparam("k_vid", type_=String)
_K_STEP: Any = bindparam("k_step", type_=String)
WRITE_STEP = Prepared(
    update(_V)
    .where(_V.c.migration_id == _K_MID, _V.c.vm_id == _K_VID)
    .where(bindparam("v_write", type_=Boolean))
    .values({**_set(_V, "v_", VM_STEPPED), "revision": db.revision_seq.next_value()})
    .add_cte(
        update(_S)
        .where(_S.c.migration_id == _K_MID, _S.c.vm_id == _K_VID, _S.c.step == _K_STEP)
        .where(bindparam("s_write", type_=Boolean))
        .values(_set(_S, "s_", STEP_WRITTEN))
        .cte("step_written")
    )
    .add_cte(
        update(_T)
        .where(_T.c.migration_id == _K_MID, _T.c.vm_id == _K_VID, _T.c.step == _K_STEP)
        .where(_T.c.task == bindparam("k_task", type_=String))
        .where(bindparam("t_write", type_=Boolean))
        .values(_set(_T, "t_", TASK_WRITTEN))
        .cte("task_written")
    )
)
UPDATE_VM = Prepared(
    update(_V)
    .where(_V.c.migration_id == _K_MID, _V.c.vm_id == _K_VID)
    .values({**_set(_V, "p_", VM_WRITTEN), "revision": db.revision_seq.next_value()})
)
UPDATE_MIGRATION = Prepared(
    update(_M)
    .where(_M.c.id == bindparam("k_id"))
    .values(
        {
            **{k: bindparam(f"p_{k}", type_=_M.c[k].type) for k in MIGRATION_WRITTEN},
            "revision": db.revision_seq.next_value(),
        }
    )
)
UPDATE_PLAN_PHASE = Prepared(
    update(_P)
    .where(_P.c.id == bindparam("k_id"))
    .values(
        phase=bindparam("p_phase", type_=String),
        updated_at=bindparam("p_updated_at", type_=_P.c.updated_at.type),
        revision=db.revision_seq.next_value(),
    )
)
INSERT_STEP = Prepared(
    _S.insert().values(
        migration_id=_K_MID,
        vm_id=_K_VID,
        step=_K_STEP,
        position=bindparam("p_position", type_=_S.c.position.type),
        state=bindparam("p_state", type_=String),
    )
)
INSERT_TASK = Prepared(
    _T.insert().values(
        migration_id=_K_MID,
        vm_id=_K_VID,
        step=_K_STEP,
        task=bindparam("k_task", type_=String),
        name=bindparam("p_name", type_=String),
        state=bindparam("p_state", type_=String),
    )
)


# --- what the projector does with them -----------------------------------------------------


async def pipeline(
    session: AsyncSession, key: dict[str, str], with_tasks: str | None, task: str | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A VM's steps (name -> row) and the tasks of step ``with_tasks`` (task -> row); JSON
    columns of step ``with_tasks`` and of task ``task`` only. Read after locking the VM."""
    steps: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    params = {**key, "with_tasks": with_tasks, "the_task": task}
    for r in await READ_PIPELINE.rows(session, params):
        steps.setdefault(r["step"], {k: r[k] for k in STEP_READ})
        if r["task_task"] is not None:
            tasks[r["task_task"]] = {k: r[f"task_{k}"] for k in ("task", *TASK_WRITTEN)}
    return steps, tasks


_UNKNOWN_STEPS: set[str] = set()


def position(step: str) -> int:
    """Where ``step`` sorts in a VM's pipeline: where it runs (``shared.pipeline.POSITION``).

    A step this planner does not know sorts after every step it knows, rather than failing
    the event: during a rolling upgrade a newer orchestrator may run (and report) a step
    added after this planner was built, and its VMs' status must still be shown. (Today
    ``VmStepChanged.step`` is a ``Step``, so such a name is refused when the event is read;
    this keeps the projector from being the place that breaks if that is ever relaxed.)
    It is logged once per name and process: a planner older than its orchestrator is
    worth knowing about, once."""
    found = POSITION.get(step)
    if found is not None:
        return found
    if step not in _UNKNOWN_STEPS:
        _UNKNOWN_STEPS.add(step)
        log.warning("step %r is not one this planner knows; it is shown after the others", step)
    return len(POSITION)


async def insert_step(session: AsyncSession, ev: VmStepChanged) -> dict[str, Any]:
    """A step the pipeline did not foresee, Pending, where it runs; its row."""
    name = ev.step.value
    step: dict[str, Any] = {"step": name, "position": position(name)}
    step |= {"state": StepState.PENDING.value, "attempt": 1, "progress_completed": 0}
    step |= {"progress_total": 0, "started_at": None, "completed_at": None}
    step |= {"error": None, "detail": {}}
    await INSERT_STEP.run(
        session,
        {"k_mid": ev.migration_id, "k_vid": ev.vm_id, "k_step": name}
        | {"p_position": step["position"], "p_state": StepState.PENDING.value},
    )
    return step


async def insert_task(session: AsyncSession, ev: VmStepChanged) -> dict[str, Any]:
    """A task the pipeline did not foresee (named by the event's ``detail.name``), Pending;
    its row."""
    assert ev.task is not None
    name = str(ev.detail.get("name") or ev.task)
    await INSERT_TASK.run(
        session,
        {"k_mid": ev.migration_id, "k_vid": ev.vm_id, "k_step": ev.step.value}
        | {"k_task": ev.task, "p_name": name[:253], "p_state": StepState.PENDING.value},
    )
    task: dict[str, Any] = {k: None for k in ("task", *TASK_WRITTEN)}
    task |= {"task": ev.task, "state": StepState.PENDING.value, "attempt": 1}
    return task | {"progress_completed": 0, "progress_total": 0}


async def write_step(
    session: AsyncSession,
    key: dict[str, Any],
    step: dict[str, Any] | None,
    task: dict[str, Any] | None,
    vm: dict[str, Any] | None,
) -> None:
    """Write what a step event changed: ``step``, ``task``, ``vm`` (None: unchanged);
    ``key``: ``k_mid``, ``k_vid``, ``k_step`` and ``k_task``."""
    params: dict[str, Any] = dict(key)
    params |= {"s_write": step is not None, "t_write": task is not None, "v_write": vm is not None}
    params |= {f"s_{k}": (step or {}).get(k) for k in STEP_WRITTEN}
    params |= {f"t_{k}": (task or {}).get(k) for k in TASK_WRITTEN}
    params |= {f"v_{k}": (vm or {}).get(k) for k in VM_STEPPED}
    await WRITE_STEP.run(session, params)


async def update_vm(session: AsyncSession, vm: dict[str, Any]) -> None:
    """Write a VM row (every column an outcome sets) with a new revision."""
    await UPDATE_VM.run(
        session,
        {"k_mid": vm["migration_id"], "k_vid": vm["vm_id"]} | {f"p_{k}": vm[k] for k in VM_WRITTEN},
    )
