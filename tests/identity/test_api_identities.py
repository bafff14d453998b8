"""Kubernetes identities on the API, end to end: the planner runs with the chart's RBAC in a
simulated cluster, its own ServiceAccount token, ``HOIST_AUTH_KUBERNETES`` on and static
tokens off (the chart's defaults). Users are ServiceAccounts bound to the chart's roles.

- a viewer may list plans but not start one: 403, saying who, what and which role grants it;
- an operator may start (the route answers: 404 for a plan that does not exist);
- a token the cluster does not know, or a static token, is 401;
- the planner calls the inventory as itself (its ServiceAccount token from a file, as the
  pod's projected one), which its chart Role allows;
- the planner without its one rule (system:auth-delegator) cannot review tokens: every call
  is a 503 that says the cluster refused its TokenReview.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.devservices import DevServices
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.chart import rendering as r
from tests.conftest import TOKEN
from tests.identity import chartrbac
from tools.processes import ServiceProcess

API_ONLY = frozenset({"provisioner", "binder", "scheduler", "kubelet", "storageprofiles"})
PLANNER_SA = f"{r.RELEASE}-planner"
INVENTORY_SA = f"{r.RELEASE}-inventory"


@pytest.fixture(scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    config = ClusterConfig(storage_root=tmp_path_factory.mktemp("vol"), disabled=API_ONLY)
    async with Cluster(config) as cluster:
        chartrbac.apply(cluster, chartrbac.chart_rbac())
        yield cluster


def identities_env(sim: Cluster, logs: Path, account: str, **extra: str) -> dict[str, str]:
    """A service's settings as the chart gives them: Kubernetes identities, no static tokens,
    its own ServiceAccount's token (in a kubeconfig here; projected into the pod there)."""
    kubeconfig = chartrbac.kubeconfig_for(sim, logs / f"{account}.kubeconfig", r.NAMESPACE, account)
    return {
        "HOIST_AUTH_KUBERNETES": "true",
        "HOIST_AUTH_STATIC": "false",
        "HOIST_AUTH_CACHE_SECONDS": "0",
        "HOIST_KUBE_KUBECONFIG": str(kubeconfig),
        "HOIST_KUBE_NAMESPACE": r.NAMESPACE,
        "HOIST_LOG_FORMAT": "json",
        **extra,
    }


@pytest.fixture(scope="module")
async def planner(
    sim: Cluster, servers: DevServices, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    logs = tmp_path_factory.mktemp("planner")
    common = {
        "HOIST_NATS_URL": servers.nats_url,
        "HOIST_NATS_PREFIX": f"id{uuid.uuid4().hex[:8]}",
        "HOIST_DATABASE_URL": database_url,
    }
    inventory = ServiceProcess("inventory", identities_env(sim, logs, INVENTORY_SA, **common), logs)
    await inventory.start()
    # The planner calls the inventory with its own token, from a file as the pod's is.
    token_file = logs / "planner.token"
    token_file.write_text(sim.service_account_token(r.NAMESPACE, PLANNER_SA))
    env = identities_env(
        sim,
        logs,
        PLANNER_SA,
        **common,
        HOIST_PLANNER_INVENTORY_URL=inventory.url,
        HOIST_PLANNER_INVENTORY_TOKEN_FILE=str(token_file),
    )
    process = ServiceProcess("planner", env, logs)
    await process.start()
    for service in (inventory, process):
        ready = await service.wait_ready(60)
        assert ready.get("http_status") == 200, (ready, service.logs()[-3000:])
    yield process
    await process.terminate()
    await inventory.terminate()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_viewer_reads_operator_starts_strangers_are_refused(
    sim: Cluster, planner: ServiceProcess
) -> None:
    viewer = chartrbac.bind(sim, "alice", f"{r.RELEASE}-viewer", namespace=r.NAMESPACE)
    operator = chartrbac.bind(sim, "bob", f"{r.RELEASE}-operator")
    http = planner.client

    listed = await http.get("/api/v1/plans", headers=bearer(viewer))
    assert listed.status_code == 200, listed.text
    started = await http.post("/api/v1/plans/nothing/start", headers=bearer(viewer))
    assert started.status_code == 403
    assert started.json() == {
        "detail": 'User "system:serviceaccount:hoist:alice" cannot create resource '
        '"plans/start" in API group "hoist.io" in the namespace "hoist" '
        "(POST /api/v1/plans/nothing/start); the operator ClusterRole grants it (bind it "
        'with a RoleBinding in namespace "hoist" or a ClusterRoleBinding)'
    }
    # Refused before the body is read: a body makes no difference.
    with_body = await http.post(
        "/api/v1/plans", headers=bearer(viewer), json={"name": "x", "vms": []}
    )
    assert with_body.status_code == 403

    allowed = await http.post("/api/v1/plans/nothing/start", headers=bearer(operator))
    assert allowed.status_code == 404, allowed.text  # through the gate, to the route
    # The operator role does not include the admin's: dead letters stay out of reach.
    letters = await http.get("/api/v1/planner/deadletters", headers=bearer(operator))
    assert letters.status_code == 403
    assert "the admin ClusterRole grants it" in letters.json()["detail"]

    for stranger in ("not-a-token", TOKEN, sim.service_account_token("default", "nobody")[:-2]):
        refused = await http.get("/api/v1/plans", headers=bearer(stranger))
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == 'Bearer realm="hoist"'
    missing = await http.get("/api/v1/plans")
    assert missing.status_code == 401
    # A path no route answers: authenticated is enough to be told so.
    assert (await http.get("/api/v1/nothing-here", headers=bearer(viewer))).status_code == 404
    assert (await http.get("/api/v1/nothing-here")).status_code == 401

    # A map names providers: the planner asks the inventory about them as itself (its
    # Role may read providers), so an unknown one is the user's 422, not a refused 503.
    body = {
        "name": "nets",
        "sourceProvider": "nowhere",
        "targetProvider": "nowhere-else",
        "entries": [],
    }
    created = await http.post("/api/v1/networkmaps", headers=bearer(operator), json=body)
    assert created.status_code == 422, created.text
    assert "no provider 'nowhere' in the inventory" in created.text, created.text


async def test_planner_needs_auth_delegator(sim: Cluster, planner: ServiceProcess) -> None:
    rules = chartrbac.chart_rbac()
    delegation = chartrbac.named(
        rules, "ClusterRoleBinding", f"{r.NAMESPACE}-{PLANNER_SA}-auth-delegator"
    )
    viewer = chartrbac.bind(sim, "carol", f"{r.RELEASE}-viewer")
    assert (await planner.client.get("/api/v1/plans", headers=bearer(viewer))).status_code == 200
    chartrbac.remove(sim, delegation)
    try:
        refused = await planner.client.get("/api/v1/plans", headers=bearer(viewer))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["detail"] == (
            "cannot check the token now: the Kubernetes API refused the TokenReview "
            "(403 Forbidden); retry"
        )
    finally:
        chartrbac.apply(sim, [delegation])
    assert (await planner.client.get("/api/v1/plans", headers=bearer(viewer))).status_code == 200
