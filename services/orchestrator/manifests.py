"""The Kubernetes objects DiskAllocation creates, as plain dicts: pure functions of the plan.

Each builder takes the frozen plan (``PlanStarted``) and the VM (and disk) it is for and
returns the object to create, nothing read from a cluster but what the caller passes in
(owner references, Secret data, the image id a conversion made). Being pure keeps three
promises of the pipeline:

- a step that runs again after a crash builds the very same object (names come from
  ``naming``, never drawn at random), so create-or-get finds what the first run made;
- every object is checked against the upstream schemas in tests (``kubernetes-validate``
  for core kinds), without a cluster;
- the labels cleanup selects by (``shared.populator.object_labels``) are on every object,
  spelled once.

What a claim and its populator CR say to the populator controller (the ``dataSourceRef``,
the annotations, the CR's kind and typed spec) is built by the populator contract
(``shared.populator``): the controller reads them with the same code.

Order of creation, and why owner references point where they do: the user claim comes first
(its UID is what the populator pod's metrics and the prime claim are keyed by); the
populator CR and the copied Secret are owned by the claims, so deleting a VM's claims lets
the garbage collector take the rest; the Secret names *every* claim of the VM as an owner,
and the collector deletes a dependent only once all its owners are gone.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.orchestrator import naming
from shared import conversion
from shared import populator as contract
from shared.payloads import MigrationType, PlannedDisk, PlannedVm, PlanStarted
from shared.populator.stages import spec_with_stages
from shared.sizing import claim_bytes

Obj = dict[str, Any]

#: On the copied Secret: ``namespace/name`` of the provider Secret it copies (for people
#: and audits; nothing reads it back).
COPIED_FROM = f"{contract.PREFIX}copied-from"
#: Value of ``naming.CONSUMER_LABEL`` on the WaitForFirstConsumer consumer pod, and its
#: container's name: Forklift's name for that pod, the argument it runs.
CONSUMER_VALUE = contract.PVCINIT
#: The consumer pod's arguments by default: the populator image's entrypoint
#: (``python -m services.populators``) knows ``pvcinit``, which exits at once.
CONSUMER_ARGS = (contract.PVCINIT,)
#: Where the consumer pod mounts Filesystem claims and attaches Block claims. Nothing reads
#: them: a pod must name a path to use a claim at all.
MOUNT_ROOT = "/mnt/hoist"
DEVICE_ROOT = "/dev/hoist"


def owner_reference(obj: Mapping[str, Any], *, controller: bool = False, block: bool = True) -> Obj:
    """An owner reference to ``obj`` as the API returned it (apiVersion, kind, metadata).

    ``block`` (``blockOwnerDeletion``) makes a foreground deletion of the owner wait for
    this dependent; the API server requires permission to update the owner's finalizers
    for it, which Hoist's service account has for claims. Raises ``ValueError`` when a field
    is missing: list items come back without apiVersion/kind, and a reference without them
    is refused by the API server (a programming error, not worth retrying)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion") or obj.get("api_version"),
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
    }
    missing = [k for k, v in ref.items() if not v]
    if missing:
        raise ValueError(
            f"cannot refer to an owner without {', '.join(missing)} (read the object by name, "
            "list items lack apiVersion and kind); this is a bug, retrying cannot help"
        )
    ref["controller"] = controller
    ref["blockOwnerDeletion"] = block
    return ref


def populator_kind(started: PlanStarted) -> contract.Kind:
    """The populator kind that fills claims of this plan's source (``ValueError`` for a
    provider that is not a source: the planner never starts such a plan)."""
    return contract.kind_for(started.source.type.value)


