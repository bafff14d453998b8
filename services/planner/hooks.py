"""Hooks: the user's programs a plan runs around a VM's migration, and their routes.

A hook is defined once (``/api/v1/hooks``) and referenced by name from plans, for every VM
of a plan (``hooks``) or for one VM (its entry's ``hooks``, which replace the plan's at
that step; ``"hook": null`` runs none there). Each reference names a step: ``PreHook``
(before PowerOffSource, the source VM still running) or ``PostHook`` (after
VirtualMachineCreation). ``shared.hooks`` says how the orchestrator runs it.

What is checked when: a hook's own fields when it is written (422 at the field: an image
with blanks, a playbook that is not a YAML list of plays, a deadline out of range); a
plan's references when the plan is written (422 at ``body.hooks[i].hook`` or
``body.vms[i].hooks[j].hook`` for a hook that does not exist: a hook is the planner's own,
so a missing one is a refusal, not an inventory problem); a hook a plan uses cannot be
deleted (409 naming the plans). At start, each VM's hooks are frozen into
``PlannedVm.hooks`` with the source VM as the inventory knows it then (``vm.yml``):
changing a hook later changes the next run, never the running one.

Every change publishes ``plan.hook.changed`` through the outbox, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml
from pydantic import AwareDatetime, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.planner import db
from services.planner.errors import Conflict, Invalid, NotFound, PreconditionFailed
from services.planner.model import NAME, HookRef, Strict
from services.planner.views import Answer
from shared import catalog
from shared import hooks as contract
from shared.db.messaging import Outbox
from shared.ids import is_uuid
from shared.payloads import ChangeAction, HookChanged, HookSpec, PlannedHook
from shared.pipeline import HOOK_STEPS

if TYPE_CHECKING:
    from services.planner.domain import Planner

PLAYBOOK_BYTES = 256 * 1024
_IMAGE = r"^[^\s\x00-\x1f\x7f]+$"

# --- what the API takes ---------------------------------------------------------------------


def _playbook(value: str | None) -> str | None:
    """A playbook is a YAML list of plays (Ansible refuses anything else): refused here,
    at the field, rather than by the runner in the middle of a migration."""
    if value is None:
        return None
    if len(value.encode()) > PLAYBOOK_BYTES:
        raise ValueError(f"a playbook is at most {PLAYBOOK_BYTES // 1024} KiB")
    try:
        plays = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(plays, list) or not plays or not all(isinstance(p, dict) for p in plays):
        raise ValueError("a playbook is a YAML list of plays (mappings)")
    return value


class HookFields(Strict):
    description: str = Field("", max_length=2000)
    image: str = Field(
        min_length=1,
        max_length=512,
        pattern=_IMAGE,
        description="The image the Job runs; with a playbook, an Ansible runner "
        "(quay.io/konveyor/hook-runner).",
    )
    playbook: str | None = Field(
        None,
        description="An Ansible playbook (YAML text), mounted as /tmp/hook/playbook.yml and "
        "run by the image with ansible-runner.",
    )
    service_account: str | None = Field(
        None,
        alias="serviceAccount",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The Job's service account in the target namespace (unset: default).",
    )
    deadline_seconds: int = Field(
        contract.DEFAULT_DEADLINE_SECONDS,
        alias="deadlineSeconds",
        ge=1,
        le=contract.MAX_DEADLINE_SECONDS,
        description="All tries together; past it the hook fails the VM (HookTimeout).",
    )
    retries: int = Field(
        0,
        ge=0,
        le=contract.MAX_RETRIES,
        description="Failed pods tried again (the Job's backoffLimit).",
    )

    _book = field_validator("playbook")(_playbook)


class HookCreate(HookFields):
    name: str = Field(pattern=NAME)


class HookUpdate(Strict):
    """A field left out keeps its value; ``playbook: null`` removes the playbook."""

    description: str | None = Field(None, max_length=2000)
    image: str | None = Field(None, min_length=1, max_length=512, pattern=_IMAGE)
    playbook: str | None = None
    service_account: str | None = Field(
        None, alias="serviceAccount", max_length=253, pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"
    )
    deadline_seconds: int | None = Field(
        None, alias="deadlineSeconds", ge=1, le=contract.MAX_DEADLINE_SECONDS
    )
    retries: int | None = Field(None, ge=0, le=contract.MAX_RETRIES)

    _book = field_validator("playbook")(_playbook)


# --- what the API answers -------------------------------------------------------------------


class Hook(Answer):
    """A hook: the image (and playbook) a plan runs as a Job around a VM's migration."""

    id: str
    name: str
    description: str
    image: str
    playbook: str | None
    service_account: str | None
    deadline_seconds: int
    retries: int
    plans: list[str] = Field(description="The plans that reference it, by name.")
    revision: int
    created_at: AwareDatetime
    updated_at: AwareDatetime


