"""The version documents keystoneauth reads before the first call to each simulated service
(Nova, Cinder, Neutron), as the real services serve them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def add_discovery(app: FastAPI, base_url: str, nova_max: str, cinder_max: str) -> None:
    """The version documents keystoneauth reads before the first call to each service."""

    def link(path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{base_url}{path}"}]

    def compute() -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": nova_max,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": link("/compute/v2.1/"),
        }

    def volume() -> dict[str, Any]:
        return {
            "id": "v3.0",
            "status": "CURRENT",
            "version": cinder_max,
            "min_version": "3.0",
            "updated": "2023-08-31T00:00:00Z",
            "links": link("/volume/v3/"),
        }

    def network() -> dict[str, Any]:
        return {"id": "v2.0", "status": "CURRENT", "links": link("/network/v2.0/")}

    for prefix, versioned, doc in (
        ("/compute", "/compute/v2.1", compute),
        ("/volume", "/volume/v3", volume),
        ("/network", "/network/v2.0", network),
    ):
        _version_routes(app, prefix, versioned, doc)


def _version_routes(app: FastAPI, root: str, versioned: str, doc: Callable[[], Any]) -> None:
    async def versions() -> JSONResponse:
        return JSONResponse({"versions": [doc()]}, 300 if root != "/network" else 200)

    async def version() -> dict[str, Any]:
        return {"version": doc()}

    for path in (root, root + "/"):
        app.add_api_route(path, versions, methods=["GET"])
    for path in (versioned, versioned + "/"):
        app.add_api_route(path, version, methods=["GET"])
