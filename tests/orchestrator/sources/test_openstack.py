"""The OpenStack source against the simulated cloud (real Keystone and Glance): state,
power, and the snapshot -> volume -> image conversion, byte for byte, with restarts,
cleanup and failures.

The servers are this module's own, added to the session's cloud, so no other test sees
them change (nor counts on them).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator import naming
from services.orchestrator.sources.connecting import connect
from services.orchestrator.sources.contract import Conversion, Power, Source, SourceError
from shared.payloads import PlannedVm, ProviderType
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.conftest import eventually
from tests.orchestrator.sources.conftest import SETTINGS, planned, provider

MiB = 1 << 20


def _server(name: str, **kw: Any) -> sc.Server:
    return sc.Server(name=name, flavor="m1.small", networks=["private"], **kw)


def _imaged(name: str, *, root_mib: int, data_mib: int) -> sc.Server:
    return _server(
        name,
        root=sc.Disk(size_mib=root_mib, data_mib=2),
        volumes=[sc.Volume(name=f"{name}-data", size_mib=data_mib, data_mib=1)],
    )


@pytest.fixture(scope="module")
def servers(cloud: Cloud) -> dict[str, Server]:
    made = [
        _server(
            "conv-web",
            root=sc.Disk(size_mib=8, data_mib=3),
            volumes=[sc.Volume(name="conv-web-data", size_mib=6, data_mib=2)],
        ),
        _server(
            "conv-bfv",
            boot="volume",
            status="SHUTOFF",
            root=sc.Disk(size_mib=8, data_mib=3),
            volumes=[sc.Volume(name="conv-bfv-logs", size_mib=4, data_mib=1)],
        ),
        _server("conv-bad", boot="volume", status="SHUTOFF", root=sc.Disk(size_mib=4, data_mib=1)),
        _server("power-1", root=sc.Disk(size_mib=4, data_mib=1)),
        # An image-backed server with a data volume of over one 4 MiB chunk, so a stall
        # comes before the last byte; and one whose uploads are lost.
        _imaged("conv-slow", root_mib=6, data_mib=10),
        _imaged("conv-lost", root_mib=6, data_mib=4),
    ]
    return {s.name: cloud.add_server(s) for s in made}


@pytest.fixture
async def source(cloud: Cloud) -> AsyncIterator[Source]:
    s = await connect(
        provider(ProviderType.OPENSTACK, cloud.auth_url), cloud.credentials(), SETTINGS
    )
    yield s
    await s.close()


@pytest.fixture
def conn(cloud: Cloud) -> Iterator[Any]:
    c = cloud.connection()
    yield c
    c.close()


def plan_of(cloud: Cloud, server: Server) -> PlannedVm:
    """Disks as the planner names them: the root disk of an image-backed server is
    ``<id>-root`` in ``glance``, volumes go by their id."""
    disks = [(f"{server.id}-root", "glance")] if server.boot == "image" else []
    disks += [(vid, cloud.state.volumes[vid].volume_type) for vid in server.volume_ids]
    return planned(server.id, server.name, disks)


def source_file(cloud: Cloud, server: Server, disk_id: str) -> Path:
    if disk_id == f"{server.id}-root":
        assert server.root_path is not None
        return server.root_path
    return cloud.state.volumes[disk_id].path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_image(conn: Any, image_id: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    response = conn.image.download_image(image_id, stream=True)
    for chunk in response.iter_content(4 * MiB):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def counts(cloud: Cloud, conn: Any) -> tuple[int, int, int]:
    """Snapshots, volumes and Glance images of the cloud."""
    return len(cloud.state.snapshots), len(cloud.state.volumes), len(list(conn.image.images()))


def leftovers(cloud: Cloud, conn: Any) -> list[str]:
    names = [s.name for s in cloud.state.snapshots.values()]
    names += [v.name for v in cloud.state.volumes.values()]
    names += [i.name for i in conn.image.images()]
    return [n for n in names if n and n.startswith("hoist-")]


async def convert_until_done(
    source: Source, migration_id: str, vm: PlannedVm, notes: list[str] | None = None
) -> Conversion:
    """Call ``convert`` as the pipeline does, until done (the bound is a hang guard); what
    it waited on goes to ``notes``."""
    deadline = time.monotonic() + 120
    while not (result := await source.convert(migration_id, vm)).done:
        assert result.waiting, "not done, so waiting on something"
        assert time.monotonic() < deadline, f"conversion stuck: {result.waiting}"
        if notes is not None:
            notes.append(result.waiting)
        await asyncio.sleep(0.1)
    return result


async def test_inspect(source: Source, cloud: Cloud, servers: dict[str, Server]) -> None:
    web = servers["conv-web"]
    found = await source.inspect(plan_of(cloud, web))
    assert (found.vm_id, found.name, found.power, found.status) == (
        web.id, "conv-web", Power.ON, "ACTIVE"
    )  # fmt: skip
    assert found.disk_ids == (f"{web.id}-root", *web.volume_ids)
    assert found.blockers == ()
    bfv = await source.inspect(plan_of(cloud, servers["conv-bfv"]))
    assert (bfv.power, bfv.disk_ids) == (Power.OFF, tuple(servers["conv-bfv"].volume_ids))


async def test_stop_and_start(source: Source, cloud: Cloud, servers: dict[str, Server]) -> None:
    server = servers["power-1"]
    plan = plan_of(cloud, server)
    await source.shutdown(server.id)
    assert (await source.inspect(plan)).power is Power.OFF
    alone = await source.power_state(server.id)
    assert (alone.power, alone.status, alone.name) == (Power.OFF, "SHUTOFF", server.name)
    await source.stop(server.id)  # already off: nothing to do
    await source.start(server.id)
    assert (await source.inspect(plan)).power is Power.ON
    await source.start(server.id)  # already on

    # A task on the server (a snapshot uploading): a blocker, and Nova refuses power calls.
    cloud.state.set_server_status(server.id, "ACTIVE", task_state="image_uploading")
    try:
        found = await source.inspect(plan)
        assert found.blockers == ("a task runs on the server: image_uploading",)
        with pytest.raises(SourceError) as err:
            await source.stop(server.id)
        assert (err.value.reason, err.value.permanent) == ("SourceBusy", False)
    finally:
        cloud.state.set_server_status(server.id, "ACTIVE")


async def test_a_server_gone_is_permanent(source: Source) -> None:
    ghost = planned("00000000-0000-4000-8000-000000000000", "ghost", [])
    calls = (
        source.inspect(ghost),
        source.power_state(ghost.vm_id),
        source.stop(ghost.vm_id),
        source.start(ghost.vm_id),
    )
    for call in calls:
        with pytest.raises(SourceError) as err:
            await call
        assert (err.value.reason, err.value.permanent) == ("VmNotFound", True)


@pytest.mark.parametrize("name", ["conv-web", "conv-bfv"])
async def test_convert_restart_and_cleanup(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server], name: str
) -> None:
    """Image-backed with a data volume (Nova snapshot image + the Cinder chain), and boot
    from volume (the Cinder chain for each volume)."""
    server = servers[name]
    vm = plan_of(cloud, server)
    migration = f"mig-{name}"
    await source.stop(server.id)
    before = counts(cloud, conn)

    done = await convert_until_done(source, migration, vm)
    assert set(done.images) == set(done.sizes) == {d.disk_id for d in vm.disks}
    for disk_id, image_id in done.images.items():
        original = source_file(cloud, server, disk_id)
        digest, size = await asyncio.to_thread(sha256_image, conn, image_id)
        assert (digest, size) == (sha256_file(original), original.stat().st_size), disk_id
        assert done.sizes[disk_id] == size

    # A restart after done: the same images, nothing new made.
    made = counts(cloud, conn)
    again = await source.convert(migration, vm)
    assert (again.done, again.images, again.sizes) == (True, done.images, done.sizes)
    assert counts(cloud, conn) == made
    volumes = len(server.volume_ids)
    # one image per disk; one snapshot and one volume per Cinder volume
    assert made == (before[0] + volumes, before[1] + volumes, before[2] + len(vm.disks))

    await source.remove_artifacts(migration, vm)
    assert leftovers(cloud, conn) == []
    assert counts(cloud, conn) == before
    await source.remove_artifacts(migration, vm)  # nothing left: a no-op
    await source.start(server.id)


async def test_an_artifact_in_error_fails_for_good(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server]
) -> None:
    server = servers["conv-bad"]
    vm = plan_of(cloud, server)
    first = await source.convert("mig-bad", vm)
    assert not first.done
    name = naming.artifact("volume", "mig-bad", server.id, server.volume_ids[0])
    volume = next(v for v in cloud.state.volumes.values() if v.name == name)
    await eventually(lambda: volume.status == "available", what="the volume copied")
    cloud.state.update_volume(volume.id, status="error")

    with pytest.raises(SourceError) as err:
        await source.convert("mig-bad", vm)
    assert (err.value.reason, err.value.permanent) == ("ConversionFailed", True)
    assert volume.name in err.value.message
    assert "error" in err.value.message

    await source.remove_artifacts("mig-bad", vm)  # an errored volume can be deleted
    assert leftovers(cloud, conn) == []


async def test_an_image_orphaned_by_a_failed_upload_is_deleted_and_uploaded_again(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server]
) -> None:
    """Both uploads (Nova's of the root disk, Cinder's of the data volume) break, and the
    cloud fails to delete their images, which stay ``queued`` for ever. Once the uploader is
    idle the conversion deletes each orphan and uploads again, instead of waiting out its
    timeout; the disks still arrive byte for byte."""
    server = servers["conv-lost"]
    vm = plan_of(cloud, server)
    await source.stop(server.id)
    before = len(cloud.faults.injected)
    cloud.faults.update({"lose_uploads": 2})
    notes: list[str] = []
    try:
        done = await convert_until_done(source, "mig-lost", vm, notes)
    finally:
        cloud.faults.update({"lose_uploads": 0})
    lost = [i.split(":", 1)[1] for i in cloud.faults.injected[before:] if i.startswith("lost_")]
    assert len(lost) == 2, cloud.faults.injected[before:]
    assert not set(lost) & set(done.images.values())
    for image_id in lost:  # the orphans are gone
        assert conn.image.find_image(image_id) is None
    assert sum("deleted it, uploading again" in n for n in notes) == 2, notes
    for disk_id, image_id in done.images.items():
        original = source_file(cloud, server, disk_id)
        digest, size = await asyncio.to_thread(sha256_image, conn, image_id)
        assert (digest, size) == (sha256_file(original), original.stat().st_size), disk_id

    await source.remove_artifacts("mig-lost", vm)
    assert leftovers(cloud, conn) == []
    await source.start(server.id)


async def test_an_upload_still_running_is_waited_for_not_taken_for_an_orphan(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server]
) -> None:
    """Uploads stalled halfway (Glance ``saving``, the volume ``uploading``, the server in
    ``image_uploading``) are alive: the conversion waits and deletes nothing."""
    server = servers["conv-slow"]
    vm = plan_of(cloud, server)
    await source.stop(server.id)
    cloud.faults.update({"stuck_saving": True})
    try:
        for _ in range(20):
            waiting = await source.convert("mig-slow", vm)
            if waiting.waiting.count("saving") == len(vm.disks):
                break
            await asyncio.sleep(0.2)
        names = [naming.artifact("image", "mig-slow", server.id, d.disk_id) for d in vm.disks]
        assert all(f"image {n} saving" in waiting.waiting for n in names), waiting
        stalled = [conn.image.find_image(n, ignore_missing=False).id for n in names]
        for _ in range(3):
            again = await source.convert("mig-slow", vm)
            assert not again.done, again
            assert "deleted" not in again.waiting, again
    finally:
        cloud.faults.update({"stuck_saving": False})
    done = await convert_until_done(source, "mig-slow", vm)
    assert sorted(done.images.values()) == sorted(stalled)  # the same images, filled
    await source.remove_artifacts("mig-slow", vm)
    assert leftovers(cloud, conn) == []
    await source.start(server.id)