def claim(started: PlanStarted, vm: PlannedVm, disk: PlannedDisk) -> Obj:
    """The user claim of ``disk``: the volume the migrated VM will use.

    Its ``dataSourceRef`` names the disk's populator CR, so Kubernetes leaves it unbound
    (no provisioner fills a claim with a populator data source) until the populator
    controller rebinds a filled volume to it. The size counts the Filesystem overhead
    (``shared.sizing``), the request is a plain byte count (no unit rounding surprises);
    annotations carry what the populator pod's discovery needs (cluster, size, kind)."""
    kind = populator_kind(started)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": disk.pvc_name,
            "namespace": started.target_namespace,
            "labels": _labels(started, vm, disk),
            "annotations": contract.claim_annotations(started.target.id, disk.size_bytes, kind),
        },
        "spec": {
            "accessModes": [disk.access_mode],
            "volumeMode": disk.volume_mode,
            "storageClassName": disk.storage_class,
            "resources": {
                "requests": {"storage": str(claim_bytes(disk.size_bytes, disk.volume_mode))}
            },
            "dataSourceRef": contract.data_source_ref(kind, contract.populator_cr(disk.pvc_name)),
            # Binds only the volume the controller pre-binds to it once filled, never an
            # empty static one by itself (a pre-bound volume is exempt from selectors).
            "selector": copy.deepcopy(contract.HOLD_SELECTOR),
        },
    }


def populator(
    started: PlanStarted,
    vm: PlannedVm,
    disk: PlannedDisk,
    *,
    secret_name: str,
    owner: Mapping[str, Any],
    image_id: str | None = None,
) -> Obj:
    """The populator CR the disk's claim names: where its data comes from.

    The spec is the kind's typed one (``shared.populator``: Forklift's field names in
    Hoist's own group, so both can live in one cluster). OpenStack disks are read from the
    Glance image the conversion step made (``image_id``, required there); oVirt disks
    straight from the engine. ``owner`` is the claim's owner reference: the CR goes when
    the claim goes."""
    kind = populator_kind(started)
    network = started.transfer_network or ""
    spec: contract.Spec
    if kind is contract.OPENSTACK:
        if not image_id:
            raise ValueError(
                f"disk {disk.disk_id} of VM {vm.vm_id}: an OpenStack populator needs the id "
                "of the image the conversion step made; run that step first"
            )
        spec = contract.OpenstackSpec(
            identity_url=started.source.url,
            secret_name=secret_name,
            image_id=image_id,
            transfer_network=network,
        )
    else:
        spec = contract.OvirtSpec(
            engine_url=started.source.url,
            engine_secret_name=secret_name,
            disk_id=disk.disk_id,
            transfer_network=network,
        )
    body = contract.populator(
        kind,
        spec,
        name=contract.populator_cr(disk.pvc_name),
        namespace=started.target_namespace,
        labels=_labels(started, vm, disk),
        owner=owner,
    )
    if started.migration_type is MigrationType.WARM:
        # Multi-stage: the controller waits for the first checkpoint the warm steps add.
        body["spec"] = spec_with_stages(body["spec"], [], final=False)
    return body


def source_secret(
    started: PlanStarted,
    vm: PlannedVm,
    data: Mapping[str, str],
    owners: Iterable[Mapping[str, Any]],
    *,
    encoded: bool = True,
) -> Obj:
    """The copy of the source provider's Secret, in the target namespace, for one VM.

    Populator pods read credentials from a Secret in their own namespace; the provider's
    lives in Hoist's. One copy per VM (not per plan) so that deleting one VM's objects never
    takes another VM's credentials away; owned by all the VM's claims, so the collector
    deletes it once the last claim is gone.

    ``data`` is the provider Secret's ``data`` as the API returns it (base64 values,
    ``encoded=True``) or plain text values (``encoded=False``, encoded here). The object
    always carries base64 ``data``, never ``stringData``: the API server turns stringData
    into data, so only this form reads back the same as it was written."""
    if encoded:
        values = {k: str(v) for k, v in data.items()}
    else:
        values = {k: base64.b64encode(str(v).encode()).decode() for k, v in data.items()}
    src = started.source.secret
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": naming.source_secret(vm.target_name, started.migration_id),
            "namespace": started.target_namespace,
            "labels": {**_labels(started, vm), naming.SECRET_LABEL: naming.SECRET_KIND},
            "annotations": {COPIED_FROM: f"{src.namespace}/{src.name}"},
            "ownerReferences": [dict(o) for o in owners],
        },
        "data": values,
    }


