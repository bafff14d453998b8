"""A controller that stops and another that takes over: mid-copy, and between handing the
volume over and the binder marking the prime claim Lost (the crash window upstream's
library leaves). Nothing may be made twice, nothing announced twice into the stream, and
the data must arrive. Registration is idempotent across starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client

from services.controller import Controller
from shared import populator as contract
from shared.bus import Bus
from shared.catalog import MIGRATIONS, POPULATOR_POD_FINISHED, POPULATOR_POD_STARTED
from shared.populator import DIGEST_ANNOTATION, manifests
from shared.settings import OrchestratorSettings
from sim.kube.cluster import Cluster
from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault
from tests.conftest import eventually
from tests.controller.conftest import (
    Heard,
    MiB,
    Seen,
    backing,
    disk_ids,
    make_claim,
    make_populator,
    make_secret,
    running_pod,
    wait_clean,
    wait_populated,
    wait_status,
)
from tests.controller.test_ovirt import ovirt_credentials
from tests.populators.ovirt.conftest import assert_same_image
from tests.sim.ovirt.fixtures import new_disk


async def stream_count(bus: Bus) -> dict[str, int]:
    """Stored messages per subject under the test's populator subjects."""
    info = await bus.js.stream_info(
        bus.stream_name(MIGRATIONS), subjects_filter=bus.subject("populator.>")
    )
    return dict(info.state.subjects or {})


async def test_a_new_controller_finishes_a_copy_its_predecessor_started(
    engine: Engine,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controllers: Callable[[], Awaitable[Controller]],
    nats_bus: Bus,
    heard: Heard,
    seen: Seen,
) -> None:
    disk = new_disk(engine, size="8MiB", allocated=1.0, extent="1MiB")
    engine.add_fault(Fault("bandwidth", disk=disk.id, bytes_per_second=2 * MiB))
    first = await controllers()  # registers the CRDs
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-r",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    claim = await make_claim(
        core,
        "disk-r",
        contract.OVIRT.name,
        disk_ids("restart"),
        mode="Block",
        storage_class="standard",
    )
    await running_pod(core, claim.metadata.uid)

    async def announced() -> bool:
        return bool(heard.of(POPULATOR_POD_STARTED))

    await eventually(announced, what="the pod announced")
    await first.stop()
    pod = await core.read_namespaced_pod(contract.populator_pod(claim.metadata.uid), "default")
    assert pod.status.phase == "Running"  # still copying while no controller runs

    await controllers()
    pvc = await wait_populated(core, "disk-r")
    await wait_status(custom, contract.OVIRT.name, "disk-r", contract.Phase.SUCCEEDED)
    await wait_clean(core)
    volume = await core.read_persistent_volume(pvc.spec.volume_name)
    await assert_same_image(engine, disk, backing(volume, block=True))
    assert len(seen.pods) == 1
    assert len(seen.primes) == 1
    # The second controller announced the pod again; JetStream kept it once.
    assert len(heard.of(POPULATOR_POD_STARTED)) == 2
    assert len({e.id for e in heard.of(POPULATOR_POD_STARTED)}) == 1
    assert sorted((await stream_count(nats_bus)).values()) == [1, 1]
    assert len(heard.of(POPULATOR_POD_FINISHED)) >= 1


async def test_a_crash_between_handover_and_lost_prime_resumes(
    engine: Engine,
    kube_sim: Cluster,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    controllers: Callable[[], Awaitable[Controller]],
    seen: Seen,
) -> None:
    disk = new_disk(engine, size="3MiB", allocated=1.0)
    first = await controllers()  # registers the CRDs
    await make_secret(core, "ovirt-src", ovirt_credentials(engine))
    await make_populator(
        custom,
        contract.OVIRT.name,
        "disk-h",
        {"engineUrl": engine.api_url, "engineSecretName": "ovirt-src", "diskId": disk.id},
    )
    claim = await make_claim(
        core,
        "disk-h",
        contract.OVIRT.name,
        disk_ids("handover"),
        mode="Filesystem",
        storage_class="standard",
    )
    uid = claim.metadata.uid
    prime_name = contract.prime_claim(uid)

    async def prime_bound() -> bool:
        try:
            prime = await core.read_namespaced_persistent_volume_claim(prime_name, "default")
        except client.ApiException:
            return False
        return bool(prime.status.phase == "Bound")

    await eventually(prime_bound, within=30, what="the prime claim bound")
    # The PV controller stops: the handover will not be followed by a bind and a Lost.
    binder = kube_sim.controllers["binder"]
    await binder.stop()
    prime = await core.read_namespaced_persistent_volume_claim(prime_name, "default")
    volume_name = prime.spec.volume_name

    async def handed_over() -> bool:
        volume = await core.read_persistent_volume(volume_name)
        return bool(volume.spec.claim_ref.uid == uid)

    await eventually(handed_over, within=60, what="the volume handed to the user claim")
    await first.stop()  # "crashes" here
    prime = await core.read_namespaced_persistent_volume_claim(prime_name, "default")
    assert prime.status.phase == "Bound"  # not Lost yet
    binder.start()
    await controllers()
    pvc = await wait_populated(core, "disk-h")
    await wait_status(custom, contract.OVIRT.name, "disk-h", contract.Phase.SUCCEEDED)
    await wait_clean(core)
    assert pvc.spec.volume_name == volume_name
    volume = await core.read_persistent_volume(volume_name)
    await assert_same_image(engine, disk, backing(volume, block=False))
    assert len(seen.pods) == 1
    assert len(seen.primes) == 1


async def test_registration_is_idempotent(
    api: client.ApiClient, controller_settings: OrchestratorSettings
) -> None:
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    versions: list[dict[str, str]] = []
    for _ in range(2):
        controller = Controller(api, controller_settings)
        await controller.start()
        await controller.wait_synced()
        assert controller.ready, controller.waiting_for()
        await controller.stop()
        seen: dict[str, str] = {}
        for manifest in manifests():
            name = manifest["metadata"]["name"]
            if manifest["kind"] == "CustomResourceDefinition":
                crd = await ext.read_custom_resource_definition(name)
                seen[name] = crd.metadata.resource_version
                assert DIGEST_ANNOTATION in crd.metadata.annotations
                version = crd.spec.versions[0]
                assert version.subresources.status is not None
                assert [c.name for c in version.additional_printer_columns][:2] == [
                    "Phase",
                    "Progress",
                ]
            else:
                vp = await custom.get_cluster_custom_object(
                    "populator.storage.k8s.io", "v1beta1", "volumepopulators", name
                )
                seen[name] = vp["metadata"]["resourceVersion"]
                assert vp["sourceKind"]["group"] == contract.GROUP
        versions.append(seen)
    assert versions[0] == versions[1]  # the second start wrote nothing
    assert set(versions[0]) == {
        f"{contract.OVIRT.plural}.{contract.GROUP}",
        f"{contract.OPENSTACK.plural}.{contract.GROUP}",
        "hoist-ovirt",
        "hoist-openstack",
    }
    # The schema requires the spec fields the controller needs.
    refused = None
    try:
        await custom.create_namespaced_custom_object(
            contract.GROUP,
            contract.VERSION,
            "default",
            contract.OVIRT.plural,
            {
                "apiVersion": contract.API_VERSION,
                "kind": contract.OVIRT.name,
                "metadata": {"name": "incomplete"},
                "spec": {"engineUrl": "https://engine"},
            },
        )
    except client.ApiException as exc:
        refused = exc.status
    assert refused == 422
