"""A hook's Job and ConfigMap, without a cluster: they pass the strict upstream schemas of
every Kubernetes version Hoist supports, carry what a hook reads (the plan, the VM as the
inventory knew it, its target; the playbook only when there is one; never a credential),
and put PreHook and PostHook where a user expects them in every pipeline."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.orchestrator import hookmanifests
from shared import hooks
from shared.payloads import HookSpec, PlannedHook, PlannedVm, Step
from shared.pipeline import steps_of
from sim.kube.validation import Validator
from tests.orchestrator import sample_plans
from tests.orchestrator.test_manifests import KUBE_VERSIONS, kind_of

PLAYBOOK = "- hosts: localhost\n  tasks:\n    - debug: {msg: hi}\n"
SPECS = (
    HookSpec(name="drain", image="quay.io/acme/drain:1.2"),
    HookSpec(
        name="smoke",
        image="quay.io/konveyor/hook-runner:latest",
        playbook=PLAYBOOK,
        service_account="hooks",
        deadline_seconds=90,
        retries=2,
    ),
)


def with_hook(vm: PlannedVm, step: Step, spec: HookSpec) -> PlannedVm:
    source = {"id": vm.vm_id, "name": vm.name, "data": {"status": "up"}}
    return vm.model_copy(update={"hooks": [PlannedHook(step=step, hook=spec)], "source": source})


def objects() -> list[tuple[dict[str, Any], dict[str, Any], HookSpec, Step]]:
    out = []
    for started in sample_plans.all_plans():
        for vm in started.vms:
            for spec, step in zip(SPECS, (Step.PRE_HOOK, Step.POST_HOOK), strict=True):
                hooked = with_hook(vm, step, spec)
                out.append(
                    (
                        hookmanifests.job(started, hooked, step, spec),
                        hookmanifests.config_map(started, hooked, step, spec),
                        spec,
                        step,
                    )
                )
    return out


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_job_and_config_map_pass_the_strict_upstream_schemas(version: str) -> None:
    validator = Validator(version, strict=True)
    for job, config_map, _, _ in objects():
        for obj in (job, config_map):
            assert validator.check(kind_of(obj), obj) == [], obj["metadata"]["name"]


def test_what_the_hook_gets() -> None:
    started = sample_plans.ovirt_plan()
    for job, config_map, spec, step in objects()[:2]:
        name = job["metadata"]["name"]
        assert config_map["metadata"]["name"] == name
        assert job["metadata"]["labels"][hooks.HOOK] == hooks.label_of(step)
        assert job["metadata"]["labels"][hooks.HOOK_NAME] == spec.name
        assert job["metadata"]["labels"]["hoist.io/migration"] == started.migration_id
        assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]
        assert job["spec"]["backoffLimit"] == spec.retries
        assert job["spec"]["activeDeadlineSeconds"] == spec.deadline_seconds
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["volumes"] == [{"name": "hook", "configMap": {"name": name}}]
        (container,) = pod["containers"]
        assert container["image"] == spec.image
        assert container["volumeMounts"][0]["mountPath"] == "/tmp/hook"
        data = config_map["data"]
        vm_doc = yaml.safe_load(data[hooks.VM_FILE])
        assert data[hooks.WORKLOAD_FILE] == data[hooks.VM_FILE]
        assert vm_doc["step"] == step.value
        assert vm_doc["vm"]["data"]["status"] == "up"
        assert vm_doc["target"]["namespace"] == started.target_namespace
        plan_doc = yaml.safe_load(data[hooks.PLAN_FILE])
        assert plan_doc["plan"]["id"] == started.plan_id
        assert "secret" not in data[hooks.PLAN_FILE].lower()  # names no credential at all
        if spec.playbook:
            assert data[hooks.PLAYBOOK_FILE] == PLAYBOOK
            assert container["args"] == list(hooks.RUNNER_ARGS)
            assert pod["serviceAccountName"] == "hooks"
        else:
            assert hooks.PLAYBOOK_FILE not in data
            assert "args" not in container
            assert "serviceAccountName" not in pod


def test_hook_steps_in_every_pipeline() -> None:
    both = (Step.PRE_HOOK, Step.POST_HOOK)
    cold = [s.value for s in steps_of("ovirt", hooks=both)]
    assert cold == [
        "Initialize", "PreHook", "PowerOffSource", "DiskAllocation", "DiskTransfer",
        "VirtualMachineCreation", "PostHook", "Cleanup",
    ]  # fmt: skip
    # Warm: at the cutover, after the last precopy, before the final power-off.
    warm = [s.value for s in steps_of("ovirt", warm=True, convert=True, hooks=both)]
    assert warm == [
        "Initialize", "WarmPrecopy", "PreHook", "PowerOffSource", "FinalCopy", "ConvertGuest",
        "VirtualMachineCreation", "PostHook", "Cleanup",
    ]  # fmt: skip
    stack = [s.value for s in steps_of("openstack", hooks=[Step.POST_HOOK])]
    assert stack[-3:] == ["VirtualMachineCreation", "PostHook", "Cleanup"]
    with pytest.raises(ValueError, match="not a hook step"):
        steps_of("ovirt", hooks=[Step.CLEANUP])
