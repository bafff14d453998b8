"""``hoist plans``: create (from flags or a YAML body), validate, list, get, delete, start,
re-run, cancel, cutover, status, logs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.text import Text

from cli import diagnosing, watching
from cli.bodies import body_options, merged
from cli.client import Api, seg
from cli.names import Names, lookup
from cli.output import duration, emit_json, emit_line, fields, out, problems, styled, table
from cli.runner import Failure, json_mode, output_option, run, show, state

POWER_STATES = ("on", "off", "auto")


@click.group()
def plans() -> None:
    """Migration plans: what to migrate where, and their runs."""


def _errors(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in plan.get("problems") or [] if p.get("severity") == "error"]


def _vm_label(vm: dict[str, Any]) -> str:
    label = str(vm.get("name") or vm.get("id"))
    return f"{label} (power {vm['targetPowerState']})" if vm.get("targetPowerState") else label


def cutover_text(at: str | None) -> str:
    """``2026-05-01T22:00:00+00:00 (in 2h05m00s)``, ``... (passed)`` or ``at once``: when
    the plan lets source VMs be powered off, and how far that is from now."""
    if not at:
        return "at once (none set)"
    try:
        left = (datetime.fromisoformat(at) - datetime.now(UTC)).total_seconds()
    except (ValueError, TypeError):
        return at
    if left <= 0:
        return f"{at} (passed: at once)"
    return (
        f"{at} (in {left / 86400:.0f} days)" if left > 2 * 86400 else f"{at} (in {duration(left)})"
    )


def _limits_text(limits: dict[str, Any]) -> str:
    return (
        f"{limits.get('maxVmsInFlight', '-')} VMs, {limits.get('maxDisksInFlight', '-')} disks "
        f"in flight ({limits.get('maxDisksInFlightPerSource', '-')} disks per source)"
    )


def _migration_text(plan: dict[str, Any]) -> str:
    """``cold``, or ``warm, a precopy every 60 min until the cutover``: a warm plan's
    interval is the one thing that tells how much it copies before the downtime."""
    kind = str(plan.get("migrationType") or "cold")
    if kind != "warm":
        return kind
    return f"warm, a precopy every {plan.get('precopyIntervalMinutes', 60)} min until the cutover"


def _hooks_text(plan: dict[str, Any]) -> str:
    """``PreHook drain, PostHook smoke; VM db-1: PreHook none``."""

    def one(refs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['step']} {r.get('hook') or 'none'}" for r in refs)

    parts = [one(plan.get("hooks") or [])] if plan.get("hooks") else []
    parts += [
        f"VM {v.get('name') or v.get('id')}: {one(v['hooks'])}"
        for v in plan.get("vms") or []
        if v.get("hooks")
    ]
    return "; ".join(parts)


def _vms_text(plan: dict[str, Any], vms: list[dict[str, Any]]) -> str:
    """The plan's VMs; an answer lists the first of a large plan's (``vmCount`` says how
    many it has): those, and how many more."""
    text = ", ".join(_vm_label(v) for v in vms) or "-"
    more = int(plan.get("vmCount", len(vms))) - len(vms)
    return f"{text} and {more} more" if more > 0 else text


def show_plan(plan: dict[str, Any], names: Names | None = None) -> None:
    names = names or Names()
    vms = plan.get("vms") or []
    fields(
        [
            ("name", plan["name"]),
            ("id", plan["id"]),
            ("phase", styled(plan["phase"])),
            ("source", names.of(plan.get("sourceProvider"))),
            (
                "target",
                f"{names.of(plan.get('targetProvider'))} namespace {plan.get('targetNamespace')}",
            ),
            (
                "maps",
                f"network {names.of(plan.get('networkMap'))}, "
                f"storage {names.of(plan.get('storageMap'))}",
            ),
            ("VMs", _vms_text(plan, vms)),
            ("migration", _migration_text(plan)),
            ("power state", plan.get("targetPowerState")),
            ("cutover", cutover_text(plan.get("cutover"))),
            ("limits", _limits_text(plan.get("limits") or {})),
            ("hooks", _hooks_text(plan) or "-"),
            ("validated", plan.get("validatedAt") or "-"),
        ]
    )
    problems(plan.get("problems") or [])


def _vm_ref(text: str) -> dict[str, str]:
    return {"id": text[3:]} if text.startswith("id:") else {"name": text}


@plans.command("create")
@click.argument("name", required=False)
@body_options
@click.option("--namespace", help="Target namespace.")
@click.option("--network-map", help="Network map (name or id).")
@click.option("--storage-map", help="Storage map (name or id).")
@click.option(
    "--vm",
    "vms",
    multiple=True,
    metavar="NAME_OR_ID",
    help="A source VM by name (id:<id> by id); repeatable.",
)
@click.option("--target-power-state", type=click.Choice(POWER_STATES))
@click.option("--transfer-network", help="NetworkAttachmentDefinition the copies use.")
@click.option("--max-disks-in-flight", type=click.IntRange(1, 10_000))
@click.option(
    "--max-vms-in-flight",
    type=click.IntRange(1, 10_000),
    help="VMs of the plan in flight at once (default: the planner's).",
)
@click.option(
    "--cutover",
    metavar="TIME",
    help="No source VM is powered off before TIME (RFC 3339 with a timezone).",
)
@click.option(
    "--warm",
    is_flag=True,
    default=None,
    help="Warm migration (oVirt): copy the disks while the source VMs run, again every "
    "--precopy-interval, until the cutover; then power off and copy what changed.",
)
@click.option(
    "--precopy-interval",
    type=click.IntRange(1, 1440),
    metavar="MINUTES",
    help="Warm: minutes between precopies (1-1440; default 60).",
)
@click.option(
    "--convert-guest/--no-convert-guest",
    default=None,
    help="Run virt-v2v-in-place on each VM's volumes before its VirtualMachine is created "
    "(ConvertGuest; -f FILE can set it per VM with convertGuest).",
)
@click.option(
    "--pre-hook",
    metavar="HOOK",
    help="A hook every VM runs before its source is powered off (-f FILE can set hooks per VM).",
)
@click.option(
    "--post-hook", metavar="HOOK", help="A hook every VM runs after its VirtualMachine exists."
)
@click.option("--description")
@output_option
def create(
    name: str | None,
    file: str | None,
    source: str | None,
    target: str | None,
    namespace: str | None,
    network_map: str | None,
    storage_map: str | None,
    vms: tuple[str, ...],
    target_power_state: str | None,
    transfer_network: str | None,
    max_disks_in_flight: int | None,
    max_vms_in_flight: int | None,
    cutover: str | None,
    warm: bool | None,
    precopy_interval: int | None,
    convert_guest: bool | None,
    pre_hook: str | None,
    post_hook: str | None,
    description: str | None,
) -> None:
    """Create a plan; it is validated at once and its problems are shown."""
    hooks = [
        {"step": step, "hook": hook}
        for step, hook in (("PreHook", pre_hook), ("PostHook", post_hook))
        if hook
    ]
    flags: dict[str, Any] = {
        "name": name,
        "sourceProvider": source,
        "targetProvider": target,
        "targetNamespace": namespace,
        "networkMap": network_map,
        "storageMap": storage_map,
        "vms": [_vm_ref(v) for v in vms] or None,
        "targetPowerState": target_power_state,
        "transferNetwork": transfer_network,
        "cutover": cutover,
        "migrationType": "warm" if warm else None,
        "precopyIntervalMinutes": precopy_interval,
        "convertGuest": convert_guest,
        "hooks": hooks or None,
        "description": description,
    }
    required = [("name", "NAME"), ("sourceProvider", "--source"), ("targetProvider", "--target"),
                ("targetNamespace", "--namespace"), ("networkMap", "--network-map"),
                ("storageMap", "--storage-map")]  # fmt: skip
    body = merged(file, flags, required)
    if not body.get("vms") and not body.get("vmSelector"):
        raise click.UsageError("missing --vm (give it, or -f FILE with vms or vmSelector)")
    given_limits = {"maxDisksInFlight": max_disks_in_flight, "maxVmsInFlight": max_vms_in_flight}
    for key, value in given_limits.items():
        if value is not None:
            body["limits"] = {**(body.get("limits") or {}), key: value}

    async def work(api: Api) -> None:
        plan = await api.post("planner", "/api/v1/plans", body)
        if json_mode():
            emit_json(plan)
        else:
            out.print(f"plan {plan['name']} created")
            show_plan(plan, await lookup(api, maps=True))

    run(work)


@plans.command("validate")
@click.argument("ref")
@output_option
def validate(ref: str) -> None:
    """Validate a plan against the inventory now; exit 1 if any problem is an error."""

    async def work(api: Api) -> int:
        plan = await api.post("planner", f"/api/v1/plans/{seg(ref)}/validate")
        names = Names() if json_mode() else await lookup(api, maps=True)
        show(plan, lambda: show_plan(plan, names))
        return 1 if _errors(plan) else 0

    run(work)


@plans.command("list")
@click.option("--archived", is_flag=True, help="Archived plans instead.")
@output_option
def list_(archived: bool) -> None:
    """Plans, their phase and their current run's counts."""

    async def work(api: Api) -> None:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await api.get(
                "planner",
                "/api/v1/plans",
                archived=str(archived).lower(),
                limit=1000,
                cursor=cursor,
            )
            items.extend(page["items"])
            cursor = page.get("next")
            if not cursor:
                break
        if json_mode():
            emit_json({"items": items})
            return

        def counts(p: dict[str, Any]) -> str:
            m = p.get("migration")
            if not m:
                return "-"
            v = m["vms"]
            return f"{v['succeeded']}/{v['total']} ok, {v['failed']} failed, {v['running']} running"

        names = await lookup(api)
        table(
            ("name", "from -> to", "phase", "VMs", "problems", "current run"),
            (
                (
                    p["name"],
                    f"{names.of(p.get('sourceProvider'))} -> {names.of(p.get('targetProvider'))}"
                    f"/{p.get('targetNamespace')}",
                    styled(p["phase"]),
                    p.get("vmCount", len(p.get("vms") or [])),
                    Text(str(len(p.get("problems") or [])), style="red" if _errors(p) else ""),
                    counts(p),
                )
                for p in items
            ),
        )

    run(work)