def consumer_pod(
    started: PlanStarted,
    vm: PlannedVm,
    claim_names: Sequence[str],
    owners: Iterable[Mapping[str, Any]],
    *,
    image: str,
    command: Sequence[str] = (),
    args: Sequence[str] = CONSUMER_ARGS,
    pull_policy: str = "IfNotPresent",
    run_as_user: int = 107,
) -> Obj:
    """The pod that makes WaitForFirstConsumer claims bind (Forklift's ``pvcinit``).

    Under WFFC nothing provisions, and so nothing populates, until a pod that uses the claim
    is scheduled: the scheduler then writes ``volume.kubernetes.io/selected-node`` on each
    claim, which the populator controller waits for. One pod mounts *all* the VM's claims
    (``claim_names``, each a claim of a disk of ``vm``) so that they land on one node, where
    the VM can then run. It is scheduled normally (no ``nodeName``: a pinned pod bypasses
    the scheduler and would never select a node), runs a command that exits at once once
    the claims are bound, and never restarts. Block claims are attached as devices, others
    mounted: a pod that mounts a Block claim fails to start.

    Hardened like the populator pods (non-root, no capabilities, RuntimeDefault seccomp,
    read-only root, no service account token) so restricted namespaces admit it. It has no
    ``hoist.io/disk`` label, so the progress service's populator pod watch ignores it.

    The pipeline deletes it itself once the claims are bound, and at cleanup: while it may
    still run, the claims it uses are not deleted (``kubernetes.io/pvc-protection``), so
    owner references to those claims alone would never let the collector take either."""
    modes = {d.pvc_name: d.volume_mode for d in vm.disks}
    unknown = [n for n in claim_names if n not in modes]
    if unknown:
        raise ValueError(
            f"claims {', '.join(unknown)} are not disks of VM {vm.vm_id}; this is a bug, "
            "retrying cannot help"
        )
    if not claim_names:
        raise ValueError(f"VM {vm.vm_id}: a consumer pod needs at least one claim")
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    devices: list[Obj] = []
    for i, name in enumerate(claim_names):
        volume = f"disk-{i}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": name}})
        if modes[name] == "Block":
            devices.append({"name": volume, "devicePath": f"{DEVICE_ROOT}/{volume}"})
        else:
            mounts.append({"name": volume, "mountPath": f"{MOUNT_ROOT}/{volume}"})
    container: Obj = {
        "name": CONSUMER_VALUE,
        "image": image,
        "imagePullPolicy": pull_policy,
        **({"command": list(command)} if command else {}),
        "args": list(args),
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
    }
    if mounts:
        container["volumeMounts"] = mounts
    if devices:
        container["volumeDevices"] = devices
    return _claims_pod(
        started,
        naming.consumer_pod(vm.target_name, started.migration_id),
        {**_labels(started, vm), naming.CONSUMER_LABEL: CONSUMER_VALUE},
        owners,
        container,
        volumes,
        run_as_user=run_as_user,
        grace_seconds=5,
    )