class HookPage(Answer):
    items: list[Hook]


# --- storing --------------------------------------------------------------------------------

t = db.hooks


def public(row: Mapping[Any, Any], users: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "image": row["image"],
        "playbook": row["playbook"],
        "serviceAccount": row["service_account"],
        "deadlineSeconds": row["deadline_seconds"],
        "retries": row["retries"],
        "plans": list(users),
        "revision": row["revision"],
        "createdAt": row["created_at"].isoformat(),
        "updatedAt": row["updated_at"].isoformat(),
    }


def spec_of(row: Mapping[Any, Any]) -> HookSpec:
    return HookSpec(
        name=row["name"],
        image=row["image"],
        playbook=row["playbook"],
        service_account=row["service_account"],
        deadline_seconds=row["deadline_seconds"],
        retries=row["retries"],
    )


async def find(conn: AsyncConnection | AsyncSession, ref: str, *, lock: bool = False) -> Any:
    q = select(t).where((t.c.id if is_uuid(ref) else t.c.name) == ref)
    row = (await conn.execute(q.with_for_update() if lock else q)).mappings().first()
    if row is None:
        raise NotFound(f"no hook {ref!r}")
    return row


async def users(conn: AsyncConnection | AsyncSession, name: str) -> list[str]:
    """The plans that reference hook ``name``, for every VM or for one."""
    plan_ref = db.plans.c.hooks.contains([{"hook": name}])
    vm_ref = db.plans.c.vms.contains([{"hooks": [{"hook": name}]}])
    q = select(db.plans.c.name).where(plan_ref | vm_ref).order_by(db.plans.c.name)
    return [str(n) for n in (await conn.execute(q)).scalars()]


_NAMED = sa.text(
    """
    SELECT p.name AS plan, h.value ->> 'hook' AS hook
    FROM planner.plans p, jsonb_array_elements(p.hooks) h
    WHERE h.value ->> 'hook' IS NOT NULL
    UNION
    SELECT p.name, h.value ->> 'hook'
    FROM planner.plans p, jsonb_array_elements(p.vms) v,
         jsonb_array_elements(COALESCE(v.value -> 'hooks', '[]'::jsonb)) h
    WHERE jsonb_typeof(v.value -> 'hooks') = 'array' AND h.value ->> 'hook' IS NOT NULL
    ORDER BY 1
    """
)


async def usage(conn: AsyncConnection) -> dict[str, list[str]]:
    """Every hook's plans (by plan name), in one pass over the plans: a list of hooks
    must not read every plan once per hook."""
    out: dict[str, list[str]] = {}
    for plan, hook in (await conn.execute(_NAMED)).all():
        out.setdefault(str(hook), []).append(str(plan))
    return out


async def _event(outbox: Outbox, session: AsyncSession, row: Any, action: ChangeAction) -> None:
    data = HookChanged(
        hook_id=row["id"], name=row["name"], action=action, revision=int(row["revision"])
    )
    await outbox.add(session, catalog.HOOK_CHANGED, data)


async def create(p: Planner, body: HookCreate) -> Any:
    values = body.model_dump(exclude={"name"})
    try:
        async with p.sessionmaker() as session, session.begin():
            row = (
                (
                    await session.execute(
                        sa.insert(t)
                        .values(
                            id=str(uuid.uuid4()),
                            name=body.name,
                            revision=db.revision_seq.next_value(),
                            **values,
                        )
                        .returning(t)
                    )
                )
                .mappings()
                .one()
            )
            await _event(p.outbox, session, row, ChangeAction.CREATED)
    except IntegrityError:
        raise Conflict(["body", "name"], f"a hook named {body.name!r} exists") from None
    return row


