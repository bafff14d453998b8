"""Listing a cloud through openstacksdk's service proxies, as raw JSON.

The proxies (keystoneauth adapters) give the catalog lookup, token renewal, version
discovery and microversions; the listings themselves are read as JSON and followed page by
page here, because building openstacksdk resource objects for ten thousand servers costs
more than the HTTP does. Each function blocks: the source runs it through ``Calls``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import openstack.connection

from shared.sources.openstack_connect import COMPUTE_MICROVERSION, Connected, problem_of

PAGE = 1000  # per request; the services cap it at their own maximum


@dataclass
class Listed:
    rows: list[dict[str, Any]]
    server_time: dt.datetime | None  # the Date header of the first page: the server's clock


class Lister:
    """One provider's openstacksdk connection and what the cloud lets it list."""

    def __init__(self, connected: Connected, region: str, all_projects: bool) -> None:
        self.connected = connected
        self.conn = openstack.connection.Connection(
            session=connected.session, region_name=region or None, app_name="hoist-inventory"
        )
        self.all_projects = all_projects
        self.compute_microversion: str | None = None

    def close(self) -> None:
        self.connected.close()

    def _paged(self, proxy: Any, path: str, key: str, params: dict[str, Any], **kw: Any) -> Listed:
        rows: list[dict[str, Any]] = []
        server_time = None
        url: str | None = path
        query: dict[str, Any] = {"limit": PAGE, **params}
        while url:
            try:
                r = proxy.get(url, params=query, raise_exc=True, **kw)
            except Exception as exc:
                raise problem_of(exc, f"{proxy.service_type} {path}") from None
            if server_time is None and (date := r.headers.get("Date")):
                server_time = parsedate_to_datetime(date)
            body = r.json()
            page = body.get(key) or []
            rows.extend(page)
            url, query = _next_page(body, key, page)
        return Listed(rows, server_time)

    def _compute_kw(self) -> dict[str, Any]:
        if self.compute_microversion is None:
            data = self.conn.compute.get_endpoint_data()
            top = getattr(data, "max_microversion", None)
            want = tuple(int(x) for x in COMPUTE_MICROVERSION.split("."))
            self.compute_microversion = (
                COMPUTE_MICROVERSION if top is None or tuple(top) >= want
                else f"{top[0]}.{top[1]}"
            )  # fmt: skip
        return {"microversion": self.compute_microversion}

    def servers(self, changes_since: str | None = None) -> Listed:
        params: dict[str, Any] = {}
        if self.all_projects:
            params["all_tenants"] = "True"
        if changes_since:
            params["changes-since"] = changes_since
        return self._paged(
            self.conn.compute, "/servers/detail", "servers", params, **self._compute_kw()
        )

    def flavors(self) -> Listed:
        params = {"is_public": "None"} if self.all_projects else {}
        return self._paged(self.conn.compute, "/flavors/detail", "flavors", params)

    def images(self, updated_after: str | None = None) -> Listed:
        params = {"updated_at": f"gt:{updated_after}"} if updated_after else {}
        return self._paged(self.conn.image, "images", "images", params)

    def volumes(self) -> Listed:
        params = {"all_tenants": "True"} if self.all_projects else {}
        return self._paged(self.conn.block_storage, "/volumes/detail", "volumes", params)

    def snapshots(self) -> Listed:
        params = {"all_tenants": "True"} if self.all_projects else {}
        return self._paged(self.conn.block_storage, "/snapshots/detail", "snapshots", params)

    def volume_types(self) -> Listed:
        return self._paged(self.conn.block_storage, "/types", "volume_types", {})

    def networks(self) -> Listed:
        return self._paged(self.conn.network, "/networks", "networks", {})

    def subnets(self) -> Listed:
        return self._paged(self.conn.network, "/subnets", "subnets", {})

    def ports(self) -> Listed:
        return self._paged(self.conn.network, "/ports", "ports", {})

    def projects(self) -> Listed:
        """The projects the user may scope to (any user may ask), else just its own."""
        try:
            return self._paged(self.conn.identity, "/auth/projects", "projects", {})
        except Exception:
            own = self.connected.facts.get("project") or {}
            return Listed([{"id": own.get("id"), "name": own.get("name")}], None)


def _next_page(
    body: dict[str, Any], key: str, page: list[Any]
) -> tuple[str | None, dict[str, Any]]:
    """Nova/Cinder/Neutron: ``<key>_links`` rel=next (a full URL); Glance: ``next``
    (``/v2/images?marker=...``, relative to Glance's root)."""
    if not page:
        return None, {}
    for link in body.get(f"{key}_links") or []:
        if link.get("rel") == "next" and link.get("href"):
            return str(link["href"]), {}
    if nxt := body.get("next"):
        parts = urlsplit(str(nxt))
        return parts.path.rsplit("/", 1)[-1], dict(parse_qsl(parts.query))
    return None, {}
