"""A VM (Nova server) on an OpenStack cloud, as the pipeline needs it: its state now, power
off and on, and its disks turned into Glance images the populator streams.

Power: Nova has one way to power a server off, ``os-stop``: the compute host presses the
guest's ACPI button, waits ``shutdown_timeout`` (60 s by default, or the image's
``os_shutdown_timeout``) and then powers it off. It is graceful with the forced fallback
built in, so ``shutdown`` and ``stop`` are the same call here (``os-resetState`` only edits
the database; it is no power-off).

Conversion (``convert``), per disk, each piece named by ``naming.artifact`` so a call after
a crash or a restart finds what an earlier one made, and the chain is read from its end
(an active image needs nothing before it):

- the root disk of an image-backed server (``<server>-root``, storage ``glance``): Nova's
  ``createImage`` uploads it to Glance as data; that snapshot image is the disk's image;
- a Cinder volume (data volumes, and every disk of a boot-from-volume server): a Cinder
  snapshot (``force``: the volume is still attached, to a server that is off), a volume from
  the snapshot, and ``os-volume_upload_image`` of that volume (raw) into Glance.

Why Cinder snapshots, not ``createImage``, for boot-from-volume servers: Nova names the
Cinder snapshots it makes ``snapshot for <image name>``, the same for every volume, so only
the image's ``block_device_mapping`` tells which snapshot is which disk; the image holds
no data; and Nova refuses it while any task runs on the server. Snapshotting each volume
under its own name makes every piece findable on its own. Consistency is the same: the
server is powered off before the conversion, so no guest quiescing is needed.

Cinder cannot upload an attached volume unless the cloud allows forced uploads
(``enable_force_upload``, off by default), hence the volume made from the snapshot.

An image can be orphaned: Cinder and Nova delete the image of a copy that failed, but when
that delete fails too, the image stays ``queued`` (or ``saving``) for ever while nothing
uploads into it any more, and a migration waiting on it would only end at its timeout. So an
image not yet active whose uploader is idle again (the temporary volume no longer
``uploading``; the server without a task) is read once more and, if still not active,
deleted; the next call uploads it again. The uploader is read before the image, so an upload
that ended well in between is seen active. Where the cloud's policy hides a server's task
state, nothing is inferred and the wait stays bounded by the timeout alone.

``convert`` never waits: each call creates what is missing and reports what it waits on;
the pipeline calls again until ``done`` and bounds the whole by its
``snapshot_timeout_seconds``. A piece in an error state fails the conversion for good
(``ConversionFailed``, permanent): calling again would find it in error again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import openstack.connection
import openstack.exceptions as os_exc
from openstack.compute.v2.server import Server

from services.orchestrator import naming
from services.orchestrator.sources import errors
from services.orchestrator.sources.contract import Conversion, Power, SourceError, SourceVm
from shared.payloads import PlannedDisk, PlannedVm
from shared.settings import OrchestratorSettings
from shared.sources.blocking import Blocking, Calls
from shared.sources.openstack_connect import Connected, problem_of
from shared.sources.problems import ConnectionProblem

T = TypeVar("T")

GLANCE = "glance"  # the planner's source_storage of an image-backed server's root disk

_IMAGE_FAILED = frozenset({"killed", "deactivated"})
# Cinder and Nova delete the image of a copy that failed (an admin still reads it by id,
# as deleted): the copy is made again, under the same name, by the next call.
_IMAGE_GONE = frozenset({"deleted", "pending_delete"})
_IMAGE_PENDING = frozenset({"queued", "saving"})  # what an upload passes through
_TASK_STATE = "OS-EXT-STS:task_state"
_VOLUME_FAILED = frozenset(
    {"error", "error_restoring", "error_extending", "error_managing", "error_deleting"}
)
_SNAPSHOT_FAILED = frozenset({"error", "error_deleting"})
_VOLUME_DELETABLE = frozenset({"available", *_VOLUME_FAILED})
_SNAPSHOT_DELETABLE = frozenset({"available", *_SNAPSHOT_FAILED})
# Server states that make copying unsafe or Nova refuse, beyond the power state.
_BLOCKING_STATUS = {
    "ERROR": "the server is in ERROR: repair it in OpenStack first",
    "MIGRATING": "the server is migrating between hosts",
    "RESIZE": "the server is being resized",
    "VERIFY_RESIZE": "a resize of the server awaits confirmation",
    "REVERT_RESIZE": "a resize of the server is being reverted",
    "REBUILD": "the server is being rebuilt",
}
_VOLUME_OK = frozenset({"in-use", "available"})


@dataclass(frozen=True)
class Names:
    """The deterministic names of one disk's temporary snapshot, volume and image."""

    snapshot: str
    volume: str
    image: str

    @classmethod
    def of(cls, migration_id: str, vm_id: str, disk_id: str) -> Names:
        kinds = ("snapshot", "volume", "image")
        return cls(*(naming.artifact(k, migration_id, vm_id, disk_id) for k in kinds))


