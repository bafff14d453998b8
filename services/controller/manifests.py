"""The prime claim and the populator pod of a user claim, as manifests.

Both live in the user claim's namespace and are owned by it (controller reference, so
deleting the claim cascades), and their names derive from its uid (``shared.populator``),
so a controller that runs again finds what it made instead of making it twice.

The pod runs the one Hoist image with args only (its entrypoint is ``python -m
services.populators``): ``shared.populator.PodArgs``, the source first, then Forklift's
flags, built from the table the populator parses them with. The copied Secret
reaches it as env (``envFrom``), its ``cacert`` also as a file; the pod IP through the
downward API (the metrics server binds it). It runs as a non-root uid with every capability
dropped, seccomp RuntimeDefault and a read-only root filesystem: a populator only reads
the network and writes its volume. Labels and annotations are what the progress service
discovers populator pods by (``shared.populator``).

Next: services/populators/__main__.py
"""

from __future__ import annotations

from typing import Any

from shared import populator as contract
from shared.kube import Obj
from shared.populator.stages import STAGE_ANNOTATION
from shared.settings import OrchestratorSettings

CONTAINER = "populate"
BLOCK_PATH = "/dev/block"
MOUNT_PATH = "/mnt/disk"
CA_DIR = "/etc/hoist/ca"
CA_FILE = "ca.crt"
TERMINATION_GRACE_SECONDS = 30
"""Time a populator gets to cancel its source transfer (oVirt) when its pod is deleted."""


def owner(claim: Obj) -> list[Obj]:
    meta = claim["metadata"]
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def hoist_labels(claim: Obj, component: str) -> dict[str, str]:
    """The claim's Hoist labels (plan, migration, VM, disk), and the component's."""
    lab = claim["metadata"].get("labels") or {}
    keep = (contract.PLAN, contract.MIGRATION, contract.VM, contract.DISK)
    out = {key: lab[key] for key in keep if lab.get(key)}
    out[contract.MANAGED_BY] = contract.MANAGED_BY_HOIST
    out[contract.COMPONENT] = component
    return out


def is_block(claim: Obj) -> bool:
    return (claim.get("spec") or {}).get("volumeMode") == "Block"


def requested_size(claim: Obj) -> str:
    return str(((claim["spec"].get("resources") or {}).get("requests") or {}).get("storage", ""))


def prime_claim(claim: Obj, node: str | None, volume: str = "") -> Obj:
    """The claim the populator writes into; later its volume is handed to the user claim.
    Same access modes, size, class and volume mode as the user claim, no data source;
    ``volume``: the static volume pinned to it (its claimRef names this claim already)."""
    meta, spec = claim["metadata"], claim["spec"]
    body: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": contract.prime_claim(meta["uid"]),
            "namespace": meta["namespace"],
            "labels": hoist_labels(claim, contract.PRIME_COMPONENT),
            "ownerReferences": owner(claim),
        },
        "spec": {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "resources": {"requests": {"storage": requested_size(claim)}},
            "storageClassName": spec.get("storageClassName"),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
        },
    }
    if node:
        body["metadata"]["annotations"] = {contract.SELECTED_NODE: node}
    if volume:
        body["spec"]["volumeName"] = volume
    return body


def transfer_network(value: str, namespace: str) -> str:
    """Multus' ``namespace/name`` form; a bare name is in the claim's namespace."""
    value = value.strip()
    return value if "/" in value else f"{namespace}/{value}"


