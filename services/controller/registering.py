"""Registration at start: Hoist's populator CRDs and VolumePopulators, create-or-update.

Every start applies ``shared.populator.manifests()``. An object already written from the same
manifest (its digest annotation matches) is left alone, so a second start writes nothing;
an older one is replaced, keeping its resourceVersion (a concurrent writer makes that a
409, and it is read and tried again). A cluster without the ``VolumePopulator`` API (no
volume-data-source-validator installed) only gets a warning: the registration is what
silences its ``UnrecognizedDataSourceKind`` events, nothing depends on it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import kubeapi
from services.controller.kubeapi import Kube, Obj
from shared import populator as contract

log = logging.getLogger("hoist.controller.register")

VP_GROUP, VP_VERSION, VP_PLURAL = "populator.storage.k8s.io", "v1beta1", "volumepopulators"
ESTABLISH_SECONDS = 60.0


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str  # "created", "updated", "unchanged", "skipped"


async def register(kube: Kube) -> list[Applied]:
    """Apply every manifest; wait for the CRDs to be Established. Raises ``ApiException``
    on anything but an absent VolumePopulator API (the caller retries later)."""
    done: list[Applied] = []
    for manifest in contract.crds():
        done.append(await _apply_crd(kube, manifest))
    for manifest in contract.volume_populators():
        done.append(await _apply_volume_populator(kube, manifest))
    for manifest in contract.crds():
        await _established(kube, manifest["metadata"]["name"])
    for item in done:
        if item.action in ("created", "updated"):
            log.info("%s %s %s", item.action, item.kind, item.name)
    return done


def _stamped(manifest: Obj) -> Obj:
    body = copy.deepcopy(manifest)
    body["metadata"].setdefault("annotations", {})[contract.DIGEST_ANNOTATION] = contract.digest(
        manifest
    )
    return body


async def _apply(
    kind: str,
    manifest: Obj,
    get: Callable[[], Awaitable[Obj | None]],
    create: Callable[[Obj], Awaitable[Obj]],
    replace: Callable[[Obj], Awaitable[Obj]],
) -> Applied:
    name = manifest["metadata"]["name"]
    wanted = _stamped(manifest)
    digest = wanted["metadata"]["annotations"][contract.DIGEST_ANNOTATION]
    for _ in range(5):
        current = await get()
        if current is None:
            try:
                await create(wanted)
            except ApiException as exc:
                if exc.status == 409:
                    continue  # created meanwhile (another replica): compare again
                raise
            return Applied(kind, name, "created")
        meta = current.get("metadata") or {}
        if (meta.get("annotations") or {}).get(contract.DIGEST_ANNOTATION) == digest:
            return Applied(kind, name, "unchanged")
        body = copy.deepcopy(wanted)
        body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        # Keep what others put on the object (a GitOps tool's labels, say).
        body["metadata"]["labels"] = {**(meta.get("labels") or {}), **body["metadata"]["labels"]}
        body["metadata"]["annotations"] = {
            **(meta.get("annotations") or {}),
            **body["metadata"]["annotations"],
        }
        try:
            await replace(body)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        return Applied(kind, name, "updated")
    raise RuntimeError(f"{kind} {name} kept changing while being registered; retrying later")


async def _apply_crd(kube: Kube, manifest: Obj) -> Applied:
    name = manifest["metadata"]["name"]
    ext = kube.extensions
    return await _apply(
        "CustomResourceDefinition",
        manifest,
        lambda: kubeapi.read(ext.read_custom_resource_definition, name),
        lambda body: kubeapi.call(ext.create_custom_resource_definition, body),
        lambda body: kubeapi.call(ext.replace_custom_resource_definition, name, body),
    )


async def _apply_volume_populator(kube: Kube, manifest: Obj) -> Applied:
    name = manifest["metadata"]["name"]
    custom = kube.custom
    args: tuple[Any, ...] = (VP_GROUP, VP_VERSION, VP_PLURAL)
    try:
        return await _apply(
            "VolumePopulator",
            manifest,
            lambda: kubeapi.read(custom.get_cluster_custom_object, *args, name),
            lambda body: kubeapi.call(custom.create_cluster_custom_object, *args, body),
            lambda body: kubeapi.call(custom.replace_cluster_custom_object, *args, name, body),
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        log.warning(
            "the cluster does not serve %s/%s %s (no volume-data-source-validator): "
            "%s not registered; claims populate anyway",
            VP_GROUP,
            VP_VERSION,
            VP_PLURAL,
            name,
        )
        return Applied("VolumePopulator", name, "skipped")


async def _established(kube: Kube, name: str) -> None:
    """Wait until the API server serves the CRD's kind (watching it fails before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ESTABLISH_SECONDS
    while True:
        crd = await kubeapi.read(kube.extensions.read_custom_resource_definition, name)
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if loop.time() > deadline:
            raise RuntimeError(
                f"CustomResourceDefinition {name} is not Established after "
                f"{ESTABLISH_SECONDS:.0f} s; registration is retried"
            )
        await asyncio.sleep(0.5)
