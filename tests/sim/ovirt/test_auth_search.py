"""HTTP Basic authentication and the search language of the simulated engine, driven as an
administrator would (httpx, the real ovirtsdk4)."""

from __future__ import annotations

import asyncio
import ssl
from xml.etree import ElementTree as ET

import httpx
import ovirtsdk4 as sdk
import pytest

from sim.ovirt.engine import Engine
from sim.ovirt.sdkclient import connect


def parse(content: bytes) -> ET.Element:
    return ET.fromstring(content)  # noqa: S314 (our own simulator's answer)


def client(engine: Engine, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(engine.cert.ca_file)), auth=auth
    )


async def test_basic_auth_with_an_engine_user(engine: Engine) -> None:
    password = engine.inv.users["admin@internal"]
    async with client(engine, ("admin@internal", password)) as http:
        r = await http.get(f"{engine.api_url}/vms")
    assert r.status_code == 200
    names = sorted(el.text or "" for el in parse(r.content).iter("name"))
    assert {"web-1", "db-1"} <= set(names)


@pytest.mark.parametrize(
    "auth",
    [("admin@internal", "wrong"), ("nobody@internal", "secret"), ("", ""), None],
)
async def test_wrong_credentials_get_401_with_a_challenge(
    engine: Engine, auth: tuple[str, str] | None
) -> None:
    async with client(engine, auth) as http:
        r = await http.get(f"{engine.api_url}/vms")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="RESTAPI"'
    # The engine's auth filter answers before the API runs (sendError): the servlet
    # container's HTML error page, not an API fault.
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<html><head><title>Error</title></head><body>")
    expected = "Unauthorized" if auth is None else "Cannot authenticate user"
    assert expected in r.text


async def test_malformed_basic_header_is_refused(engine: Engine) -> None:
    async with client(engine) as http:
        r = await http.get(f"{engine.api_url}/vms", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401


async def test_persistent_auth_gives_a_session_cookie(engine: Engine) -> None:
    """``Prefer: persistent-auth`` with credentials opens a session (``JSESSIONID``); later
    requests carrying the cookie and the same header need no credentials."""
    password = engine.inv.users["admin@internal"]
    persistent = {"Prefer": "persistent-auth"}
    async with client(engine, ("admin@internal", password)) as http:
        first = await http.get(f"{engine.api_url}/vms", headers=persistent)
    assert first.status_code == 200
    session = first.cookies["JSESSIONID"]
    assert first.headers["jsessionid"] == session
    assert "path=/ovirt-engine/api" in first.headers["set-cookie"]
    async with client(engine) as http:
        http.cookies.set("JSESSIONID", session)
        again = await http.get(f"{engine.api_url}/hosts", headers=persistent)
        assert again.status_code == 200
        assert "set-cookie" not in again.headers  # the same session, not a new one
        assert parse(again.content).tag == "hosts"
        # Without the header the engine ends the session before it authenticates.
        plain = await http.get(f"{engine.api_url}/hosts")
        after = await http.get(f"{engine.api_url}/hosts", headers=persistent)
    assert (plain.status_code, after.status_code) == (401, 401)


async def test_new_auth_ends_a_session_and_unknown_sessions_are_refused(engine: Engine) -> None:
    password = engine.inv.users["admin@internal"]
    async with client(engine, ("admin@internal", password)) as http:
        first = await http.get(f"{engine.api_url}/vms", headers={"Prefer": "persistent-auth"})
    session = first.cookies["JSESSIONID"]
    async with client(engine) as http:
        http.cookies.set("JSESSIONID", session)
        ended = await http.get(
            f"{engine.api_url}/vms", headers={"Prefer": "persistent-auth, new-auth"}
        )
        http.cookies.set("JSESSIONID", "made-up")
        unknown = await http.get(f"{engine.api_url}/vms", headers={"Prefer": "persistent-auth"})
    assert (ended.status_code, unknown.status_code) == (401, 401)
    assert unknown.headers["www-authenticate"] == 'Basic realm="RESTAPI"'


async def test_basic_auth_without_prefer_opens_no_session(engine: Engine) -> None:
    password = engine.inv.users["admin@internal"]
    created = engine.sessions.created
    async with client(engine, ("admin@internal", password)) as http:
        r = await http.get(f"{engine.api_url}/vms")
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    assert engine.sessions.created == created


async def test_sso_tokens_still_work(engine: Engine) -> None:
    def names() -> list[str]:
        conn = connect(engine)
        try:
            return sorted(v.name for v in conn.system_service().vms_service().list())
        finally:
            conn.close()

    assert {"web-1", "db-1"} <= set(await asyncio.to_thread(names))


def search(engine: Engine, query: str) -> list[str]:
    conn = connect(engine)
    try:
        return sorted(v.name for v in conn.system_service().vms_service().list(search=query))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=web*", ["web-1"]),
        ("name=WEB-*", ["web-1"]),
        ("name=*-1", ["db-1", "web-1"]),
        ("name=db-1", ["db-1"]),
        ('name="db-1"', ["db-1"]),
        ("name=web", []),
        ("name!=web*", ["db-1"]),
        ("name=web* or name=db*", ["db-1", "web-1"]),
        ("name=*-1 and status=down", ["db-1"]),
        ("name=*-1 AND status=up sortby name desc", ["web-1"]),
    ],
)
async def test_search_through_ovirtsdk4(engine: Engine, query: str, expected: list[str]) -> None:
    assert await asyncio.to_thread(search, engine, query) == expected


