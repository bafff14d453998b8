"""The populator controller under exactly the chart's RBAC: its ServiceAccount, bound as
``helm template`` renders it, with a bound token of that account in its kubeconfig.

The oVirt end-to-end test runs again with that controller (its own assertions: the disk
byte for byte, the pod and prime claim as the contract says); then the pods rule is taken
away, and the controller says exactly what it cannot do (the API server's 403 message)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, config

from services.controller import Controller
from shared.bus import Bus
from shared.settings import OrchestratorSettings
from sim.kube.cluster import Cluster
from tests.chart import rendering as r
from tests.conftest import eventually
from tests.controller.test_ovirt import (
    test_ovirt_disk_fills_a_block_claim_under_wait_for_first_consumer as _ovirt_end_to_end,
)
from tests.identity import chartrbac

ACCOUNT = f"{r.RELEASE}-populator-controller"
ROLE = f"{r.NAMESPACE}-{ACCOUNT}"
USER = f"system:serviceaccount:{r.NAMESPACE}:{ACCOUNT}"


async def as_controller_account(sim: Cluster) -> client.ApiClient:
    """An ApiClient holding the controller account's token, as its pod would have."""
    configuration = client.Configuration()
    token = sim.service_account_token(r.NAMESPACE, ACCOUNT)
    await config.load_kube_config_from_dict(
        sim.kubeconfig_dict(token), client_configuration=configuration
    )
    return client.ApiClient(configuration)


@pytest.fixture
async def controller(
    kube_sim: Cluster, controller_settings: OrchestratorSettings, nats_bus: Bus
) -> AsyncIterator[Controller]:
    """The conftest's controller, but with the chart's rules instead of the admin's."""
    chartrbac.apply(kube_sim, chartrbac.chart_rbac())
    async with await as_controller_account(kube_sim) as api:
        c = Controller(api, controller_settings, nats_bus)
        await c.start()
        await c.wait_synced()
        yield c
        await c.stop()


test_ovirt_end_to_end_under_the_charts_rbac = _ovirt_end_to_end


async def test_without_its_pods_rule_the_controller_says_what_it_cannot_do(
    kube_sim: Cluster, controller_settings: OrchestratorSettings
) -> None:
    with chartrbac.rule_taken_away(kube_sim, "ClusterRole", ROLE, "pods"):
        await _reported(kube_sim, controller_settings)


async def _reported(kube_sim: Cluster, controller_settings: OrchestratorSettings) -> None:
    async with await as_controller_account(kube_sim) as api:
        c = Controller(api, controller_settings, None)
        await c.start()
        try:
            expected = (
                f'watch pods: the API server answered 403: pods is forbidden: User "{USER}" '
                'cannot list resource "pods" in API group "" at the cluster scope'
            )
            await eventually(
                lambda: expected in c.waiting_for(), what="the 403 reported", within=20
            )
        finally:
            await c.stop()