def convert_args(
    vm: PlannedVm, *, accel: str = "auto", overlay: bool = True
) -> conversion.ConvertArgs:
    """What the conversion pod must know of ``vm``: its name, memory, vCPUs, firmware and
    its disks' modes in the VM's order (the order the pod attaches them in), from the
    source configuration the plan froze (defaults where the source said nothing)."""
    detail: Mapping[str, Any] = vm.detail if isinstance(vm.detail, Mapping) else {}
    try:
        memory_mib = max(int(str(detail.get("memoryBytes") or 0)) // (1024 * 1024), 0)
    except ValueError:
        memory_mib = 0
    cpu = detail.get("cpu") if isinstance(detail.get("cpu"), Mapping) else {}
    vcpus = 1
    for key in ("sockets", "cores", "threads"):
        try:
            vcpus *= max(int(str(cpu.get(key) or 1)), 1)  # type: ignore[union-attr]
        except ValueError:
            continue
    uefi = str(detail.get("firmware") or "").lower() in ("uefi", "efi")
    return conversion.ConvertArgs(
        name=vm.target_name,
        disks=tuple(conversion.VolumeMode(d.volume_mode) for d in vm.disks),
        memory_mib=memory_mib or 1024,
        vcpus=vcpus,
        firmware=conversion.Firmware.UEFI if uefi else conversion.Firmware.BIOS,
        overlay=overlay,
        accel=conversion.Accel(accel),
    )


def conversion_pod(
    started: PlanStarted,
    vm: PlannedVm,
    args: conversion.ConvertArgs,
    owners: Iterable[Mapping[str, Any]],
    *,
    image: str,
    pull_policy: str = "IfNotPresent",
    cpu_limit: str = "2",
    memory_request: str = "1Gi",
    memory_limit: str = "4Gi",
    run_as_user: int = 107,
) -> Obj:
    """ConvertGuest's pod: all of ``vm``'s claims, in its disk order, at the paths of the
    conversion contract (``shared.conversion``: Filesystem claims mounted at
    ``/mnt/disks/disk<N>``, Block claims attached at ``/dev/block<N>``), running
    ``args``; a scratch emptyDir for the overlays, the domain XML and libguestfs.

    Owned by the claims, like the consumer pod, so deleting a VM's claims takes it along.
    ``FallbackToLogsOnError``: a pod killed before it wrote its result still says why (the
    end of its log), which the step then reports as ``ConversionPodFailed``."""
    if len(args.disks) != len(vm.disks):
        raise ValueError(f"VM {vm.vm_id}: {len(vm.disks)} disks but {len(args.disks)} in args")
    volumes: list[Obj] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[Obj] = [{"name": "scratch", "mountPath": conversion.SCRATCH}]
    devices: list[Obj] = []
    for i, (disk, mode) in enumerate(zip(vm.disks, args.disks, strict=True)):
        volume = f"disk{i}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": disk.pvc_name}})
        path = conversion.volume_path(i, mode)
        if mode is conversion.VolumeMode.BLOCK:
            devices.append({"name": volume, "devicePath": path})
        else:
            mounts.append({"name": volume, "mountPath": path})
    container: Obj = {
        "name": conversion.CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": args.argv(),
        "resources": {
            "requests": {"cpu": "500m", "memory": memory_request},
            "limits": {"cpu": cpu_limit, "memory": memory_limit},
        },
        "terminationMessagePath": conversion.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
        "volumeMounts": mounts,
    }
    if devices:
        container["volumeDevices"] = devices
    return _claims_pod(
        started,
        naming.conversion_pod(vm.target_name, started.migration_id),
        conversion.pod_labels(started.plan_id, started.migration_id, vm.vm_id),
        owners,
        container,
        volumes,
        run_as_user=run_as_user,
        grace_seconds=30,
        # Block devices and volume files writable by the pod's user.
        fs_group=True,
    )


def _claims_pod(
    started: PlanStarted,
    name: str,
    labels: Mapping[str, str],
    owners: Iterable[Mapping[str, Any]],
    container: Obj,
    volumes: list[Obj],
    *,
    run_as_user: int,
    grace_seconds: int,
    fs_group: bool = False,
) -> Obj:
    """A run-once pod of a VM's claims, owned by them, hardened as every pod Hoist makes
    in a target namespace (no service account token, non-root, RuntimeDefault seccomp)."""
    security: Obj = {"runAsNonRoot": True, "runAsUser": run_as_user, "runAsGroup": run_as_user}
    if fs_group:
        security["fsGroup"] = run_as_user
    security["seccompProfile"] = {"type": "RuntimeDefault"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": started.target_namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(o) for o in owners],
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": grace_seconds,
            "securityContext": security,
            "containers": [container],
            "volumes": volumes,
        },
    }


def _labels(started: PlanStarted, vm: PlannedVm, disk: PlannedDisk | None = None) -> dict[str, str]:
    return contract.object_labels(
        started.plan_id, started.migration_id, vm.vm_id, disk.disk_id if disk else ""
    )
