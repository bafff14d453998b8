"""``/templates`` and ``/users``: what every engine has, whatever VMs a scenario holds.

A fresh engine already lists the ``Blank`` template (the all-zero id every VM without a
template is based on) and its administrator; clients and tools that look them up (to base
a VM on ``Blank``, to check who they are logged in as) met 404s from the simulator before.
Users are the scenario's login names (``admin@internal``): the engine shows each as a
principal in the profile's authz domain (``admin`` in ``internal-authz``), the domain's id
being its name in hex as the engine makes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sim.ovirt import entities as m
from sim.ovirt import params
from sim.ovirt import xmlapi as x
from sim.ovirt.search import SearchError, compile_search, fields_for

BLANK_ID = "00000000-0000-0000-0000-000000000000"
#: The id engines give ``admin@internal`` (fixed by the engine's installation scripts).
ADMIN_ID = "fdfc627c-d875-11e0-90f0-83df133b58cc"
_USERS = uuid.UUID("6f1c1c6e-8d4e-4c53-9a53-5c1d0a3c2f11")  # namespace for other users' ids


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    description: str
    status: str = "ok"


@dataclass(frozen=True)
class User:
    id: str
    name: str  # the principal, what the engine shows as the user's name
    principal: str
    domain: str  # the authz domain, ``internal-authz``
    #: searchable as ``usrname=``: the engine's user_name, ``admin@internal-authz``
    user_name: str

    @property
    def domain_id(self) -> str:
        return self.domain.encode().hex()


BLANK = Template(BLANK_ID, "Blank", "Blank template")


def templates(inv: m.Inventory) -> list[Template]:
    return [BLANK]


def users(inv: m.Inventory) -> list[User]:
    """Each login name ``principal@profile`` as the engine's user in ``profile-authz``."""
    found = []
    for login in inv.users:
        principal, _, profile = login.rpartition("@")
        if not principal:
            principal, profile = login, "internal"
        domain = f"{profile}-authz"
        user_id = ADMIN_ID if login == "admin@internal" else str(uuid.uuid5(_USERS, login))
        found.append(User(user_id, principal, principal, domain, f"{principal}@{domain}"))
    return found


Fault = Callable[[int, str, str], Response]
Xml = Callable[[bytes], Response]
SearchFault = Callable[[SearchError], Response]


class Directory:
    """Route handlers for both collections (``engine.py`` mounts them, before its generic
    ``/{collection}`` routes)."""

    def __init__(self, inv: m.Inventory, xml: Xml, fault: Fault, search_fault: SearchFault) -> None:
        self.inv = inv
        self._xml = xml
        self._fault = fault
        self._search_fault = search_fault

    def _list(self, request: Request, items: list[Any], cls: type, **extra: Any) -> list[Any]:
        query = request.query_params.get("search", "")
        if query.strip():
            items = list(compile_search(query, fields_for(cls, **extra))(items))
        return params.limit(request, items)

    async def list_templates(self, request: Request) -> Response:
        try:
            found = self._list(request, templates(self.inv), Template)
        except SearchError as exc:
            return self._search_fault(exc)
        return self._xml(x.collection("templates", (x.template(t) for t in found)))

    async def get_template(self, request: Request) -> Response:
        found = next((t for t in templates(self.inv) if t.id == request.path_params["id"]), None)
        if found is None:
            return self._fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return self._xml(x.document(x.template(found)))

    async def list_users(self, request: Request) -> Response:
        getter = {"usrname": lambda u: u.user_name}
        try:
            found = self._list(request, users(self.inv), User, **getter)
        except SearchError as exc:
            return self._search_fault(exc)
        return self._xml(x.collection("users", (x.user(u) for u in found)))

    async def get_user(self, request: Request) -> Response:
        found = next((u for u in users(self.inv) if u.id == request.path_params["id"]), None)
        if found is None:
            return self._fault(404, "Not Found", f"Entity not found: {request.path_params['id']}")
        return self._xml(x.document(x.user(found)))
