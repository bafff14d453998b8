"""Nova's keypairs (``/os-keypairs``) and availability zones (Nova's and Cinder's
``/os-availability-zone``), as they answer ``openstack keypair list`` and ``openstack
availability zone list``.

Keypairs are made from the scenario servers' ``key_name``s (Nova boots only with an existing
one). Zones are the ones the scenario's servers and volumes are in, plus ``nova`` (both
services' default zone, which always exists); all are available.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from sim.openstack.errors import ApiError
from sim.openstack.state import Keypair

if TYPE_CHECKING:  # api.py imports this module
    from sim.openstack.api import Sim


def _keypair(k: Keypair, user_id: str | None, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "type": "ssh",
    }
    if detail:  # GET /os-keypairs/{name} says more than the listing
        body |= {
            "id": k.id,
            "user_id": k.user_id or user_id,
            "created_at": k.created_at,
            "updated_at": None,
            "deleted": False,
            "deleted_at": None,
        }
    return body


def add_routes(app: FastAPI, sim: Sim, nova: str, cinder: str) -> None:
    st = sim.state

    @app.get(nova + "/os-keypairs")
    async def keypairs(request: Request) -> dict[str, Any]:
        user = request.state.user
        return {"keypairs": [{"keypair": _keypair(k, user, False)} for k in st.keypairs.values()]}

    @app.get(nova + "/os-keypairs/{name}")
    async def keypair(name: str, request: Request) -> dict[str, Any]:
        if name not in st.keypairs:
            raise ApiError(
                404, "itemNotFound", f"Keypair {name} not found for user {request.state.user}"
            )
        return {"keypair": _keypair(st.keypairs[name], request.state.user, True)}

    def zones(names: set[str]) -> list[str]:
        return sorted(names | {"nova"})

    @app.get(nova + "/os-availability-zone")
    async def nova_zones() -> dict[str, Any]:
        used = {s.availability_zone for s in st.servers.values() if s.deleted_at is None}
        return {
            "availabilityZoneInfo": [
                {"zoneName": z, "zoneState": {"available": True}, "hosts": None}
                for z in zones(used)
            ]
        }

    @app.get(nova + "/os-availability-zone/detail")
    async def nova_zones_detail(request: Request) -> dict[str, Any]:
        """Admin only by Nova's default policy: `openstack availability zone list` asks it
        first and, refused, falls back to the plain list."""
        if "admin" not in (request.state.roles or []):
            raise ApiError(
                403,
                "forbidden",
                "Policy doesn't allow os_compute_api:os-availability-zone:detail to be performed.",
            )
        used = {s.availability_zone for s in st.servers.values() if s.deleted_at is None}
        service = {"available": True, "active": True, "updated_at": None}
        return {
            "availabilityZoneInfo": [
                {
                    "zoneName": z,
                    "zoneState": {"available": True},
                    "hosts": {f"compute-{z}": {"nova-compute": service}},
                }
                for z in zones(used)
            ]
        }

    @app.get(cinder + "/os-availability-zone")
    async def cinder_zones() -> dict[str, Any]:
        used = {v.availability_zone for v in st.volumes.values()}
        return {
            "availabilityZoneInfo": [
                {"zoneName": z, "zoneState": {"available": True}} for z in zones(used)
            ]
        }
