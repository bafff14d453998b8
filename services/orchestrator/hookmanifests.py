"""The objects a VM's hook step creates, as plain dicts: pure functions of the frozen plan.

Two per hook run, named alike (``naming.hook_job``) and labelled as every object of the VM
(``hoist.io/plan``, ``migration``, ``vm``: cleanup and teardown select by them) plus
``hoist.io/hook`` (``pre``/``post``) and ``hoist.io/hook-name``:

- a ConfigMap with what the hook reads (``shared.hooks``): ``plan.yml``, ``vm.yml`` (and
  ``workload.yml``, the same document under Forklift's name) and the playbook if any;
- a ``batch/v1`` Job: one container ``hook`` of the hook's image with the ConfigMap at
  ``/tmp/hook``, ``backoffLimit`` = the hook's retries, ``activeDeadlineSeconds`` = its
  deadline (every try together: the admin's "this hook has ten minutes"), ``restartPolicy:
  Never`` (each try is a pod of its own, with its own log).

Unlike the pods Hoist runs itself, a hook's pod is the user's program: it keeps its image's
user and the service account token (a hook often talks to the cluster, e.g. reads an SSH
key Secret), under the hook's service account when it names one.

Pure, like ``manifests.py``: a step run again after a crash builds the same objects, and
tests check them against the upstream schemas without a cluster.
"""

from __future__ import annotations

from typing import Any

import yaml

from services.orchestrator import naming
from shared import hooks
from shared import populator as contract
from shared.payloads import HookSpec, PlannedVm, PlanStarted, Step

Obj = dict[str, Any]


def labels(started: PlanStarted, vm: PlannedVm, step: Step, hook: HookSpec) -> dict[str, str]:
    return {
        **contract.object_labels(started.plan_id, started.migration_id, vm.vm_id),
        hooks.HOOK: hooks.label_of(step),
        hooks.HOOK_NAME: contract.label_value(hook.name),
    }


def name(started: PlanStarted, vm: PlannedVm, step: Step) -> str:
    return naming.hook_job(vm.target_name, started.migration_id, hooks.label_of(step))


def plan_document(started: PlanStarted) -> Obj:
    """``plan.yml``: the migration as the hook may need it; never a credential (the
    providers' Secrets are named, not read)."""
    return {
        "plan": {"id": started.plan_id, "name": started.plan_name},
        "migration": {"id": started.migration_id, "type": started.migration_type.value},
        "source": {
            "id": started.source.id,
            "type": started.source.type.value,
            "url": started.source.url,
        },
        "target": {
            "id": started.target.id,
            "url": started.target.url,
            "namespace": started.target_namespace,
            "powerState": started.target_power_state.value,
            "transferNetwork": started.transfer_network,
        },
        "cutover": started.cutover.isoformat() if started.cutover else None,
    }


def vm_document(started: PlanStarted, vm: PlannedVm, step: Step, hook: HookSpec) -> Obj:
    """``vm.yml``: the source VM as the inventory knew it at start, and what it becomes."""
    return {
        "step": step.value,
        "hook": hook.name,
        "vm": vm.source if vm.source is not None else {"id": vm.vm_id, "name": vm.name},
        "target": {
            "namespace": started.target_namespace,
            "name": vm.target_name,
            "powerState": (vm.target_power_state or started.target_power_state).value,
            "disks": [
                {
                    "id": d.disk_id,
                    "name": d.name,
                    "pvc": d.pvc_name,
                    "sizeBytes": d.size_bytes,
                    "storageClass": d.storage_class,
                    "volumeMode": d.volume_mode,
                }
                for d in vm.disks
            ],
            "nics": [
                {"id": n.nic_id, "name": n.name, "mac": n.mac, "network": n.target} for n in vm.nics
            ],
        },
    }


def config_map(started: PlanStarted, vm: PlannedVm, step: Step, hook: HookSpec) -> Obj:
    document = yaml.safe_dump(vm_document(started, vm, step, hook), sort_keys=False)
    data = {
        hooks.PLAN_FILE: yaml.safe_dump(plan_document(started), sort_keys=False),
        hooks.VM_FILE: document,
        hooks.WORKLOAD_FILE: document,
    }
    if hook.playbook:
        data[hooks.PLAYBOOK_FILE] = hook.playbook
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name(started, vm, step),
            "namespace": started.target_namespace,
            "labels": labels(started, vm, step, hook),
        },
        "data": data,
    }


def job(
    started: PlanStarted,
    vm: PlannedVm,
    step: Step,
    hook: HookSpec,
    *,
    cpu_request: str = "100m",
    memory_request: str = "150Mi",
    cpu_limit: str = "1",
    memory_limit: str = "1Gi",
) -> Obj:
    job_name = name(started, vm, step)
    tags = labels(started, vm, step, hook)
    container: Obj = {
        "name": hooks.CONTAINER,
        "image": hook.image,
        "resources": {
            "requests": {"cpu": cpu_request, "memory": memory_request},
            "limits": {"cpu": cpu_limit, "memory": memory_limit},
        },
        "volumeMounts": [{"name": "hook", "mountPath": hooks.MOUNT, "readOnly": True}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if hook.playbook:
        container["args"] = list(hooks.RUNNER_ARGS)
    spec: Obj = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "hook", "configMap": {"name": job_name}}],
    }
    if hook.service_account:
        spec["serviceAccountName"] = hook.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": started.target_namespace, "labels": tags},
        "spec": {
            "backoffLimit": hook.retries,
            "activeDeadlineSeconds": hook.deadline_seconds,
            "template": {"metadata": {"labels": dict(tags)}, "spec": spec},
        },
    }
