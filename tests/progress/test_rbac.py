"""The progress service under exactly the chart's RBAC: its ServiceAccount's token, the
chart's rendered ClusterRole (populator pods found by a cluster-wide watch, scraped directly
or through the pod proxy) and Role (remote clusters' Secrets).

The end-to-end scrape of a real oVirt populator runs again with that identity; without its
pods rule, the service logs exactly which list the API server forbade and to whom."""

from __future__ import annotations

import pytest

from sim.kube.cluster import Cluster
from tests.chart import rendering as r
from tests.conftest import eventually
from tests.identity import chartrbac
from tests.progress.conftest import Replicas
from tests.progress.test_service import engine  # noqa: F401 - the module's oVirt engine
from tests.progress.test_service import (
    test_real_ovirt_populator_is_found_by_the_watch_and_stored as _scrape_end_to_end,
)
from tools.processes import ServiceProcess

ACCOUNT = f"{r.RELEASE}-progress"
USER = f"system:serviceaccount:{r.NAMESPACE}:{ACCOUNT}"


@pytest.fixture(scope="module")
def as_progress(kube_sim: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The chart's RBAC in the cluster; a kubeconfig with the progress account's token."""
    chartrbac.apply(kube_sim, chartrbac.chart_rbac())
    path = tmp_path_factory.mktemp("progress-sa") / "kubeconfig"
    return str(chartrbac.kubeconfig_for(kube_sim, path, r.NAMESPACE, ACCOUNT))


@pytest.fixture(scope="module")
async def svc(replicas: Replicas, as_progress: str) -> ServiceProcess:
    return await replicas.start(HOIST_KUBE_KUBECONFIG=as_progress)


test_scrape_end_to_end_under_the_charts_rbac = _scrape_end_to_end


async def test_without_its_pods_rule_progress_says_what_it_cannot_do(
    kube_sim: Cluster, replicas: Replicas, as_progress: str
) -> None:
    with chartrbac.rule_taken_away(
        kube_sim,
        "ClusterRole",
        f"{r.NAMESPACE}-{ACCOUNT}",
        "pods",
    ):
        proc = await replicas.start(HOIST_KUBE_KUBECONFIG=as_progress)
        expected = (
            f'pods is forbidden: User \\"{USER}\\" cannot list resource \\"pods\\" in API '
            'group \\"\\" at the cluster scope'
        )
        await eventually(
            lambda: expected in proc.logs(),
            within=30,
            what=f"the 403 logged:\n{proc.logs()[-2000:]}",
        )
        await proc.terminate()
