"""``/templates`` and ``/users`` of the simulated engine through the real ovirtsdk4 (its
readers decide which elements count) and httpx (the 404s and faults a script would see)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from sim.ovirt.directory import ADMIN_ID, BLANK_ID
from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect


def read(engine: Engine) -> dict[str, Any]:
    conn = connect(engine)
    try:
        system = conn.system_service()
        templates = system.templates_service()
        users = system.users_service()
        return {
            "templates": templates.list(),
            "blank": templates.template_service(BLANK_ID).get(),
            "by_name": templates.list(search="name=Blank"),
            "users": users.list(),
            "admin": users.user_service(ADMIN_ID).get(),
            "one_user": users.list(max=1),
        }
    finally:
        conn.close()


async def test_templates_and_users_through_ovirtsdk4(engine: Engine) -> None:
    engine.inv.users.setdefault("ops@example", "pw")
    got = await asyncio.to_thread(read, engine)
    [blank] = got["templates"]
    for template in (blank, got["blank"]):
        assert template.id == BLANK_ID
        assert template.name == "Blank"
        assert template.description == "Blank template"
        assert template.status == types.TemplateStatus.OK
        assert template.type == types.VmType.SERVER
        assert template.memory == 1024**3
        assert template.version.version_number == 1
        assert template.version.base_template.id == BLANK_ID
        assert template.cpu.topology.sockets == 1
    assert [t.name for t in got["by_name"]] == ["Blank"]
    by_name = {u.user_name: u for u in got["users"]}
    assert set(by_name) == {"admin@internal-authz", "ops@example-authz"}
    admin = got["admin"]
    assert admin.id == ADMIN_ID
    assert admin.user_name == "admin@internal-authz"
    assert admin.principal == "admin"
    assert admin.domain.name == "internal-authz"
    assert admin.domain.id == b"internal-authz".hex()
    assert by_name["ops@example-authz"].principal == "ops"
    assert len(got["one_user"]) == 1


def missing(engine: Engine, path: str) -> None:
    conn = connect(engine)
    try:
        system = conn.system_service()
        if path == "templates":
            system.templates_service().template_service("nope").get()
        else:
            system.users_service().user_service("nope").get()
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["templates", "users"])
async def test_an_unknown_id_is_not_found(engine: Engine, path: str) -> None:
    with pytest.raises(sdk.NotFoundError):
        await asyncio.to_thread(missing, engine, path)


async def test_collections_over_http(engine: Engine) -> None:
    trust = ssl.create_default_context(cafile=str(engine.cert.ca_file))
    auth = ("admin@internal", engine.inv.users["admin@internal"])
    async with httpx.AsyncClient(verify=trust, auth=auth) as http:
        root = await http.get(engine.api_url)
        templates = await http.get(f"{engine.api_url}/templates")
        bad = await http.get(f"{engine.api_url}/users", params={"max": "abc"})
        anonymous = await http.get(f"{engine.api_url}/users", auth=None)
    rels = {link.get("rel") for link in ET.fromstring(root.content).iter("link")}  # noqa: S314
    assert {"templates", "users"} <= rels
    assert templates.status_code == 200
    [el] = ET.fromstring(templates.content).findall("template")  # noqa: S314
    assert el.get("href") == f"/ovirt-engine/api/templates/{BLANK_ID}"
    assert bad.status_code == 400
    assert anonymous.status_code == 401