@plans.command("get")
@click.argument("ref")
@output_option
def get(ref: str) -> None:
    """A plan: definition, problems and phase."""

    async def work(api: Api) -> None:
        plan = await api.get("planner", f"/api/v1/plans/{seg(ref)}")
        names = Names() if json_mode() else await lookup(api, maps=True)
        show(plan, lambda: show_plan(plan, names))

    run(work)


@plans.command("delete")
@click.argument("ref")
@output_option
def delete(ref: str) -> None:
    """Delete a plan that is not running."""

    async def work(api: Api) -> None:
        await api.delete("planner", f"/api/v1/plans/{seg(ref)}")
        show({"deleted": ref}, lambda: out.print(f"plan {ref} deleted"))

    run(work)


def _start(ref: str, watch: bool, interval: float, timeout: float | None, rerun: bool) -> None:
    async def work(api: Api) -> int:
        plan = await api.post("planner", f"/api/v1/plans/{seg(ref)}/start")
        m = plan["migration"]
        if json_mode():
            # In watch mode, the start is the first line of the stream.
            (emit_line if watch else emit_json)({"type": "started", **m, "plan": plan["name"]})
        else:
            out.print(
                f"plan {plan['name']} started: migration #{m['number']} ({m['id']}), {m['vms']} VMs"
            )
            if m["skipped"] or rerun:
                out.print(
                    f"{m['skipped']} VMs skipped: an earlier run of this plan migrated them "
                    "(a re-run tries only the VMs that did not succeed)"
                )
        if not watch:
            return 0
        return await watching.follow(api, plan["id"], interval, timeout, state().verbose)

    run(work)


