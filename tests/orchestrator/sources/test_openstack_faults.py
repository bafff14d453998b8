"""Faults an OpenStack cloud inflicts on a migration, against the OpenStack source: a Cinder
quota used up mid-plan, Glance refusing an upload, Keystone revoking the tokens. Each is
met as docs/openstack.md says: retried, redone, or re-authenticated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.orchestrator.sources.contract import Power, Source, SourceError
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.orchestrator.sources import test_openstack as base
from tests.orchestrator.sources.test_openstack import (
    _imaged,
    _server,
    convert_until_done,
    leftovers,
    plan_of,
    sha256_file,
    sha256_image,
    source_file,
)

source, conn = base.source, base.conn  # the same fixtures


@pytest.fixture(scope="module")
def servers(cloud: Cloud) -> dict[str, Server]:
    made = [
        _server("quota-bfv", boot="volume", status="SHUTOFF", root=sc.Disk(size_mib=4, data_mib=1)),
        _imaged("refused-1", root_mib=6, data_mib=4),
        _server("revoked-1", root=sc.Disk(size_mib=4, data_mib=1)),
    ]
    return {s.name: cloud.add_server(s) for s in made}


async def _exact(cloud: Cloud, conn: Any, server: Server, images: dict[str, str]) -> None:
    for disk_id, image_id in images.items():
        original = source_file(cloud, server, disk_id)
        digest, size = await asyncio.to_thread(sha256_image, conn, image_id)
        assert (digest, size) == (sha256_file(original), original.stat().st_size), disk_id


async def test_a_volume_quota_used_up_mid_plan_is_retried(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server]
) -> None:
    """Other migrations (here: the fault) hold every volume the quota allows when this VM's
    temporary volume is due: QuotaExceeded, temporary; once a volume is free it goes on."""
    server = servers["quota-bfv"]
    vm = plan_of(cloud, server)
    cloud.faults.volume_quota = len(cloud.state.volumes)
    try:
        with pytest.raises(SourceError) as err:
            await convert_until_done(source, "mig-quota", vm)
        assert (err.value.reason, err.value.permanent) == ("QuotaExceeded", False)
        assert "VolumeLimitExceeded" in err.value.message
        assert "retrying" in err.value.message
    finally:
        cloud.faults.volume_quota = None
    done = await convert_until_done(source, "mig-quota", vm)
    await _exact(cloud, conn, server, done.images)
    await source.remove_artifacts("mig-quota", vm)
    assert leftovers(cloud, conn) == []


async def test_an_upload_glance_refuses_is_uploaded_again(
    source: Source, cloud: Cloud, conn: Any, servers: dict[str, Server]
) -> None:
    """Glance's store refuses both uploads (Nova's snapshot of the root disk, Cinder's of
    the data volume); the cloud deletes the images of the failed copies, and the next
    conversion call finds them gone and uploads again: the disks still arrive exactly."""
    server = servers["refused-1"]
    vm = plan_of(cloud, server)
    await source.stop(server.id)
    before = len(cloud.faults.injected)
    cloud.faults.update({"fail_uploads": 2})
    try:
        done = await convert_until_done(source, "mig-refused", vm)
    finally:
        cloud.faults.update({"fail_uploads": 0})
    failed = [i for i in cloud.faults.injected[before:] if i.startswith("failed_upload:")]
    assert len(failed) == 2, cloud.faults.injected[before:]
    assert not {f.split(":", 1)[1] for f in failed} & set(done.images.values())
    await _exact(cloud, conn, server, done.images)
    await source.remove_artifacts("mig-refused", vm)
    assert leftovers(cloud, conn) == []
    await source.start(server.id)


async def test_revoked_tokens_are_replaced_by_a_new_login(
    source: Source, cloud: Cloud, servers: dict[str, Server]
) -> None:
    """Keystone revokes every token (a password change, an operator's `token revoke`): the
    next call is refused with 401, and the source, holding a password, logs in again."""
    vm = plan_of(cloud, servers["revoked-1"])
    assert (await source.inspect(vm)).power is Power.ON
    before = len(cloud.faults.injected)
    cloud.faults.update({"revoke_tokens": True})
    assert (await source.inspect(vm)).power is Power.ON
    revoked = [i for i in cloud.faults.injected[before:] if i.startswith("revoke_tokens:")]
    assert revoked
    assert revoked[0] != "revoke_tokens:0"
    assert (await source.inspect(vm)).power is Power.ON
