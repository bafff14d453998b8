"""Names of everything the orchestrator creates, spelled once.

Every name is derived from ids, never drawn at random: a step that runs again after a crash
computes the same names and finds (create-or-get) what its first run made. What the
pipeline shares with the populator controller (kinds, CR fields, the keys on claims and
pods, the derived names) is the populator contract, ``shared.populator``; the aliases below
keep the old names for the orchestrator's modules until they import the contract.
"""

from __future__ import annotations

import hashlib

from shared import populator as contract

# --- moved to shared.populator; aliases until the orchestrator imports the contract -------
GROUP = contract.GROUP
VERSION = contract.VERSION
API_VERSION = contract.API_VERSION
OVIRT_KIND = contract.OVIRT.name
OVIRT_PLURAL = contract.OVIRT.plural
OPENSTACK_KIND = contract.OPENSTACK.name
OPENSTACK_PLURAL = contract.OPENSTACK.plural
PLURALS = {k.name: k.plural for k in contract.KINDS}
KIND_OF_SOURCE = {k.source.value: k.name for k in contract.KINDS}
METRIC_OF_KIND = {k.name: k.percent_metric for k in contract.KINDS}
SOURCE_OF_KIND = {k.name: k.source.value for k in contract.KINDS}
SECRET_FIELD = {k.name: k.spec.CREDENTIALS_FIELD for k in contract.KINDS}
VOLUME_POPULATOR = {k.name: k.volume_populator for k in contract.KINDS}
FINALIZER = contract.FINALIZER
POPULATED_FROM = contract.POPULATED_FROM
RECREATIONS = contract.RECREATIONS
LAST_FAILED_POD = contract.LAST_FAILED_POD
SELECTED_NODE = contract.SELECTED_NODE
MULTUS_NETWORKS = contract.MULTUS_NETWORKS
COMPONENT_LABEL = contract.COMPONENT
POPULATOR_COMPONENT = contract.POPULATOR_COMPONENT
PRIME_COMPONENT = contract.PRIME_COMPONENT
PHASE_PENDING = contract.Phase.PENDING.value
PHASE_RUNNING = contract.Phase.RUNNING.value
PHASE_SUCCEEDED = contract.Phase.SUCCEEDED.value
PHASE_FAILED = contract.Phase.FAILED.value
REASON_STATIC_STORAGE = contract.Reason.STATIC_STORAGE.value
REASON_POPULATOR_FAILED = contract.Reason.POPULATOR_FAILED.value
REASON_POD_FAILED = contract.Reason.POD_FAILED.value
REASON_BOUND_WITHOUT_DATA = contract.Reason.BOUND_WITHOUT_DATA.value
REASON_COMPLETED = contract.Reason.COMPLETED.value
prime_claim = contract.prime_claim
populator_pod = contract.populator_pod
populator_cr = contract.populator_cr
object_labels = contract.object_labels
label_value = contract.label_value

# --- the orchestrator's own names ---------------------------------------------------------
SECRET_KIND = "source-provider"  # noqa: S105 (a label value, not a credential)
"""Value of the ``hoist.io/secret`` label on a copied provider Secret (a label value has no
``/``: the API server refuses one that does)."""
SECRET_LABEL = f"{GROUP}/secret"
CONSUMER_LABEL = f"{GROUP}/consumer"


def short(text: str, length: int = 10) -> str:
    """A stable hex digest: ids (UUIDs, long OpenStack ids) shortened for object names."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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


def vm_selector(migration_id: str, vm_id: str) -> str:
    """Label selector of everything one VM of one migration owns."""
    return f"{contract.MIGRATION}={label_value(migration_id)},{contract.VM}={label_value(vm_id)}"


def _dns(name: str) -> str:
    """A DNS-1123 label (63 characters at most), shortened with a digest when too long."""
    name = name.lower()
    if len(name) <= 63:
        return name
    return f"{name[:52].rstrip('-')}-{short(name)}"
