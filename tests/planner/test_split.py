"""A frozen plan too large for one NATS message is published in parts."""

from __future__ import annotations

from services.planner.launching import split
from shared.payloads import PlannedDisk, PlannedVm, PlanStarted, ProviderRef, ResourceRef


def frozen(vms: int, padding: int = 0) -> PlanStarted:
    def ref(kind: str) -> ProviderRef:
        return ProviderRef(id=kind, type=kind, url="https://x",
                           secret=ResourceRef(namespace="hoist", name=f"s-{kind}"))  # fmt: skip

    return PlanStarted(
        plan_id="p", migration_id="m", plan_name="p", source=ref("ovirt"),
        target=ref("kubevirt"), target_namespace="ns",
        vms=[
            PlannedVm(
                vm_id=f"vm-{i}", name=f"vm {i}", target_name=f"vm-{i}",
                disks=[PlannedDisk(disk_id=f"d-{i}", size_bytes=1 << 30, pvc_name=f"vm-{i}-0",
                                   storage_class="standard", volume_mode="Block",
                                   access_mode="ReadWriteOnce")],
                detail={"padding": "x" * padding},
            )
            for i in range(vms)
        ],
    )  # fmt: skip


def test_a_small_plan_is_one_part() -> None:
    (only,) = split(frozen(3), 256 * 1024)
    assert (only.part, only.parts, only.vms_total, len(only.vms)) == (1, 1, 3, 3)


def test_a_large_plan_is_split_in_order_under_the_budget() -> None:
    big = frozen(1000, padding=2000)
    budget = 256 * 1024
    parts = split(big, budget)
    assert len(parts) > 1
    assert [p.part for p in parts] == list(range(1, len(parts) + 1))
    assert {p.parts for p in parts} == {len(parts)}
    assert {p.vms_total for p in parts} == {1000}
    assert [vm.vm_id for p in parts for vm in p.vms] == [vm.vm_id for vm in big.vms]
    for p in parts:
        assert len(p.model_dump_json()) <= budget
        assert p.source == big.source
        assert p.target_namespace == big.target_namespace


def test_a_vm_larger_than_the_budget_goes_alone() -> None:
    parts = split(frozen(3, padding=10_000), 4096)
    assert [len(p.vms) for p in parts] == [1, 1, 1]
