"""curl and ovirtsdk4 against the simulated engine, as an administrator drives a real one:
Basic authentication, JSON, search, faults, and the engine down for maintenance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from sim.ovirt.engine import Engine
from sim.ovirt.scenario import Fault


async def curl(engine: Engine, path: str, *args: str) -> tuple[int, str, str]:
    """(status, content type, body) of `curl -u admin@internal:secret` on an API path."""
    password = engine.inv.users["admin@internal"]
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--cacert",
        str(engine.cert.ca_file),
        "-u",
        f"admin@internal:{password}",
        "-w",
        "\n%{http_code} %{content_type}",
        *args,
        f"{engine.api_url}{path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    body, _, tail = out.decode().rpartition("\n")
    code, _, content_type = tail.partition(" ")
    return int(code), content_type, body


async def test_curl_reads_json_with_basic_auth_and_searches(engine: Engine) -> None:
    code, content_type, body = await curl(
        engine, "/vms?search=name%3Dweb*", "-H", "Accept: application/json"
    )
    assert (code, content_type) == (200, "application/json")
    assert [vm["name"] for vm in json.loads(body)["vm"]] == ["web-1"]
    code, _, body = await curl(engine, "/vms?search=name%3D", "-H", "Accept: application/json")
    assert code == 400
    assert "Syntax error in search query" in json.loads(body)["detail"]
    code, content_type, body = await curl(engine, "/vms?max=abc")
    assert (code, content_type.split(";")[0]) == (400, "application/xml")
    assert "<fault>" in body


async def test_an_engine_down_for_maintenance(engine: Engine, tmp_path: Path) -> None:
    """Apache's 503 page, for curl and for ovirtsdk4 (which only says it is not XML)."""
    engine.add_fault(Fault("maintenance", seconds=120))
    try:
        code, content_type, body = await curl(engine, "/vms")
        assert (code, content_type.split(";")[0]) == (503, "text/html")
        assert "Service Unavailable" in body
        ca = tmp_path / "ca.pem"
        ca.write_text(engine.cert.ca_pem)
        connection = sdk.Connection(
            url=engine.api_url,
            username="admin@internal",
            password=engine.inv.users["admin@internal"],
            ca_file=str(ca),
        )
        with pytest.raises(sdk.Error, match="isn't the expected"):
            await asyncio.to_thread(connection.authenticate)
    finally:
        engine.maintenance.end()
    code, _, _ = await curl(engine, "/vms")
    assert code == 200
