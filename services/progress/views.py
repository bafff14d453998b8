"""What the progress API answers, typed for its OpenAPI document (``querying`` builds it).

The routes send what ``querying`` builds as it is, so a model here documents the JSON and
never rewrites it; the fuzz test (``tests/test_fuzz.py``) and the service's tests check real
answers against these schemas. Unknown keys are allowed (a newer answer, an older client).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.service.answers import Answer

State = Literal["running", "succeeded", "failed"]


class Pod(Answer):
    namespace: str
    name: str
    ip: str | None


class Totals(Answer):
    """Sums over disks, with the arithmetic of the VM progress events."""

    state: State
    disksTotal: int
    disksDone: int
    bytesDone: int
    bytesTotal: int
    percent: float
    rateBytesPerSecond: float | None = Field(description="null: no running disk has a rate.")
    etaSeconds: float | None
    observedAt: str | None = Field(description="RFC 3339: the latest observation.")


class Disk(Answer):
    diskId: str
    vmId: str
    planId: str
    migrationId: str
    clusterId: str
    pod: Pod
    populatorKind: str
    state: State
    bytesDone: int
    bytesTotal: int
    percent: float
    rateBytesPerSecond: float | None
    etaSeconds: float | None
    error: str | None
    startedAt: str | None
    observedAt: str | None
    finishedAt: str | None


class Point(Answer):
    at: str | None
    bytesDone: int
    percent: float


class DiskWithHistory(Disk):
    history: list[Point] = Field(description="Oldest first, since the disk's copy started.")


class VmProgress(Totals):
    vmId: str
    planId: str
    migrationId: str
    disks: list[Disk]


class PlanVm(Totals):
    vmId: str
    migrationId: str


class PlanProgress(Totals):
    planId: str
    vms: list[PlanVm]
