"""Why a VM failed: its failed steps and disks, with the populator's own last log lines;
and what its hooks (PreHook, PostHook) printed, failed or not.

The planner's status says which step failed and the error in a line; what the populator
printed before it gave up lives only in the orchestrator, which read the pod's log when the
pod ended (the pod itself is deleted by the cleanup, so ``kubectl logs`` finds nothing
later). This module joins the two: the plan's VMs from the planner, each failed one's
pipeline from the orchestrator.
"""

from __future__ import annotations

from typing import Any

from cli import watching
from cli.client import Api, seg
from cli.output import out, styled
from cli.runner import Failure

FAILED = "Failed"
HOOK_STEPS = ("PreHook", "PostHook")


def _failures(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps and tasks that ended in error, each with what it left to read."""
    found: list[dict[str, Any]] = []
    for step in pipeline:
        failed_tasks = [t for t in step.get("tasks") or [] if t.get("error")]
        if step.get("error") and not failed_tasks:
            # A step's own pod (ConvertGuest's conversion pod) or Job (a hook's) leaves its
            # log in the step.
            detail = step.get("detail") or {}
            found.append(
                {
                    "step": step["name"],
                    "task": None,
                    "error": step["error"],
                    "pod": detail.get("pod") or None,
                    "job": detail.get("job") or None,
                    "log": detail.get("log") or "",
                }
            )
        for t in failed_tasks:
            detail = t.get("detail") or {}
            found.append(
                {
                    "step": step["name"],
                    "task": t["task"],
                    "error": t["error"],
                    "pod": detail.get("pod") or None,
                    "recreations": detail.get("recreations"),
                    "log": detail.get("log") or "",
                }
            )
    return found


def _hooks(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The VM's hook steps that ran, failed or not: their Job, outcome and log."""
    found = []
    for step in pipeline:
        detail = step.get("detail") or {}
        if step["name"] in HOOK_STEPS and detail.get("job"):
            found.append(
                {
                    "step": step["name"],
                    "hook": detail.get("hook"),
                    "state": step.get("state"),
                    "job": detail["job"],
                    "tries": detail.get("tries"),
                    "log": detail.get("log") or "",
                }
            )
    return found


def _pick(listed: list[dict[str, Any]], plan: str, vms: tuple[str, ...]) -> list[dict[str, Any]]:
    if not vms:
        return [v for v in listed if v.get("phase") == FAILED]
    by_ref = {v["id"]: v for v in listed} | {v["name"]: v for v in listed}
    unknown = [v for v in vms if v not in by_ref]
    if unknown:
        raise Failure(f"not in plan {plan}'s current migration: {', '.join(unknown)}")
    return [by_ref[v] for v in vms]


async def diagnose(api: Api, plan: str, vms: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per VM (the failed ones, or those named): phase, error, and every failure's log."""
    report = []
    for vm in _pick(await watching.all_vms(api, plan), plan, vms):
        path = f"/api/v1/migrations/{seg(vm['migrationId'])}/vms/{seg(vm['id'])}"
        view = await api.get("orchestrator", path)
        report.append(
            {
                "id": vm["id"],
                "name": vm["name"],
                "phase": vm.get("phase"),
                "error": view.get("error"),
                "failures": _failures(view.get("pipeline") or []),
                "hooks": _hooks(view.get("pipeline") or []),
            }
        )
    return report


def _said(error: Any) -> str:
    """An error as the orchestrator records it ({reason, message, permanent}), in a line."""
    if not isinstance(error, dict):
        return str(error)
    kind = "permanent" if error.get("permanent") else "temporary"
    return f"{error.get('reason')} ({kind}): {error.get('message')}"


def show(plan: str, report: list[dict[str, Any]], lines: int) -> None:
    if not report:
        out.print(f"no failed VM in plan {plan}'s current migration")
        return
    for vm in report:
        head = styled(vm["phase"])
        head.append(f"  VM {vm['name']} ({vm['id']})")
        out.print(head)
        if not vm["failures"]:
            out.print("  no failed step")
            if vm["error"]:  # otherwise the failures below say it
                out.print(f"  error: {_said(vm['error'])}", markup=False)
        for f in vm["failures"]:
            where = f["step"] if f["task"] is None else f"{f['step']} / disk {f['task']}"
            out.print(f"  {where}: {_said(f['error'])}", markup=False)
            if f.get("pod"):
                again = f" (recreated {f['recreations']}x)" if f.get("recreations") else ""
                what = "populator pod" if f["task"] is not None else "pod"
                out.print(f"    {what} {f['pod']}{again}", markup=False)
            if f.get("job"):
                out.print(f"    Job {f['job']}", markup=False)
            _tail(f.get("log", ""), lines)
        failed = {f["step"] for f in vm["failures"]}
        for h in vm.get("hooks") or []:
            if h["step"] in failed:
                continue  # shown above, with its error
            tries = f", {h['tries']} tr{'y' if h['tries'] == 1 else 'ies'}" if h["tries"] else ""
            out.print(
                f"  {h['step']} hook {h['hook']}: {h['state']} (Job {h['job']}{tries})",
                markup=False,
            )
            _tail(h["log"], lines)


def _tail(log: str, lines: int) -> None:
    tail = log.rstrip("\n").splitlines()[-lines:] if lines else []
    if tail:
        out.print(f"    last {len(tail)} log line(s):")
    for line in tail:
        out.print(f"    | {line}", markup=False, soft_wrap=True)