_WATCH_OPTIONS = [
    click.option("--watch", is_flag=True, help="Follow the migration until it ends."),
    click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=None,
        help="Give up watching after this many seconds (exit 1).",
    ),
]


def _with_watch(f: Any) -> Any:
    for option in reversed(_WATCH_OPTIONS):
        f = option(f)
    return f


@plans.command("start")
@click.argument("ref")
@_with_watch
@output_option
def start(ref: str, watch: bool, interval: float, timeout: float | None) -> None:
    """Start a plan (validated again first)."""
    _start(ref, watch, interval, timeout, rerun=False)


@plans.command("rerun")
@click.argument("ref")
@_with_watch
@output_option
def rerun(ref: str, watch: bool, interval: float, timeout: float | None) -> None:
    """Run a plan again: VMs an earlier run migrated are skipped."""
    _start(ref, watch, interval, timeout, rerun=True)


@plans.command("cancel")
@click.argument("ref")
@click.option("--vm", "vms", multiple=True, metavar="NAME_OR_ID", help="Only these VMs.")
@click.option("--reason", default="", help="Why (kept with the cancellation).")
@output_option
def cancel(ref: str, vms: tuple[str, ...], reason: str) -> None:
    """Cancel the running migration, or some of its VMs."""

    async def work(api: Api) -> None:
        body: dict[str, Any] = {"reason": reason}
        if vms:
            listed = await watching.all_vms(api, ref)
            by_name = {v["name"]: v["id"] for v in listed}
            ids = {v["id"] for v in listed}
            unknown = [v for v in vms if v not in ids and v not in by_name]
            if unknown:
                raise Failure(f"not in plan {ref}'s current migration: {', '.join(unknown)}")
            body["vms"] = [v if v in ids else by_name[v] for v in vms]
        answer = await api.post("planner", f"/api/v1/plans/{seg(ref)}/cancel", body)
        if json_mode():
            emit_json(answer)
        else:
            out.print(f"cancel of plan {ref} requested")
            for key, value in (answer or {}).items():
                if isinstance(value, list) and value:
                    out.print(f"  {key}: {', '.join(map(str, value))}")

    run(work)


