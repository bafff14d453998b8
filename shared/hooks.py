"""The hook contract: how a VM's PreHook and PostHook run, declared once for the planner,
the orchestrator, the CLI and hook images.

A hook is the user's program run as a batch Job in the VM's target namespace: before the
source VM is powered off (PreHook: drain a load balancer, stop an application cleanly) or
after its VirtualMachine exists (PostHook: re-register DNS, run smoke tests). Forklift's
shape, so its users' images and playbooks keep working: one container ``hook`` running
``HookSpec.image``, a ConfigMap mounted at ``/tmp/hook`` with ``plan.yml`` (the frozen
plan), ``workload.yml`` (the VM, Forklift's name) and, with a playbook, ``playbook.yml``;
a playbook hook's arguments are Forklift's ``ansible-runner`` command (the image is then a
runner, ``quay.io/konveyor/hook-runner``). Hoist adds ``vm.yml``: the same document as
``workload.yml`` under the name its own docs use.

``vm.yml`` holds ``vm`` (the source VM as the inventory knew it at start), ``target``
(namespace, name, power state, disks' claims) and ``step``; ``plan.yml`` the plan's name,
id, migration, providers (ids and URLs, never credentials), namespace and type.
"""

from __future__ import annotations

from enum import StrEnum

from shared.payloads import HookSpec, PlannedVm, Step
from shared.populator.kinds import PREFIX

__all__ = [
    "CONTAINER",
    "DEFAULT_DEADLINE_SECONDS",
    "HOOK",
    "HOOK_NAME",
    "MAX_DEADLINE_SECONDS",
    "MAX_RETRIES",
    "MOUNT",
    "PLAN_FILE",
    "PLAYBOOK_FILE",
    "RUNNER_ARGS",
    "VM_FILE",
    "WORKLOAD_FILE",
    "Reason",
    "hooks_of",
    "label_of",
]

HOOK = f"{PREFIX}hook"
"""Label of a hook's Job, ConfigMap and pods: ``pre`` or ``post`` (``label_of``)."""
HOOK_NAME = f"{PREFIX}hook-name"
"""Label: the hook's name, so ``kubectl get jobs -l hoist.io/hook-name=drain`` finds its runs."""
CONTAINER = "hook"
MOUNT = "/tmp/hook"  # noqa: S108 (a path in the hook's container, Forklift's)
PLAN_FILE = "plan.yml"
VM_FILE = "vm.yml"
WORKLOAD_FILE = "workload.yml"
PLAYBOOK_FILE = "playbook.yml"
RUNNER_ARGS: tuple[str, ...] = (
    "ansible-runner",
    "run",
    "/tmp/runner",  # noqa: S108
    "-p",
    f"{MOUNT}/{PLAYBOOK_FILE}",
)
"""A playbook hook's container arguments (Forklift's), after the runner image's entrypoint."""

DEFAULT_DEADLINE_SECONDS = 600
MAX_DEADLINE_SECONDS = 24 * 3600
MAX_RETRIES = 10


class Reason(StrEnum):
    """Why a hook step failed (the VM's ``error.reason``)."""

    FAILED = "HookFailed"  # the Job failed: its pods exited non-zero backoffLimit+1 times
    TIMEOUT = "HookTimeout"  # the Job's activeDeadlineSeconds passed
    LOST = "HookJobLost"  # the Job vanished before it ended, again and again


def label_of(step: Step) -> str:
    """``pre`` or ``post``: the value of ``HOOK`` on a step's objects."""
    if step is Step.PRE_HOOK:
        return "pre"
    if step is Step.POST_HOOK:
        return "post"
    raise ValueError(f"{step} is not a hook step")


def hooks_of(vm: PlannedVm) -> dict[Step, HookSpec]:
    """The VM's hooks by step (the planner resolved at most one per step)."""
    return {h.step: h.hook for h in vm.hooks}