async def update(p: Planner, ref: str, body: HookUpdate, if_match: int | None) -> Any:
    given = body.model_fields_set
    values: dict[str, Any] = {}
    for field in ("description", "image", "deadline_seconds", "retries"):
        if field in given:
            if getattr(body, field) is None:
                raise Invalid([(["body", field], "null", f"{field} cannot be null")])
            values[field] = getattr(body, field)
    if "playbook" in given:
        values["playbook"] = body.playbook
    if "service_account" in given:
        values["service_account"] = body.service_account or None
    async with p.sessionmaker() as session, session.begin():
        row = await find(session, ref, lock=True)
        if if_match is not None and row["revision"] != if_match:
            raise PreconditionFailed(
                f"the hook changed (revision {row['revision']}, not {if_match}); read it again"
            )
        row = (await session.execute(db.revised(t, row["id"], values))).mappings().one()
        await _event(p.outbox, session, row, ChangeAction.UPDATED)
        return row, await users(session, row["name"])


async def remove(p: Planner, ref: str) -> None:
    async with p.sessionmaker() as session, session.begin():
        row = await find(session, ref, lock=True)
        using = await users(session, row["name"])
        if using:
            raise Conflict(
                ["path", "hook"],
                f"the hook is used by plans {', '.join(using[:10])}"
                f"{' and more' if len(using) > 10 else ''}; change or delete them first",
            )
        await session.execute(sa.delete(t).where(t.c.id == row["id"]))
        await _event(p.outbox, session, row, ChangeAction.DELETED)


# --- plans' references ----------------------------------------------------------------------


def stored(refs: Iterable[HookRef]) -> list[dict[str, Any]]:
    return [{"step": r.step, "hook": r.hook} for r in refs]


async def check_refs(
    conn: AsyncConnection, plan_hooks: Sequence[Mapping[str, Any]], vms: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse a plan naming a hook that does not exist (422 at each reference) or a
    plan-wide ``null``."""
    problems: list[tuple[list[str | int], str, str]] = []
    wanted = {str(h["hook"]) for h in plan_hooks if h.get("hook")}
    for vm in vms:
        wanted |= {str(h["hook"]) for h in vm.get("hooks") or [] if h.get("hook")}
    known = set()
    if wanted:
        q = select(t.c.name).where(t.c.name.in_(sorted(wanted)))
        known = {str(n) for n in (await conn.execute(q)).scalars()}
    for i, h in enumerate(plan_hooks):
        if h.get("hook") is None:
            problems.append((["body", "hooks", i, "hook"], "null", "a plan's hook needs a name"))
        elif h["hook"] not in known:
            problems.append((["body", "hooks", i, "hook"], "not_found", f"no hook {h['hook']!r}"))
    for i, vm in enumerate(vms):
        for j, h in enumerate(vm.get("hooks") or []):
            if h.get("hook") and h["hook"] not in known:
                loc: list[str | int] = ["body", "vms", i, "hooks", j, "hook"]
                problems.append((loc, "not_found", f"no hook {h['hook']!r}"))
    if problems:
        raise Invalid(problems)


async def specs(
    conn: AsyncConnection, plan_hooks: Sequence[Mapping[str, Any]], vms: Sequence[Mapping[str, Any]]
) -> dict[str, HookSpec]:
    """The hooks a plan names, by name, as they are now (frozen at start)."""
    names = {str(h["hook"]) for h in plan_hooks if h.get("hook")}
    for vm in vms:
        names |= {str(h["hook"]) for h in vm.get("hooks") or [] if h.get("hook")}
    if not names:
        return {}
    rows = (await conn.execute(select(t).where(t.c.name.in_(sorted(names))))).mappings()
    return {str(r["name"]): spec_of(r) for r in rows}


def planned(
    plan_hooks: Sequence[Mapping[str, Any]],
    vm_hooks: Sequence[Mapping[str, Any]] | None,
    known: Mapping[str, HookSpec],
) -> tuple[list[PlannedHook], list[str]]:
    """A VM's hooks (its own replace the plan's at their step), and the names missing."""
    chosen: dict[str, str | None] = {str(h["step"]): h.get("hook") for h in plan_hooks}
    chosen.update({str(h["step"]): h.get("hook") for h in vm_hooks or []})
    out: list[PlannedHook] = []
    missing: list[str] = []
    for step in HOOK_STEPS:
        name = chosen.get(step.value)
        if not name:
            continue
        if name in known:
            out.append(PlannedHook(step=step, hook=known[name]))
        else:
            missing.append(name)
    return out, missing
