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
from dataclasses import dataclass

from kubernetes_asyncio.client.exceptions import ApiException

from shared import populator as contract
from shared.kube import CRD, VOLUME_POPULATOR, Kube, Obj, Resource, conflict, not_found

log = logging.getLogger("hoist.controller.register")

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


async def _apply(kube: Kube, res: Resource, manifest: Obj) -> Applied:
    """Create ``manifest`` (a cluster-scoped object), or replace an object of its name
    written from another manifest."""
    name = manifest["metadata"]["name"]
    wanted = _stamped(manifest)
    digest = wanted["metadata"]["annotations"][contract.DIGEST_ANNOTATION]
    for _ in range(5):
        current = await kube.get(res, name)
        if current is None:
            try:
                await kube.create(res, wanted)
            except ApiException as exc:
                if conflict(exc):
                    continue  # created meanwhile (another replica): compare again
                raise
            return Applied(res.kind, name, "created")
        meta = current.get("metadata") or {}
        if (meta.get("annotations") or {}).get(contract.DIGEST_ANNOTATION) == digest:
            return Applied(res.kind, name, "unchanged")
        body = copy.deepcopy(wanted)
        body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        # Keep what others put on the object (a GitOps tool's labels, say).
        body["metadata"]["labels"] = {**(meta.get("labels") or {}), **body["metadata"]["labels"]}
        body["metadata"]["annotations"] = {
            **(meta.get("annotations") or {}),
            **body["metadata"]["annotations"],
        }
        try:
            await kube.replace(res, name, body)
        except ApiException as exc:
            if conflict(exc):
                continue
            raise
        return Applied(res.kind, name, "updated")
    raise RuntimeError(f"{res.kind} {name} kept changing while being registered; retrying later")


async def _apply_crd(kube: Kube, manifest: Obj) -> Applied:
    return await _apply(kube, CRD, manifest)


async def _apply_volume_populator(kube: Kube, manifest: Obj) -> Applied:
    try:
        return await _apply(kube, VOLUME_POPULATOR, manifest)
    except ApiException as exc:
        if not not_found(exc):
            raise
        name = manifest["metadata"]["name"]
        log.warning(
            "the cluster does not serve %s %s (no volume-data-source-validator): "
            "%s not registered; claims populate anyway",
            VOLUME_POPULATOR.api_version,
            VOLUME_POPULATOR.plural,
            name,
        )
        return Applied(VOLUME_POPULATOR.kind, name, "skipped")


async def _established(kube: Kube, name: str) -> None:
    """Wait until the API server serves the CRD's kind (watching it fails before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ESTABLISH_SECONDS
    while True:
        crd = await kube.get(CRD, name)
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if loop.time() > deadline:
            raise RuntimeError(
                f"CustomResourceDefinition {name} is not Established after "
                f"{ESTABLISH_SECONDS:.0f} s; registration is retried"
            )
        await asyncio.sleep(0.5)
