"""A remote target cluster, end to end at the controller's level: two simulated clusters
in one process, Hoist's own (the local controller) and a target reached only through a
provider Secret, as the controller service runs them (``Fleet``).

The target's admin applies ``shared.remotetarget.manifest()`` (the definitions, and an
identity with the documented ClusterRole and nothing else); until the definitions are
there the fleet names what is missing. Then one disk goes into each cluster; the remote
one's API server fails every request for a while mid-copy, then its token is rotated (the
old one revoked) while the copy still runs, and both claims are filled byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client

from services.controller import Controller
from services.controller.fleet import Fleet
from shared import populator as contract
from shared import remotetarget
from shared.bus import Bus
from shared.kube import NAMESPACE, SECRET, Kube
from shared.settings import OrchestratorSettings
from sim.kube.cluster import Cluster
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.chart import rendering as r
from tests.conftest import eventually, kube_client
from tests.controller.conftest import (
    MiB,
    backing,
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    running_pod,
    sim_config,
    wait_populated,
    wait_status,
)
from tests.controller.test_ovirt import ovirt_credentials
from tests.controller.test_rbac import as_controller_account
from tests.identity import chartrbac
from tests.populators.ovirt.conftest import assert_same_image
from tests.sim.ovirt.fixtures import new_disk

HOIST_NS = r.NAMESPACE  # the chart's release namespace: the fleet runs under its RBAC
PROVIDER = "remote-east"


@pytest.fixture
async def remote_sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(sim_config(tmp_path / "remote-volumes")) as sim:
        yield sim


async def put_provider_secret(kube: Kube, remote: Cluster, token: str) -> None:
    """What the inventory writes for a remote kubevirt provider: its URL and an inline
    kubeconfig, labelled with the provider's id and type."""
    kubeconfig = yaml.safe_dump(remote.kubeconfig_dict(token))
    data = {"url": remote.url, "kubeconfig": kubeconfig}
    name = f"hoist-provider-{PROVIDER}"
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "labels": {"hoist.io/provider": PROVIDER, remotetarget.PROVIDER_TYPE_LABEL: "kubevirt"},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    if await kube.get(SECRET, name, HOIST_NS) is None:
        await kube.create(SECRET, body, HOIST_NS)
    else:
        await kube.replace(SECRET, name, body, HOIST_NS)


async def refused(remote: Cluster, token: str) -> bool:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{remote.url}/api/v1/namespaces",
            headers={"Authorization": f"Bearer {token}"},
            ssl=False,
        ) as response,
    ):
        return response.status == 401


async def test_a_remote_cluster_is_a_full_target(
    engine: Engine,
    kube_sim: Cluster,
    remote_sim: Cluster,
    api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controller: Controller,
    controller_settings: OrchestratorSettings,
    nats_bus: Bus,
) -> None:
    local = Kube(api, timeout=30.0)
    if await local.get(NAMESPACE, HOIST_NS) is None:
        await local.create(NAMESPACE, {"metadata": {"name": HOIST_NS}})
    chartrbac.apply(kube_sim, chartrbac.chart_rbac())  # the controller's Role lists Secrets
    async with kube_client(remote_sim) as remote_api:
        admin = Kube(remote_api, timeout=30.0)
        everything = remotetarget.manifest()
        definitions = [
            o for o in everything if o["kind"] in ("CustomResourceDefinition", "VolumePopulator")
        ]
        # The identity first, the definitions not yet: the fleet says what is missing.
        await remotetarget.install(admin, [o for o in everything if o not in definitions])
        sa = (remotetarget.DEFAULT_NAMESPACE, remotetarget.DEFAULT_NAME)
        old_token = remote_sim.service_account_token(*sa)
        await put_provider_secret(local, remote_sim, old_token)
        account = await as_controller_account(kube_sim)
        fleet = Fleet(account, HOIST_NS, controller_settings, nats_bus, interval=0.5)
        try:
            await fleet.sync()
            [problem] = fleet.waiting_for()
            for plural in ("ovirtvolumepopulators", "openstackvolumepopulators"):
                assert f"customresourcedefinitions/{plural}.hoist.io (absent)" in problem
            await remotetarget.install(admin, definitions)
            await fleet.start()
            await eventually(lambda: fleet.members[PROVIDER].controller is not None, what="running")
            assert fleet.waiting_for() == []
            await _two_plans(engine, remote_sim, remote_api, core, custom, local, fleet, old_token)
            # The provider deleted: its Secret goes, and its controller with it.
            await local.delete(SECRET, f"hoist-provider-{PROVIDER}", HOIST_NS)
            await fleet.sync()
            assert PROVIDER not in fleet.members
        finally:
            await fleet.stop()
            await account.close()
        assert fleet.members == {}


