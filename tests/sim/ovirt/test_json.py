"""``Accept: application/json``: the simulated engine answers the same documents in the
engine's JSON shape (``sim/ovirt/jsonapi.py``), driven as an administrator would (httpx)."""

from __future__ import annotations

import ssl
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from sim.ovirt.engine import Engine
from sim.ovirt.jsonapi import wants_json

JSON = {"Accept": "application/json"}


def client(engine: Engine) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(engine.cert.ca_file)),
        auth=("admin@internal", engine.inv.users["admin@internal"]),
    )


async def get(engine: Engine, path: str, **kwargs: Any) -> httpx.Response:
    async with client(engine) as http:
        return await http.get(f"{engine.api_url}{path}", **kwargs)


async def test_a_collection_is_keyed_by_the_singular_name(engine: Engine) -> None:
    r = await get(engine, "/vms", headers=JSON)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["vm"]
    web = next(v for v in body["vm"] if v["name"] == "web-1")
    vm = engine.inv.vms[web["id"]]
    assert web["href"] == f"/ovirt-engine/api/vms/{vm.id}"
    # Values are strings, as the engine writes them; nested objects are objects.
    assert web["memory"] == str(vm.memory)
    assert web["cpu"]["topology"] == {"cores": "2", "sockets": "2", "threads": "1"}
    assert web["high_availability"]["enabled"] == "false"
    assert web["cluster"] == {
        "id": vm.cluster_id,
        "href": f"/ovirt-engine/api/clusters/{vm.cluster_id}",
    }
    rels = {link["rel"] for link in web["link"]}
    assert {"nics", "diskattachments", "snapshots"} <= rels


async def test_json_and_xml_are_the_same_documents(engine: Engine) -> None:
    xml = await get(engine, "/vms")
    js = await get(engine, "/vms", headers=JSON)
    assert xml.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(xml.content)  # noqa: S314 (our own simulator's answer)
    from_xml = {(el.get("id"), el.findtext("name"), el.findtext("status")) for el in root}
    from_json = {(v["id"], v["name"], v["status"]) for v in js.json()["vm"]}
    assert from_xml == from_json


async def test_one_object_has_no_wrapper_and_lists_keep_theirs(engine: Engine) -> None:
    vm = next(v for v in engine.inv.vms.values() if v.name == "web-1")
    r = await get(engine, f"/vms/{vm.id}", params={"follow": "nics"}, headers=JSON)
    body = r.json()
    assert body["id"] == vm.id
    assert body["name"] == "web-1"
    nics = body["nics"]["nic"]
    assert [n["name"] for n in nics] == [n.name for n in vm.nics]
    assert nics[0]["mac"] == {"address": vm.nics[0].mac}


async def test_an_empty_collection_is_an_empty_object(engine: Engine) -> None:
    r = await get(engine, "/vms", params={"search": "name=nothing-here"}, headers=JSON)
    assert r.status_code == 200
    assert r.json() == {}


async def test_dates_are_epoch_milliseconds(engine: Engine) -> None:
    r = await get(engine, "/events", params={"max": "1"}, headers=JSON)
    event = r.json()["event"][0]
    newest = engine.inv.events[-1]
    assert event["id"] == str(newest.id)
    assert isinstance(event["time"], int)
    assert abs(event["time"] - newest.time * 1000) < 1  # the XML's millisecond precision
    assert event["code"] == str(newest.code)


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/vms/no-such-vm", {}, 404),
        ("/vms", {"search": "name="}, 400),
        ("/vms", {"max": "x"}, 400),
    ],
)
async def test_faults_in_json(
    engine: Engine, path: str, params: dict[str, str], status: int
) -> None:
    r = await get(engine, path, params=params, headers=JSON)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"reason", "detail"}


async def test_xml_stays_the_default(engine: Engine) -> None:
    for accept in ("", "*/*", "application/xml", "application/xml, application/json"):
        r = await get(engine, "/hosts", headers={"Accept": accept} if accept else {})
        assert r.headers["content-type"].startswith("application/xml"), accept


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),
        ("application/json, */*", True),
        ("application/xml;q=0.5, application/json", True),
        ("application/json;q=0.1, application/xml", False),
        ("application/json;q=0", False),
        ("*/*", False),
        ("text/html", False),
        ("", False),
    ],
)
def test_accept_negotiation(accept: str, expected: bool) -> None:
    assert wants_json(accept) is expected