@plans.command("cutover")
@click.argument("ref")
@click.option(
    "--at",
    "at",
    metavar="TIME|now",
    help="No source VM is powered off before TIME (RFC 3339 with a timezone), or now.",
)
@click.option("--clear", is_flag=True, help="No cutover: source VMs are powered off at once.")
@output_option
def cutover(ref: str, at: str | None, clear: bool) -> None:
    """Set or clear the cutover time, before the start or while the plan runs (the
    running migration is told at once)."""
    if (at is None) == (not clear):
        raise click.UsageError("give --at TIME|now or --clear (one of them)")

    async def work(api: Api) -> None:
        plan = await api.put("planner", f"/api/v1/plans/{seg(ref)}/cutover", {"at": at})
        if json_mode():
            emit_json(plan)
            return
        out.print(f"plan {plan['name']}: cutover {cutover_text(plan.get('cutover'))}")
        if plan.get("phase") == "Running":
            out.print(f"  the running migration is told (revision {plan.get('cutoverRevision')})")

    run(work)


@plans.command("status")
@click.argument("ref")
@click.option("-v", "--verbose", is_flag=True, help="Per disk too.")
@output_option
def status(ref: str, verbose: bool) -> None:
    """The plan's phase and counts; per VM its step, phase and bytes (-v: per disk)."""

    async def work(api: Api) -> None:
        await watching.show_status(api, ref, verbose or state().verbose)

    run(work)


@plans.command("logs")
@click.argument("ref")
@click.option(
    "--vm", "vms", multiple=True, metavar="NAME_OR_ID", help="These VMs (default: failed)."
)
@click.option(
    "-n",
    "--lines",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Log lines per failed disk, conversion or hook.",
)
@output_option
def logs(ref: str, vms: tuple[str, ...], lines: int) -> None:
    """Why VMs failed: each failed step and disk, its error, and the populator's (or the
    conversion's, or the hook's) last log lines, kept by the orchestrator after the pod or
    Job is gone; and each hook's log of the VMs shown, failed or not."""

    async def work(api: Api) -> None:
        report = await diagnosing.diagnose(api, ref, vms)
        if json_mode():
            emit_json({"plan": ref, "vms": report})
        else:
            diagnosing.show(ref, report, lines)

    run(work)