@pytest.mark.parametrize(
    "query", ["name=", 'name="web', "foo=bar", "===", "name=web and", "name web", "name<web"]
)
async def test_malformed_search_is_400_with_a_fault(engine: Engine, query: str) -> None:
    with pytest.raises(sdk.Error) as raised:
        await asyncio.to_thread(search, engine, query)
    assert raised.value.code == 400
    password = engine.inv.users["admin@internal"]
    async with client(engine, ("admin@internal", password)) as http:
        r = await http.get(f"{engine.api_url}/vms", params={"search": query})
        other = await http.get(f"{engine.api_url}/hosts", params={"search": query})
    assert (r.status_code, other.status_code) == (400, 400)
    fault = parse(r.content)
    assert fault.tag == "fault"
    assert fault.findtext("reason") == "Operation Failed"
    assert "Syntax error" in (fault.findtext("detail") or "")


async def test_search_on_other_collections(engine: Engine) -> None:
    password = engine.inv.users["admin@internal"]
    async with client(engine, ("admin@internal", password)) as http:
        every = await http.get(f"{engine.api_url}/networks")
        found = await http.get(f"{engine.api_url}/networks", params={"search": "name=PR*"})
    names = [el.text for el in parse(found.content).iter("name")]
    assert names == ["prod"]
    assert len(list(parse(every.content).iter("network"))) >= 1


@pytest.mark.parametrize("path", ["vms", "disks", "events", "clusters"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", ""])
async def test_a_malformed_max_is_a_400_fault(engine: Engine, path: str, value: str) -> None:
    """The engine refuses a ``max`` that is not a non-negative integer with a fault, not a
    plain-text 500; every collection that pages reads it the same way."""
    async with client(engine, ("admin@internal", engine.inv.users["admin@internal"])) as http:
        r = await http.get(f"{engine.api_url}/{path}", params={"max": value})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/xml")
    fault = parse(r.content)
    assert fault.tag == "fault"
    assert fault.findtext("reason") == "Invalid value"
    assert f"'{value}' of parameter 'max'" in (fault.findtext("detail") or "")


async def test_a_valid_max_still_pages(engine: Engine) -> None:
    async with client(engine, ("admin@internal", engine.inv.users["admin@internal"])) as http:
        one = await http.get(f"{engine.api_url}/vms", params={"max": "1"})
        none = await http.get(f"{engine.api_url}/events", params={"max": "0"})
        bad_from = await http.get(f"{engine.api_url}/events", params={"from": "x"})
    assert one.status_code == 200
    assert len(parse(one.content).findall("vm")) == 1
    assert none.status_code == 200
    assert parse(none.content).findall("event") == []
    assert bad_from.status_code == 400
    assert parse(bad_from.content).tag == "fault"
