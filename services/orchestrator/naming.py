"""Names of what only the orchestrator creates, spelled once.

Every name is derived from ids, never drawn at random: a step that runs again after a crash
computes the same names and finds (create-or-get) what its first run made. What the
pipeline shares with the populator controller and the progress service (kinds, CR fields,
the labels and annotations on claims and pods, the CR's name) is the populator contract,
``shared.populator``, and is spelled there; here are the names nobody else reads: the
Secret copy, the consumer pod, OpenStack's temporary artifacts, a VM's selector.
"""

from __future__ import annotations

import hashlib

from shared import populator as contract
from shared.populator import label_value

SECRET_KIND = "source-provider"  # noqa: S105 (a label value, not a credential)
"""Value of the ``hoist.io/secret`` label on a copied provider Secret (a label value has no
``/``: the API server refuses one that does)."""
SECRET_LABEL = f"{contract.PREFIX}secret"
CONSUMER_LABEL = f"{contract.PREFIX}consumer"


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


def conversion_pod(target_name: str, migration_id: str) -> str:
    """ConvertGuest's pod: one per VM and migration, so a restarted step finds it."""
    return _dns(f"{target_name}-convert-{short(migration_id, 6)}")


def hook_job(target_name: str, migration_id: str, hook: str) -> str:
    """A hook's Job and its ConfigMap (``hook``: ``pre`` or ``post``): one per VM, step and
    migration, so a restarted orchestrator adopts the Job it made instead of running the
    hook twice, and a re-run (a new migration) runs it again."""
    return _dns(f"{target_name}-{hook}hook-{short(migration_id, 6)}")


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