@dataclass(frozen=True)
class _Step:
    """Where one disk's chain stands: its image once active, else what it waits on."""

    image_id: str = ""
    size: int = 0
    waiting: str = ""


def is_root(vm_id: str, disk: PlannedDisk) -> bool:
    """The root disk of an image-backed server: it has no volume, Nova snapshots it."""
    return disk.source_storage == GLANCE or disk.disk_id == f"{vm_id}-root"


def _power(status: str) -> Power:
    return {"ACTIVE": Power.ON, "SHUTOFF": Power.OFF}.get(status, Power.OTHER)


def _oldest(items: Iterable[Any], name: str) -> Any | None:
    """The object of that exact name made first (a name filter may match loosely; two of a
    name only come from a race, and the first is the one every later call picks)."""
    found = sorted((i for i in items if i.name == name), key=lambda i: (i.created_at or "", i.id))
    return found[0] if found else None


def _all(items: Iterable[Any], name: str) -> list[Any]:
    return [i for i in items if i.name == name]


def _failed(kind: str, obj: Any) -> SourceError:
    return SourceError(
        errors.CONVERSION_FAILED,
        f"{kind} {obj.name} ({obj.id}) is {obj.status}: the conversion cannot go on; the "
        "migration's cleanup removes it, then the migration can be retried",
        permanent=True,
    )


def _image_step(image: Any) -> _Step:
    status = str(image.status or "")
    if status == "active":
        return _Step(image_id=str(image.id), size=int(image.size or 0))
    if status in _IMAGE_FAILED:
        raise _failed("image", image)
    if status in _IMAGE_GONE:
        return _Step(
            waiting=f"image {image.name} was deleted by the cloud (an upload that failed); "
            "uploading again"
        )
    return _Step(waiting=f"image {image.name} {status}")


def _pending(kind: str, obj: Any, failed: frozenset[str]) -> _Step | None:
    """None when ``obj`` is available; a wait while it is being made; raises on errors."""
    if obj.status == "available":
        return None
    if obj.status in failed:
        raise _failed(kind, obj)
    return _Step(waiting=f"{kind} {obj.name} {obj.status}")


# --------------------------------------------------------------------------- blocking calls
# Each runs in the source's thread pool and makes at most one thing.


def _read_server(conn: Any, server_id: str) -> tuple[Any, list[Any]] | None:
    try:
        server = conn.compute.get_server(server_id)
    except os_exc.NotFoundException:
        return None
    volumes = []
    for att in server.attached_volumes or []:
        try:
            volumes.append(conn.block_storage.get_volume(att["id"]))
        except os_exc.NotFoundException:
            volumes.append(None)
    return server, volumes


def _read_server_only(conn: Any, server_id: str) -> Any:
    try:
        return conn.compute.get_server(server_id)
    except os_exc.NotFoundException:
        return None


def _server_task(conn: Any, server_id: str) -> tuple[bool, str | None]:
    """Whether the cloud shows the server's task state, and that state. Read raw: the SDK
    gives None both for "no task" and for an attribute the policy hides."""
    r = conn.compute.get(f"/servers/{server_id}")
    os_exc.raise_from_response(r)
    body = r.json().get("server") or {}
    return _TASK_STATE in body, body.get(_TASK_STATE)


def _orphan(conn: Any, image: Any) -> _Step:
    """The image's uploader was seen idle: if the image is still not active (read after
    that), nothing will ever fill it; delete it, so the next call uploads again."""
    image = conn.image.get_image(image.id)
    if image.status not in _IMAGE_PENDING:
        return _image_step(image)
    conn.image.delete_image(image, ignore_missing=True)
    return _Step(
        waiting=f"image {image.name} was left {image.status} by an upload that ended without "
        "filling it; deleted it, uploading again"
    )


def _advance_root(conn: Any, server_id: str, names: Names, meta: dict[str, str]) -> _Step:
    image = _oldest(conn.image.images(name=names.image), names.image)
    if image is None:
        try:
            image_id = Server.existing(id=server_id).create_image(conn.compute, names.image, meta)
        except os_exc.NotFoundException:
            raise errors.vm_not_found(f"server {server_id}", "the cloud") from None
        except os_exc.ConflictException as exc:  # a task runs on the server: try later
            return _Step(waiting=f"server {server_id} busy ({_text(exc)})")
        return _image_step(conn.image.get_image(image_id))
    if image.status in _IMAGE_PENDING:
        try:
            shown, task = _server_task(conn, server_id)
        except os_exc.NotFoundException:
            raise errors.vm_not_found(f"server {server_id}", "the cloud") from None
        if shown and task is None:
            return _orphan(conn, image)
    return _image_step(image)


