"""The orchestrator and the populator controller under exactly the chart's RBAC: each with
a bound token of its own ServiceAccount, the chart's rendered Roles, ClusterRoles and
bindings in the cluster (targets in every namespace, the chart's default).

The two-VM oVirt pipeline runs again under them (its own assertions: byte-exact disks, the
VirtualMachines, nothing left behind); then, without the orchestrator's rule to read
namespaces, a VM's first step says, as it waits, what the API server refused and to whom."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from shared import payloads as p
from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.ovirt.engine import Engine
from tests.chart import rendering as r
from tests.conftest import eventually
from tests.identity import chartrbac
from tests.orchestrator.pipelines import (
    NAMESPACE,
    ControllerProcess,
    orchestrator,
    orchestrator_env,
    plan_of,
    planned,
    publisher,
    start_plan,
    vm_state,
)
from tests.orchestrator.test_ovirt_pipeline import engine, source  # noqa: F401 - fixtures
from tests.orchestrator.test_ovirt_pipeline import (
    test_two_vms_migrate_byte_exact as _two_vms,
)
from tools.processes import ServiceProcess

ORCHESTRATOR = f"{r.RELEASE}-orchestrator"
CONTROLLER = f"{r.RELEASE}-populator-controller"


@pytest.fixture(scope="module")
async def running(
    kube_sim: Cluster,
    servers: DevServices,
    database_url: str,
    prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ServiceProcess, ControllerProcess]]:
    chartrbac.apply(kube_sim, chartrbac.chart_rbac())
    logs = tmp_path_factory.mktemp("logs")

    def env(account: str) -> dict[str, str]:
        path = chartrbac.kubeconfig_for(
            kube_sim, logs / f"{account}.kubeconfig", r.NAMESPACE, account
        )
        return orchestrator_env(servers, database_url, prefix, path)

    controller = ControllerProcess(env(CONTROLLER), logs)
    await controller.start()
    svc = orchestrator(env(ORCHESTRATOR), logs)
    await svc.start()
    await svc.wait_ready(60)
    yield svc, controller
    await svc.terminate()
    await controller.stop()


test_two_vms_migrate_byte_exact_under_the_charts_rbac = _two_vms


async def test_without_its_namespaces_rule_a_vm_fails_saying_so(
    engine: Engine,  # noqa: F811
    kube_sim: Cluster,
    kube: client.ApiClient,
    source: p.ProviderRef,  # noqa: F811
    running: tuple[ServiceProcess, ControllerProcess],
    servers: DevServices,
    prefix: str,
) -> None:
    svc, _ = running
    with chartrbac.rule_taken_away(
        kube_sim,
        "ClusterRole",
        f"{r.NAMESPACE}-{ORCHESTRATOR}",
        "namespaces",
    ):
        vm = planned(engine, "lim-3")
        plan = plan_of(source, [vm])
        async with publisher(servers, prefix) as bus:
            await start_plan(bus, plan)
        user = f"system:serviceaccount:{r.NAMESPACE}:{ORCHESTRATOR}"
        said = (
            f'namespaces "{NAMESPACE}" is forbidden: User "{user}" cannot get resource '
            '"namespaces" in API group "" in the namespace'
        )

        notes: list[str] = []

        async def told() -> bool:
            state = await vm_state(svc, plan, vm.vm_id)
            notes[:] = [
                (s.get("detail") or {}).get("note") or "" for s in state.get("pipeline") or []
            ]
            return any(said in note for note in notes)

        try:
            await eventually(told, within=30, what="the 403 in the Initialize step's note")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {notes}") from None
