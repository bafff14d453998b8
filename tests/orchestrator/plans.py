"""``plan.started`` payloads for orchestrator tests, built as the planner builds them."""

from __future__ import annotations

import uuid
from typing import Any

from shared import payloads as p


def disk(
    disk_id: str, *, size: int = 8 << 20, mode: str = "Filesystem", **extra: Any
) -> p.PlannedDisk:
    return p.PlannedDisk(
        disk_id=disk_id,
        name=extra.pop("name", disk_id[:8]),
        size_bytes=size,
        pvc_name=extra.pop("pvc_name", f"d-{disk_id[:12]}"),
        storage_class=extra.pop("storage_class", "standard"),
        volume_mode=mode,
        access_mode="ReadWriteOnce",
        **extra,
    )


def vm(vm_id: str, disks: list[p.PlannedDisk], **extra: Any) -> p.PlannedVm:
    return p.PlannedVm(
        vm_id=vm_id,
        name=extra.pop("name", f"vm-{vm_id[:6]}"),
        target_name=extra.pop("target_name", f"vm-{vm_id[:8]}".lower()),
        disks=disks,
        **extra,
    )


def provider(ptype: str, url: str = "https://source.example", secret: str = "") -> p.ProviderRef:
    pid = str(uuid.uuid4())
    return p.ProviderRef(
        id=pid,
        type=p.ProviderType(ptype),
        url=url,
        secret=p.ResourceRef(namespace="hoist", name=secret or f"hoist-provider-{pid}"),
    )


def started(
    vms: list[p.PlannedVm],
    *,
    source: p.ProviderRef | None = None,
    target: p.ProviderRef | None = None,
    namespace: str = "migrated",
    **extra: Any,
) -> p.PlanStarted:
    return p.PlanStarted(
        plan_id=extra.pop("plan_id", str(uuid.uuid4())),
        migration_id=extra.pop("migration_id", str(uuid.uuid4())),
        plan_name=extra.pop("plan_name", "test-plan"),
        source=source or provider("ovirt"),
        target=target or provider("kubevirt", url=""),
        target_namespace=namespace,
        vms=vms,
        **extra,
    )
