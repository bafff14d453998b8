"""Helpers of the orchestrator's source tests: plans of one VM, providers, settings.

The sources run against the real simulators: an oVirt engine of the tests' own (one per
module, ``test_ovirt.py``) and the session's OpenStack cloud (``tests/conftest.py``), to
which the OpenStack tests add servers of their own so no other test sees them change.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.payloads import PlannedDisk, PlannedVm, ProviderRef, ProviderType, ResourceRef
from shared.settings import OrchestratorSettings

SETTINGS = OrchestratorSettings(source_timeout_seconds=30, poll_seconds=0.2)


def provider(ptype: ProviderType, url: str, fingerprint: str | None = None) -> ProviderRef:
    return ProviderRef(
        id=f"{ptype.value}-1",
        type=ptype,
        url=url,
        secret=ResourceRef(namespace="hoist", name=f"{ptype.value}-secret"),
        tls_fingerprint_sha256=fingerprint,
    )


def planned(vm_id: str, name: str, disks: Iterable[tuple[str, str]]) -> PlannedVm:
    """A planned VM with ``(disk_id, source_storage)`` disks; the target side is filler."""
    return PlannedVm(
        vm_id=vm_id,
        name=name,
        target_name=name.lower(),
        disks=[
            PlannedDisk(
                disk_id=disk_id,
                size_bytes=1 << 30,
                source_storage=storage,
                boot=n == 0,
                pvc_name=f"{name.lower()}-disk-{n}",
                storage_class="standard",
                volume_mode="Filesystem",
                access_mode="ReadWriteOnce",
            )
            for n, (disk_id, storage) in enumerate(disks)
        ],
    )