async def _two_plans(
    engine: Engine,
    remote_sim: Cluster,
    remote_api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    local: Kube,
    fleet: Fleet,
    old_token: str,
) -> None:
    r_core, r_custom = client.CoreV1Api(remote_api), client.CustomObjectsApi(remote_api)
    here = new_disk(engine, size="4MiB", allocated=1.0, extent="1MiB")
    there = new_disk(engine, size="12MiB", allocated=1.0, extent="1MiB")
    engine.add_fault(Fault("bandwidth", disk=there.id, bytes_per_second=MiB))
    for core_api, custom_api, disk, name in (
        (core, custom, here, "disk-here"),
        (r_core, r_custom, there, "disk-there"),
    ):
        # What the orchestrator makes in each target: source credentials, CR, claim.
        await make_secret(core_api, "ovirt-src", ovirt_credentials(engine))
        await make_populator(
            custom_api,
            contract.OVIRT.name,
            name,
            {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
        )
    claim_here, claim_there = [
        await make_claim(
            core_api,
            name,
            contract.OVIRT.name,
            disk_ids(name),
            mode="Block",
            storage_class="standard",
        )
        for core_api, name in ((core, "disk-here"), (r_core, "disk-there"))
    ]
    # The populator pod runs in the remote cluster, not in Hoist's.
    await running_pod(r_core, claim_there.metadata.uid)
    assert not [
        p
        for p in (await core.list_namespaced_pod("default")).items
        if p.metadata.name == contract.populator_pod(claim_there.metadata.uid)
    ]

    # The remote API server goes away for a while (every request fails), then comes back.
    first = fleet.members[PROVIDER].controller
    remote_sim.faults.update({"http_error_rate": 1.0, "http_error_code": 503})
    await asyncio.sleep(2.0)
    remote_sim.faults.update({"http_error_rate": 0.0})
    assert fleet.members[PROVIDER].controller is first  # kept: its watches retry

    # Rotation while the copy still runs: a new account token, the old one revoked.
    # (The outage may have failed the pod too: it reports to the same API server; the
    # controller then makes another, within its recreation limit.)
    claim = await r_core.read_namespaced_persistent_volume_claim("disk-there", "default")
    assert claim.status.phase == "Pending"  # the copy is still in flight
    sa_ns, sa_name = remotetarget.DEFAULT_NAMESPACE, remotetarget.DEFAULT_NAME
    await client.CoreV1Api(remote_api).delete_namespaced_service_account(sa_name, sa_ns)
    assert await refused(remote_sim, old_token)
    new_token = remote_sim.service_account_token(sa_ns, sa_name)
    await put_provider_secret(local, remote_sim, new_token)

    async def reconnected() -> bool:
        member = fleet.members.get(PROVIDER)
        return member is not None and member.controller not in (None, first)

    await eventually(reconnected, what="the controller on the new token")

    pvc = await wait_populated(r_core, "disk-there")
    await wait_status(r_custom, contract.OVIRT.name, "disk-there", contract.Phase.SUCCEEDED)
    volume = await r_core.read_persistent_volume(pvc.spec.volume_name)
    await assert_same_image(engine, there, backing(volume, block=True))
    assert volume.spec.claim_ref.uid == claim_there.metadata.uid

    pvc = await wait_populated(core, "disk-here")
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    await assert_same_image(engine, here, backing(volume, block=True))
    assert volume.spec.claim_ref.uid == claim_here.metadata.uid