def _advance_volume(conn: Any, volume_id: str, names: Names, description: str) -> _Step:
    image = _oldest(conn.image.images(name=names.image), names.image)
    storage = conn.block_storage
    if image is not None:
        if image.status in _IMAGE_PENDING:
            volume = _oldest(storage.volumes(name=names.volume), names.volume)
            if volume is None or volume.status != "uploading":
                return _orphan(conn, image)
        return _image_step(image)
    volume = _oldest(storage.volumes(name=names.volume), names.volume)
    if volume is None:
        snap = _oldest(storage.snapshots(name=names.snapshot), names.snapshot)
        if snap is None:
            try:
                snap = storage.create_snapshot(
                    volume_id=volume_id,
                    name=names.snapshot,
                    description=description,
                    is_forced=True,
                )
            except os_exc.NotFoundException:
                raise SourceError(
                    errors.DISK_NOT_FOUND,
                    f"the volume {volume_id} is gone from the cloud: the plan no longer "
                    "matches the server; plan the VM again",
                    permanent=True,
                ) from None
        if (wait := _pending("snapshot", snap, _SNAPSHOT_FAILED)) is not None:
            return wait
        volume = storage.create_volume(
            snapshot_id=snap.id, name=names.volume, size=snap.size, description=description
        )
    if (wait := _pending("volume", volume, _VOLUME_FAILED)) is not None:
        return wait
    out = storage.upload_volume_to_image(
        volume, names.image, disk_format="raw", container_format="bare"
    )
    return _image_step(conn.image.get_image(out["image_id"]))


def _remove(conn: Any, names: Names) -> list[str]:
    """Delete one disk's image, volume and snapshot in that order; what is still in the way
    (empty: all gone). A snapshot is deleted only once its volume is gone."""
    left: list[str] = []
    for image in _all(conn.image.images(name=names.image), names.image):
        conn.image.delete_image(image, ignore_missing=True)
    storage = conn.block_storage
    for volume in _all(storage.volumes(name=names.volume), names.volume):
        if volume.status in _VOLUME_DELETABLE:
            _delete(storage.delete_volume, volume)
    volumes = _all(storage.volumes(name=names.volume), names.volume)
    left += [f"volume {v.name} {v.status}" for v in volumes]
    for snap in _all(storage.snapshots(name=names.snapshot), names.snapshot):
        if not volumes and snap.status in _SNAPSHOT_DELETABLE:
            _delete(storage.delete_snapshot, snap)
    snaps = _all(storage.snapshots(name=names.snapshot), names.snapshot)
    return left + [f"snapshot {s.name} {s.status}" for s in snaps]


def _delete(delete: Callable[..., None], obj: Any) -> None:
    """Cinder refuses (400) what changed state since it was listed: the next round sees it."""
    with contextlib.suppress(os_exc.BadRequestException):
        delete(obj, ignore_missing=True)


