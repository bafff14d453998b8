"""The planner's view of the inventory: its HTTP API, asked at the moment of validation.

Why HTTP and not a copy of the inventory in the planner's tables: a plan is validated against
what the inventory knows *now* (a VM locked a second ago must block a start), the inventory
service owns its data, and services never read each other's tables. Each validation fetches
only what the plan names (its providers, its VMs, the target's namespaces and classes).

Failures say what happens next: ``InventoryUnavailable`` is temporary (the API answers 503
with ``Retry-After``), a missing provider or object is a validation problem, not an error.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from shared.service.errors import Unavailable
from shared.settings import HoistSettings

log = logging.getLogger("hoist.planner.inventory")

Obj = dict[str, Any]

#: Above this many VMs a plan's VMs are read by listing the collection, not one by one.
LIST_THRESHOLD = 200


class InventoryUnavailable(Unavailable):
    """The inventory could not answer (down, starting, timing out); retry after a while.

    An ``Unavailable``: a request that needs the inventory answers 503 with
    ``Retry-After: 5``. It is a ``RetryLater`` too, which no bus handler of the planner
    sees: only validation asks the inventory, from a request or the ``Revalidator``."""

    RETRY_SECONDS = 5

    def __init__(self, message: str) -> None:
        super().__init__(message, self.RETRY_SECONDS)

    def detail(self) -> str:
        return f"the inventory cannot be asked right now ({self.message}); retry"


class TokenFile(httpx.Auth):
    """The bearer token in a file, read again whenever the file changes: the planner's
    projected ServiceAccount token, which the kubelet rotates, is how it calls the
    inventory under Kubernetes identities (docs/security.md)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[float, str] | None = None

    def token(self) -> str:
        mtime = self.path.stat().st_mtime
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, self.path.read_text().strip())
        return self._seen[1]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        try:
            request.headers["Authorization"] = f"Bearer {self.token()}"
        except OSError as exc:
            raise InventoryUnavailable(f"cannot read the inventory token file: {exc}") from exc
        yield request


class InventoryClient:
    def __init__(self, settings: HoistSettings) -> None:
        cfg = settings.planner
        token = cfg.inventory_token or (settings.auth.tokens[0] if settings.auth.tokens else None)
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        auth = TokenFile(cfg.inventory_token_file) if cfg.inventory_token_file else None
        verify: ssl.SSLContext | bool = True
        if cfg.inventory_ca_file is not None:
            verify = ssl.create_default_context(cafile=str(cfg.inventory_ca_file))
        self._http = httpx.AsyncClient(
            base_url=cfg.inventory_url.rstrip("/") + "/api/v1",
            headers=headers,
            auth=auth,
            timeout=cfg.inventory_timeout_seconds,
            verify=verify,
            limits=httpx.Limits(max_connections=cfg.inventory_concurrency * 2),
        )
        self._gate = asyncio.Semaphore(cfg.inventory_concurrency)

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Obj | None:
        """The JSON body, or None for a 404; anything else unexpected is unavailability."""
        async with self._gate:
            try:
                r = await self._http.get(path, params=params)
            except httpx.HTTPError as exc:
                raise InventoryUnavailable(f"inventory at {self._http.base_url}: {exc!r}") from exc
        if r.status_code == 404:
            return None
        if r.status_code >= 500 or r.status_code in (401, 403, 429):
            # 401/403: the planner's token is wrong; a person must fix the settings, but to the
            # user it is the same: the inventory cannot be asked right now.
            raise InventoryUnavailable(
                f"inventory answered {r.status_code} to GET {path}: {r.text[:200]}"
            )
        if r.status_code != 200:
            raise InventoryUnavailable(f"inventory refused GET {path}: {r.status_code} {r.text}")
        body: Obj = r.json()
        return body

    async def provider(self, ref: str) -> Obj | None:
        return await self._get(f"/providers/{quote(ref, safe='')}")

    async def object(self, provider_id: str, collection: str, oid: str) -> Obj | None:
        """One object with its normalized fields and concerns (ids without ``/`` only)."""
        return await self._get(
            f"/providers/{provider_id}/{collection}/{quote(oid, safe='')}", {"detail": 1}
        )

    async def list(self, provider_id: str, collection: str, **filters: str) -> list[Obj]:
        """Every object of a collection (following cursors), normalized fields included.

        A provider that does not collect ``collection`` (e.g. a cluster without CDI's
        StorageProfiles) answers 404: an empty list, as the kind is absent."""
        out: list[Obj] = []
        params: dict[str, Any] = {"detail": 1, "limit": 1000, **filters}
        while True:
            page = await self._get(f"/providers/{provider_id}/{collection}", params)
            if page is None:
                return out
            out.extend(page["items"])
            if not page.get("next"):
                return out
            params["cursor"] = page["next"]

    async def objects(
        self,
        provider_id: str,
        collection: str,
        ids: Iterable[str],
        *,
        known: Mapping[str, Obj] | None = None,
        within: Mapping[str, str] | None = None,
    ) -> dict[str, Obj]:
        """The objects with these ids that exist (missing ones are simply absent).

        ``known``: objects this request already read (a selector's listing), not asked
        again. ``within``: list filters that should cover most of the ids (the selector
        that chose them): many ids are then read with one filtered listing rather than
        the whole collection, and only those it missed (renamed, powered off) by id, or by
        the whole listing if they are many."""
        wanted = list(dict.fromkeys(ids))
        found = {i: known[i] for i in wanted if known and i in known}
        if within and len(wanted) - len(found) > LIST_THRESHOLD:
            keep = set(wanted) - set(found)
            listed = await self.list(provider_id, collection, **within)
            found.update((o["id"], o) for o in listed if o["id"] in keep)
        rest = [i for i in wanted if i not in found]
        if len(rest) > LIST_THRESHOLD:
            keep = set(rest)
            listed = await self.list(provider_id, collection)
            found.update((o["id"], o) for o in listed if o["id"] in keep)
        elif rest:
            one = await asyncio.gather(*(self.object(provider_id, collection, i) for i in rest))
            found.update((i, o) for i, o in zip(rest, one, strict=True) if o is not None)
        return {i: found[i] for i in wanted if i in found}
