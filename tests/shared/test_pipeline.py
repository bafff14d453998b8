"""Steps and phases declared once (``shared.pipeline``), the ``values()`` IN-list, and the
guards that keep them declared once.

The guards are ratchets: today's offenders are allowlisted, an allowlisted file that no
longer offends fails the test until its line is removed, and nothing new may offend.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import values
from shared.payloads import ProviderType, Step, StepState
from shared.pipeline import (
    FINAL_STEP_STATES,
    PER_DISK_STEPS,
    PLAN_VM_FINAL,
    PLAN_VM_IN_FLIGHT,
    POSITION,
    STEPS,
    VM_ACTIVE,
    VM_FINAL,
    VM_WAITING,
    WORKING_STEP_STATES,
    PlanVmPhase,
    VmPhase,
    next_step,
    steps_of,
)

ROOT = Path(__file__).resolve().parents[2]

# --- the declarations ------------------------------------------------------------------------


def test_each_source_has_its_steps() -> None:
    assert steps_of("ovirt") == steps_of(ProviderType.OVIRT) == STEPS[ProviderType.OVIRT]
    assert steps_of("openstack")[2] is Step.CONVERT_OPENSTACK_SNAPSHOT
    assert Step.CONVERT_OPENSTACK_SNAPSHOT not in steps_of("ovirt")
    for steps in STEPS.values():
        assert steps[0] is Step.INITIALIZE
        assert steps[-1] is Step.CLEANUP
        assert [POSITION[s] for s in steps] == sorted(POSITION[s] for s in steps)
        assert set(steps) >= {Step.DISK_ALLOCATION, Step.DISK_TRANSFER}
        assert set(steps) & PER_DISK_STEPS == {Step.DISK_ALLOCATION, Step.DISK_TRANSFER}
    assert set(STEPS) == {ProviderType.OVIRT, ProviderType.OPENSTACK}


def test_a_warm_vm_precopies_then_copies_what_changed_after_the_power_off() -> None:
    warm = steps_of("ovirt", warm=True)
    assert warm == (
        Step.INITIALIZE,
        Step.WARM_PRECOPY,
        Step.POWER_OFF_SOURCE,
        Step.FINAL_COPY,
        Step.VIRTUAL_MACHINE_CREATION,
        Step.CLEANUP,
    )
    assert [POSITION[s] for s in warm] == sorted(POSITION[s] for s in warm)
    assert next_step("ovirt", Step.WARM_PRECOPY, warm=True) is Step.POWER_OFF_SOURCE
    with pytest.raises(ValueError, match="not a warm migration source"):
        steps_of("openstack", warm=True)


@pytest.mark.parametrize("source", [ProviderType.KUBEVIRT, "kubevirt", "vmware", ""])
def test_a_source_without_a_pipeline_is_an_error(source: str) -> None:
    with pytest.raises(ValueError, match="not a migration source"):
        steps_of(source)
    with pytest.raises(ValueError, match="not a migration source"):
        next_step(source, Step.INITIALIZE)


def test_next_step() -> None:
    assert next_step("ovirt", Step.POWER_OFF_SOURCE) is Step.DISK_ALLOCATION
    assert next_step("openstack", Step.POWER_OFF_SOURCE) is Step.CONVERT_OPENSTACK_SNAPSHOT
    assert next_step("openstack", Step.CLEANUP) is Step.COMPLETED
    with pytest.raises(ValueError, match="not a step of ovirt"):
        next_step("ovirt", Step.CONVERT_OPENSTACK_SNAPSHOT)


def test_positions_follow_the_declaration_of_step() -> None:
    assert dict(POSITION) == {s.value: i for i, s in enumerate(Step)}
    with pytest.raises(TypeError):
        POSITION["New"] = 99  # type: ignore[index]


def test_phases() -> None:
    assert [p.value for p in VM_ACTIVE] == ["Queued", "Running", "Failing", "Canceling"]
    assert [p.value for p in VM_WAITING] == ["Queued", "Running"]
    assert set(VM_ACTIVE) | set(VM_FINAL) == set(VmPhase)
    assert set(PLAN_VM_IN_FLIGHT) | set(PLAN_VM_FINAL) == set(PlanVmPhase)
    assert [s.value for s in FINAL_STEP_STATES] == ["Completed", "Failed", "Skipped", "Canceled"]
    assert set(FINAL_STEP_STATES) | set(WORKING_STEP_STATES) == set(StepState)


# --- values(): an IN-list that PostgreSQL sees as literal SQL ----------------------------------

_DUE = "SELECT vm_id FROM orchestrator.vms WHERE phase IN {} AND next_run_at <= now() LIMIT 5"
_LITERAL = "('Queued', 'Running', 'Failing', 'Canceling')"


async def test_values_sends_the_literal_statement(migrated_engine: AsyncEngine) -> None:
    bound = text(_DUE.format(":active")).bindparams(values("active", VM_ACTIVE))
    sent: list[str] = []

    def capture(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    async with migrated_engine.connect() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", capture)
        await conn.execute(bound)
        await conn.execute(text(_DUE.format(_LITERAL)))
    assert sent[0] == sent[1] == _DUE.format(_LITERAL)


async def test_values_keeps_a_partial_index_usable(migrated_engine: AsyncEngine) -> None:
    """The runner's question on ``vms_due`` (whose predicate is the active phases), planned
    the way a prepared statement is after five runs (a generic plan): the index is used
    with ``values()``; with the phases as an array parameter, it cannot be."""

    async def generic_plan(prepare: str, execute: str) -> str:
        async with migrated_engine.connect() as conn:
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.exec_driver_sql(f"PREPARE hoist_probe{prepare}")
            try:
                lines = await conn.exec_driver_sql(f"EXPLAIN EXECUTE hoist_probe{execute}")
                return "\n".join(lines.scalars().all())
            finally:  # a prepared statement outlives the transaction; the settings do not
                await conn.exec_driver_sql("DEALLOCATE hoist_probe")
                await conn.rollback()

    bound = text(_DUE.format(":active")).bindparams(values("active", VM_ACTIVE))
    assert "vms_due" in await generic_plan(f" AS {rendered(bound)}", "")
    as_array = _DUE.format("('x')").replace("IN ('x')", "= ANY($1)")
    phases = "{" + ",".join(p.value for p in VM_ACTIVE) + "}"
    assert "vms_due" not in await generic_plan(f"(text[]) AS {as_array}", f"('{phases}')")


# --- compiled statements: the SQL sent stays the same when a statement switches to values() ---

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


def rendered(statement: Any) -> str:
    """The statement's SQL as asyncpg receives it (``values()`` lists rendered inline,
    every other parameter ``$n``), whitespace collapsed."""
    compiled = statement.compile(dialect=_DIALECT)
    inline = {b.key for b in compiled.literal_execute_params}
    others = {name: None for name in compiled.params if name not in inline}
    final = statement.bindparams(**others) if others else statement
    sql = final.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True}).string
    return " ".join(sql.split())


def test_rendered_equals_the_literal_statement() -> None:
    bound = text(_DUE.format(":active") + " AND x = :x").bindparams(values("active", VM_ACTIVE))
    assert rendered(bound) == _DUE.format(_LITERAL) + " AND x = $1"


# Today's text of the statements that spell phases or steps (whitespace collapsed when
# compared). The orchestrator's back partial indexes (vms_due, vms_waiting): their text
# must not change when WP4 binds the phases with values(); the planner's are WP5's.
ANCHORS: dict[str, str] = {
    "services.orchestrator.runner:_CLAIM": """
        UPDATE orchestrator.vms v
        SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
        FROM (
            SELECT migration_id, vm_id FROM orchestrator.vms
            WHERE phase IN ('Queued', 'Running', 'Failing', 'Canceling')
              AND next_run_at <= now()
              AND (lease_until IS NULL OR lease_until < now())
            ORDER BY next_run_at, position
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due, orchestrator.migrations m
        WHERE v.migration_id = due.migration_id AND v.vm_id = due.vm_id
          AND m.id = v.migration_id
        RETURNING v.*, m.cutover
    """,
    "services.orchestrator.admission:_AHEAD": """
        SELECT count(*) FROM orchestrator.vms v
        WHERE v.migration_id = $1 AND v.position < $2
          AND v.admitted_at IS NULL AND v.phase IN ('Queued', 'Running')
          AND NOT v.cancel_requested
    """,
    "services.orchestrator.admission:_WAITING_PLANS": """
        SELECT v.migration_id,
               min(jsonb_array_length(v.spec->'disks')) AS smallest,
               (m.header->>'max_disks_in_flight')::int AS disk_limit,
               COALESCE((m.header->>'max_vms_in_flight')::int, 20) AS vm_limit
        FROM orchestrator.vms v JOIN orchestrator.migrations m ON m.id = v.migration_id
        WHERE v.source_provider = $1 AND v.migration_id <> $2
          AND v.admitted_at IS NULL AND v.phase IN ('Queued', 'Running')
          AND NOT v.cancel_requested
          AND (m.cutover IS NULL OR m.cutover <= now())
        GROUP BY v.migration_id, m.header
    """,
    "services.orchestrator.admission:_HEADS": """
        UPDATE orchestrator.vms SET next_run_at = now()
        WHERE (migration_id, vm_id) IN (
            SELECT DISTINCT ON (v.migration_id) v.migration_id, v.vm_id
            FROM orchestrator.vms v
            WHERE v.source_provider = $1
              AND v.admitted_at IS NULL AND v.phase IN ('Queued', 'Running')
              AND NOT v.cancel_requested
            ORDER BY v.migration_id, v.position
        ) AND next_run_at > now()
    """,
    "services.orchestrator.admission:_NEXT_OF_PLAN": """
        UPDATE orchestrator.vms SET next_run_at = now()
        WHERE (migration_id, vm_id) IN (
            SELECT v.migration_id, v.vm_id FROM orchestrator.vms v
            WHERE v.migration_id = $1
              AND v.admitted_at IS NULL AND v.phase IN ('Queued', 'Running')
              AND NOT v.cancel_requested
            ORDER BY v.position LIMIT 1
        ) AND next_run_at > now()
    """,
    # The planner's (WP5): the progress follower's batched writes, which spell step states,
    # steps and VM phases.
    "services.planner.following:UPDATE_TASKS": """
    UPDATE planner.tasks AS t SET
        progress_completed = CASE
            WHEN t.state IN ('Pending', 'Running') AND t.progress_total > 0 AND s.total > 0
            THEN least(t.progress_total,
                       CAST(CAST(s.done AS numeric) * t.progress_total / s.total AS bigint))
            WHEN t.state IN ('Pending', 'Running') THEN s.done
            WHEN t.state = 'Completed' AND t.progress_total = 0 THEN s.total
            ELSE t.progress_completed END,
        progress_total = CASE
            WHEN t.progress_total = 0 AND s.total > 0 THEN s.total
            ELSE t.progress_total END,
        rate = CASE WHEN t.state IN ('Pending', 'Running') THEN s.rate ELSE t.rate END,
        eta_seconds = CASE WHEN t.state IN ('Pending', 'Running') THEN s.eta
                           ELSE t.eta_seconds END,
        observed_at = CASE WHEN t.state IN ('Pending', 'Running') THEN s.observed_at
                           ELSE t.observed_at END,
        updated_at = now()
    FROM unnest(
        CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS text[]),
        CAST($4 AS bigint[]), CAST($5 AS bigint[]), CAST($6 AS bigint[]),
        CAST($7 AS integer[]), CAST($8 AS timestamptz[])
    ) AS s(migration_id, vm_id, task, done, total, rate, eta, observed_at)
    WHERE t.migration_id = s.migration_id AND t.vm_id = s.vm_id
      AND t.step = 'DiskTransfer' AND t.task = s.task
      AND CASE WHEN t.state IN ('Pending', 'Running')
               THEN t.observed_at IS NULL OR t.observed_at < s.observed_at
               ELSE t.progress_total = 0 AND s.total > 0 END
    RETURNING t.migration_id, t.vm_id
    """,
    "services.planner.following:UPDATE_VMS": """
    UPDATE planner.vms AS v SET
        bytes_done = n.bytes_done, bytes_total = n.bytes_total, rate = n.rate,
        eta_seconds = n.eta, revision = nextval('planner.revision_seq'), updated_at = now()
    FROM (
        SELECT v0.migration_id, v0.vm_id, b.total AS bytes_total,
               CASE WHEN v0.phase = 'Succeeded' THEN b.total
                    ELSE coalesce(st.progress_completed, v0.bytes_done) END AS bytes_done,
               CASE WHEN v0.phase IN ('Succeeded', 'Failed', 'Canceled') THEN NULL
                    WHEN k.sampled THEN k.rate ELSE v0.rate END AS rate,
               CASE WHEN v0.phase IN ('Succeeded', 'Failed', 'Canceled') THEN NULL
                    WHEN k.sampled THEN k.eta ELSE v0.eta_seconds END AS eta
        FROM unnest(
            CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS boolean[]),
            CAST($4 AS bigint[]), CAST($5 AS integer[])
        ) AS k(migration_id, vm_id, sampled, rate, eta)
        JOIN planner.vms AS v0 ON v0.migration_id = k.migration_id AND v0.vm_id = k.vm_id
        LEFT JOIN planner.steps AS st ON st.migration_id = k.migration_id
            AND st.vm_id = k.vm_id AND st.step = 'DiskTransfer'
        CROSS JOIN LATERAL (SELECT CASE WHEN st.progress_total > 0 THEN st.progress_total
                                        ELSE v0.bytes_total END AS total) AS b
    ) AS n
    WHERE v.migration_id = n.migration_id AND v.vm_id = n.vm_id
      AND (v.bytes_done, v.bytes_total, v.rate, v.eta_seconds)
          IS DISTINCT FROM (n.bytes_done, n.bytes_total, n.rate, n.eta)
    """,
    "services.planner.statusrows:RESUM_STEPS": """
    UPDATE planner.steps AS s SET
        progress_completed = CASE WHEN s.state = 'Completed'
                                  THEN greatest(t.done, t.total) ELSE t.done END,
        progress_total = t.total, updated_at = now()
    FROM (
        SELECT k.migration_id, k.vm_id, k.step,
               CAST(sum(x.progress_completed) AS bigint) AS done,
               CAST(sum(x.progress_total) AS bigint) AS total
        FROM unnest(CAST($1 AS text[]), CAST($2 AS text[]),
                    CAST($3 AS text[])) AS k(migration_id, vm_id, step)
        JOIN planner.tasks AS x
          ON x.migration_id = k.migration_id AND x.vm_id = k.vm_id AND x.step = k.step
        GROUP BY k.migration_id, k.vm_id, k.step
    ) AS t
    WHERE s.migration_id = t.migration_id AND s.vm_id = t.vm_id AND s.step = t.step
      AND (s.progress_completed, s.progress_total) IS DISTINCT FROM (
          CASE WHEN s.state = 'Completed' THEN greatest(t.done, t.total) ELSE t.done END,
          t.total)
    """,
}


@pytest.mark.parametrize("ref", sorted(ANCHORS))
def test_statements_keep_their_sql(ref: str) -> None:
    module, name = ref.split(":")
    statement = getattr(importlib.import_module(module), name)
    assert rendered(statement) == " ".join(ANCHORS[ref].split())


# --- guard: no phase or step spelled in SQL (§5.2) ---------------------------------------------

_STATES = "Queued|Running|Failing|Canceling|Succeeded|Failed|Canceled|Pending|Completed|Skipped"
_STEPS = "|".join(s.value for s in Step if s is not Step.COMPLETED)
# ruff formats Python strings with double quotes: a single-quoted phase is SQL (or a comment
# quoting SQL).
SQL_LITERAL = re.compile(rf"'({_STATES}|{_STEPS})'")

#: Files allowed to spell phases or steps in SQL: none (bind them with ``values()``).
SQL_LITERAL_ALLOWED: set[str] = set()


def _sources(*roots: str) -> list[Path]:
    return sorted(
        path
        for root in roots
        for path in (ROOT / root).rglob("*.py")
        if "migrations/versions" not in path.as_posix()  # frozen history
    )


def test_no_phase_or_step_is_spelled_in_sql() -> None:
    offending = {
        path.relative_to(ROOT).as_posix()
        for path in _sources("services", "shared")
        if SQL_LITERAL.search(path.read_text())
    }
    assert offending - SQL_LITERAL_ALLOWED == set(), "bind them with shared.db.engine.values()"
    assert SQL_LITERAL_ALLOWED - offending == set(), "clean now: remove from the allowlist"


# --- guard: one step list (§5.3) ---------------------------------------------------------------

#: Modules allowed a step list of their own: none (``shared.pipeline.STEPS`` is the one).
STEP_LIST_ALLOWED: set[str] = set()


def _step_lists(path: Path) -> list[int]:
    """Lines of tuple or list literals naming two or more ``Step.`` members."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List)):
            members = [
                e
                for e in node.elts
                if isinstance(e, ast.Attribute)
                and isinstance(e.value, ast.Name)
                and e.value.id == "Step"
            ]
            if len(members) >= 2:
                found.append(node.lineno)
    return found


def test_shared_pipeline_has_the_only_step_lists() -> None:
    offending = {
        path.relative_to(ROOT).as_posix()
        for path in _sources("services", "shared", "tools", "bench", "cli")
        if _step_lists(path)
    }
    offending.discard("shared/pipeline.py")
    assert offending - STEP_LIST_ALLOWED == set(), "use shared.pipeline.STEPS or steps_of()"
    assert STEP_LIST_ALLOWED - offending == set(), "clean now: remove from the allowlist"