def _text(exc: BaseException) -> str:
    text = str(getattr(exc, "details", None) or exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"


def _http_error(exc: Exception, where: str) -> SourceError:
    """An SDK failure no call handled itself."""
    if isinstance(exc, SourceError):
        return exc
    status = getattr(exc, "status_code", None)
    if status == 413:
        return SourceError(
            errors.QUOTA_EXCEEDED,
            f"{where}: the project's quota is used up ({_text(exc)}); retrying as other "
            "migrations free theirs; raise the quota if this lasts",
        )
    if status in (400, 409):
        return SourceError(
            errors.SOURCE_BUSY, f"{where} refused the request now ({_text(exc)}); retrying"
        )
    return errors.from_problem(problem_of(exc, where))


class OpenStackSource:
    """``Source`` for one OpenStack cloud (see ``contract.Source``)."""

    def __init__(
        self,
        conn: openstack.connection.Connection,
        connected: Connected,
        calls: Calls,
        pool: Blocking,
        settings: OrchestratorSettings,
    ) -> None:
        self.conn = conn
        self.connected = connected
        self.calls = calls
        self.pool = pool
        self.settings = settings
        self.where = f"the cloud at {connected.auth_url}"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.calls(fn, self.conn, *args)
        except SourceError:
            raise
        except ConnectionProblem as problem:
            raise errors.from_problem(problem) from None
        except Exception as exc:
            raise _http_error(exc, self.where) from None

    # ---------------------------------------------------------------- inspect

    async def inspect(self, vm: PlannedVm) -> SourceVm:
        found = await self._call(_read_server, vm.vm_id)
        if found is None:
            raise errors.vm_not_found(f"server {vm.vm_id}", self.where)
        server, volumes = found
        status = str(server.status or "UNKNOWN")
        image_backed = bool(getattr(server.image, "id", None))
        disk_ids = [f"{server.id}-root"] if image_backed else []
        why = [_BLOCKING_STATUS[status]] if status in _BLOCKING_STATUS else []
        if server.task_state:
            why.append(f"a task runs on the server: {server.task_state}")
        for att, vol in zip(server.attached_volumes or [], volumes, strict=True):
            disk_ids.append(att["id"])
            if vol is None:
                why.append(f"volume {att['id']} is attached but Cinder does not know it")
            elif vol.status not in _VOLUME_OK:
                why.append(f"volume {vol.name or vol.id} ({vol.id}) is {vol.status}")
        why += [
            f"disk {d.disk_id} of the plan is no longer attached to the server"
            for d in vm.disks
            if d.disk_id not in disk_ids
        ]
        return SourceVm(
            vm_id=vm.vm_id,
            name=server.name or vm.name,
            power=_power(status),
            status=status,
            disk_ids=tuple(disk_ids),
            blockers=tuple(why),
        )

    async def power_state(self, vm_id: str) -> SourceVm:
        server = await self._call(_read_server_only, vm_id)
        if server is None:
            raise errors.vm_not_found(f"server {vm_id}", self.where)
        status = str(server.status or "UNKNOWN")
        return SourceVm(vm_id=vm_id, name=server.name or "", power=_power(status), status=status)

    # ---------------------------------------------------------------- power

    async def shutdown(self, vm_id: str) -> None:
        """``os-stop``: ACPI, then forced off after the host's timeout (see the module)."""
        await self._power(vm_id, "SHUTOFF")

    async def stop(self, vm_id: str) -> None:
        await self._power(vm_id, "SHUTOFF")

    async def start(self, vm_id: str) -> None:
        await self._power(vm_id, "ACTIVE")

    async def _power(self, vm_id: str, want: str) -> None:
        action = "stop" if want == "SHUTOFF" else "start"

        def act(conn: Any) -> str:
            try:
                server = conn.compute.get_server(vm_id)
                if server.status == want:
                    return ""
                getattr(conn.compute, f"{action}_server")(server)
                return ""
            except os_exc.NotFoundException:
                return "gone"
            except os_exc.ConflictException as exc:
                # Nova refuses in another state or while a task runs: read it again.
                try:
                    now = conn.compute.get_server(vm_id)
                except os_exc.NotFoundException:
                    return "gone"
                return "" if now.status == want else f"it is {now.status}: {_text(exc)}"

        outcome = await self._call(act)
        errors.settle_power(outcome, action=action, vm=f"server {vm_id}", where=self.where)

    # ---------------------------------------------------------------- conversion

    async def convert(self, migration_id: str, vm: PlannedVm) -> Conversion:
        images: dict[str, str] = {}
        sizes: dict[str, int] = {}
        waiting: list[str] = []
        for disk in vm.disks:
            names = Names.of(migration_id, vm.vm_id, disk.disk_id)
            what = f"disk {disk.disk_id} of VM {vm.vm_id}, migration {migration_id}"
            if is_root(vm.vm_id, disk):
                meta = {
                    "hoist_migration": migration_id,
                    "hoist_vm": vm.vm_id,
                    "hoist_disk": disk.disk_id,
                }
                step = await self._call(_advance_root, vm.vm_id, names, meta)
            else:
                description = f"Hoist: temporary copy of {what}"
                step = await self._call(_advance_volume, disk.disk_id, names, description)
            if step.waiting:
                waiting.append(step.waiting)
            else:
                images[disk.disk_id], sizes[disk.disk_id] = step.image_id, step.size
        return Conversion(done=not waiting, images=images, sizes=sizes, waiting="; ".join(waiting))

    async def remove_artifacts(self, migration_id: str, vm: PlannedVm) -> None:
        """Images, then volumes, then snapshots of every disk; what the cloud is still busy
        with (a volume uploading or deleting) is waited for, polling, up to
        ``source_timeout_seconds``; then ``CleanupPending`` (temporary)."""
        deadline = time.monotonic() + self.settings.source_timeout_seconds
        while True:
            left: list[str] = []
            for disk in vm.disks:
                names = Names.of(migration_id, vm.vm_id, disk.disk_id)
                left += await self._call(_remove, names)
            if not left:
                return
            if time.monotonic() >= deadline:
                raise SourceError(
                    errors.CLEANUP_PENDING,
                    f"temporary objects are still being deleted or used: {'; '.join(left)}; "
                    "retrying",
                )
            await asyncio.sleep(min(self.settings.poll_seconds, 1.0))

    async def close(self) -> None:
        try:
            await asyncio.to_thread(self.connected.close)
        finally:
            self.pool.shutdown()