def populator_pod(
    claim: Obj,
    populator: Obj,
    settings: OrchestratorSettings,
    node: str | None,
    stage: contract.StageArgs | None = None,
    affinity: Obj | None = None,
) -> Obj:
    """The pod that copies the source disk into the prime claim (``stage``: the one stage
    of a multi-stage CR it copies, also named in its ``STAGE_ANNOTATION``, so a later
    reconcile knows which checkpoint this pod's work belongs to; ``affinity``: the node
    affinity of the static volume pinned to the prime, for the scheduler to honour)."""
    meta = claim["metadata"]
    namespace, uid = meta["namespace"], meta["uid"]
    kind = contract.kind_named(populator["kind"])
    if kind is None:
        raise KeyError(populator["kind"])
    spec = kind.spec.from_dict(populator.get("spec") or {})
    secret = spec.secret_name
    disk = contract.DiskIds.of_claim(claim, kind)
    block = is_block(claim)
    path = BLOCK_PATH if block else MOUNT_PATH
    args = contract.PodArgs(
        source=kind.source,
        volume_path=path,
        secret_name=secret,
        cr_name=populator["metadata"]["name"],
        cr_namespace=populator["metadata"]["namespace"],
        owner_uid=uid,
        pvc_size=requested_size(claim),
        spec=spec,
        stage=stage,
    )
    container: Obj = {
        "name": CONTAINER,
        "image": settings.populator_image,
        "imagePullPolicy": settings.populator_pull_policy,
        "args": args.argv(),
        "envFrom": [{"secretRef": {"name": secret}}],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "metrics", "containerPort": contract.METRICS_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {
                "cpu": settings.populator_cpu_request,
                "memory": settings.populator_memory_request,
            },
            "limits": {
                "cpu": settings.populator_cpu_limit,
                "memory": settings.populator_memory_limit,
            },
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        # The populator's last stderr line says why it failed: Kubernetes keeps it in the
        # container status even once the log is gone.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "ca", "mountPath": CA_DIR, "readOnly": True}],
    }
    if block:
        container["volumeDevices"] = [{"name": "target", "devicePath": path}]
    else:
        container["volumeMounts"].append({"name": "target", "mountPath": path})
    uid_number = settings.populator_uid
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid_number,
            "runAsGroup": uid_number,
            "fsGroup": uid_number,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "target",
                "persistentVolumeClaim": {"claimName": contract.prime_claim(uid)},
            },
            {
                "name": "ca",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": "cacert", "path": CA_FILE}],
                    "optional": True,
                },
            },
        ],
    }
    if node:
        # Under WaitForFirstConsumer the prime claim is provisioned where the user's
        # consumer was scheduled; the pod must run there to reach that volume.
        pod_spec["nodeName"] = node
    elif affinity:
        pod_spec["affinity"] = {"nodeAffinity": affinity}
    annotations = contract.pod_annotations(
        cluster_id=disk.cluster_id,
        owner_uid=uid,
        total_bytes=disk.total_bytes,
        populator_kind=disk.populator_kind,
    )
    annotations = {k: v for k, v in annotations.items() if v}
    if network := spec.transfer_network:
        annotations[contract.MULTUS_NETWORKS] = transfer_network(network, namespace)
    if stage is not None:
        annotations[STAGE_ANNOTATION] = stage.current
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": contract.populator_pod(uid),
            "namespace": namespace,
            "labels": hoist_labels(claim, contract.POPULATOR_COMPONENT),
            "annotations": annotations,
            "ownerReferences": owner(claim),
        },
        "spec": pod_spec,
    }


def termination(pod: Obj) -> dict[str, Any]:
    """The ``populate`` container's terminated state ({} while it has none)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state = status.get("state") or {}
            return dict(state.get("terminated") or {})
    return {}


def stage_of(pod: Obj) -> str:
    """The checkpoint a stage pod copies ("" for a cold pod)."""
    return str((pod["metadata"].get("annotations") or {}).get(STAGE_ANNOTATION) or "")


def waiting_reason(pod: Obj) -> str:
    """Why the container is not running yet (ContainerCreating, ErrImagePull...)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return str(waiting["reason"])
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason") or "Unschedulable")
    return ""


def unschedulable(pod: Obj) -> str:
    """The scheduler's word on why the pod fits no node ("" while it is not refused)."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "Unschedulable")
    return ""
