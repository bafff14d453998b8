"""Names, kinds, labels and annotations of everything the orchestrator creates, spelled once.

Every name is derived from ids, never drawn at random: a step that runs again after a crash
computes the same names and finds (create-or-get) what its first run made. The pipeline and
the populator controller both import from here, so the contract between them (which claim
is populated from which custom resource, where the failure of a disk is recorded) has one
spelling.
"""

from __future__ import annotations

import hashlib

from shared import labels

# --- Hoist's populator kinds (Forklift's field names, Hoist's own API group) --------------
GROUP = "hoist.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
OVIRT_KIND = "OvirtVolumePopulator"
OVIRT_PLURAL = "ovirtvolumepopulators"
OPENSTACK_KIND = "OpenstackVolumePopulator"
OPENSTACK_PLURAL = "openstackvolumepopulators"
PLURALS = {OVIRT_KIND: OVIRT_PLURAL, OPENSTACK_KIND: OPENSTACK_PLURAL}
KIND_OF_SOURCE = {"ovirt": OVIRT_KIND, "openstack": OPENSTACK_KIND}
METRIC_OF_KIND = {OVIRT_KIND: "ovirt_progress", OPENSTACK_KIND: "openstack_populator_progress"}

# --- annotations and finalizers of the mechanism ------------------------------------------
FINALIZER = f"{GROUP}/populate-target-protection"
"""On a user claim while the controller populates it; removed once the data is in place."""
POPULATED_FROM = f"{GROUP}/populated-from"
"""On a PV the controller rebound: ``namespace/name`` of the populator CR it came from."""
RECREATIONS = f"{GROUP}/recreations"
"""On a user claim: how many times its failed populator pod was recreated."""
SELECTED_NODE = "volume.kubernetes.io/selected-node"
MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"
SECRET_KIND = "source-provider"  # noqa: S105 (a label value, not a credential)
"""Value of the ``hoist.io/secret`` label on a copied provider Secret (a label value has no
``/``: the API server refuses one that does)."""
SECRET_LABEL = f"{GROUP}/secret"
CONSUMER_LABEL = f"{GROUP}/consumer"

# Populator custom resource ``status.phase`` values, written by the controller.
PHASE_PENDING = "Pending"
PHASE_RUNNING = "Running"
PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"

# --- the populator controller --------------------------------------------------------------
SOURCE_OF_KIND = {kind: source for source, kind in KIND_OF_SOURCE.items()}
"""The populator kind -> the first argument of ``python -m services.populators``."""
SECRET_FIELD = {OVIRT_KIND: "engineSecretName", OPENSTACK_KIND: "secretName"}
"""The field of a populator CR's spec naming the source credentials Secret."""
VOLUME_POPULATOR = {OVIRT_KIND: "hoist-ovirt", OPENSTACK_KIND: "hoist-openstack"}
"""Names of the cluster-scoped ``VolumePopulator`` objects registering Hoist's kinds."""
LAST_FAILED_POD = f"{GROUP}/last-failed-pod"
"""On a user claim: uid of the failed populator pod last counted in ``RECREATIONS`` (so a
controller restarted between counting and deleting the pod does not count it twice)."""
COMPONENT_LABEL = "app.kubernetes.io/component"
POPULATOR_COMPONENT = "populator"
"""``COMPONENT_LABEL`` of populator pods (the controller watches pods by it)."""
PRIME_COMPONENT = "prime-claim"
CONTROLLER_COMPONENT = "hoist-populator-controller"
"""``source.component`` of the Kubernetes Events the populator controller records."""

# CR ``status.reason`` values a pipeline may act on (Failed is final).
REASON_STATIC_STORAGE = "StaticStorageClass"
REASON_POPULATOR_FAILED = "PopulatorFailed"
REASON_POD_FAILED = "PopulatorPodFailed"
"""A pod failed and another is being made (phase stays Running)."""
REASON_BOUND_WITHOUT_DATA = "BoundWithoutPopulation"
REASON_COMPLETED = "Populated"


def short(text: str, length: int = 10) -> str:
    """A stable hex digest: ids (UUIDs, long OpenStack ids) shortened for object names."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def prime_claim(user_claim_uid: str) -> str:
    return f"prime-{user_claim_uid}"


def populator_pod(user_claim_uid: str) -> str:
    return f"populate-{user_claim_uid}"


def populator_cr(pvc_name: str) -> str:
    """The populator CR of a disk carries its claim's name (a different kind, no clash)."""
    return pvc_name


def source_secret(target_name: str, migration_id: str) -> str:
    """The copy of the source provider's Secret a VM's populator pods read (one per VM:
    deleting one VM's objects never takes another's credentials away)."""
    return _dns(f"{target_name}-source-{short(migration_id, 6)}")


def consumer_pod(target_name: str, migration_id: str) -> str:
    """The pod that consumes a VM's claims under WaitForFirstConsumer, so they bind."""
    return _dns(f"{target_name}-pvcinit-{short(migration_id, 6)}")


def artifact(kind: str, migration_id: str, vm_id: str, disk_id: str = "") -> str:
    """Temporary OpenStack snapshots, volumes and images: ``hoist-<kind>-<digest>``, one per
    (migration, VM, disk), so a re-run of the step finds what the first run made."""
    return f"hoist-{kind}-{short(f'{migration_id}/{vm_id}/{disk_id}', 16)}"


def object_labels(plan_id: str, migration_id: str, vm_id: str, disk_id: str = "") -> dict[str, str]:
    """Labels of every object created for a VM (and a disk of it): cleanup selects by these.

    Ids that are not valid label values (longer than 63, odd characters) are replaced by
    their digest, the same one every time."""
    out = {
        labels.MANAGED_BY: labels.MANAGED_BY_HOIST,
        labels.PLAN: label_value(plan_id),
        labels.MIGRATION: label_value(migration_id),
        labels.VM: label_value(vm_id),
    }
    if disk_id:
        out[labels.DISK] = label_value(disk_id)
    return out


def vm_selector(migration_id: str, vm_id: str) -> str:
    """Label selector of everything one VM of one migration owns."""
    return f"{labels.MIGRATION}={label_value(migration_id)},{labels.VM}={label_value(vm_id)}"


def label_value(value: str) -> str:
    ok = len(value) <= 63 and all(c.isalnum() or c in "-_." for c in value)
    if ok and (not value or (value[0].isalnum() and value[-1].isalnum())):
        return value
    return f"h-{short(value, 40)}"


def _dns(name: str) -> str:
    """A DNS-1123 label (63 characters at most), shortened with a digest when too long."""
    name = name.lower()
    if len(name) <= 63:
        return name
    return f"{name[:52].rstrip('-')}-{short(name)}"
