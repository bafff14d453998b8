"""Secrets never leak: after whole migrations from both sources (one of them a cloud reached
with an application credential), every place Hoist writes to is scanned for every password
and token it was given or obtained.

Scanned: each service's and the controller's log, every populator and converter pod's log
(the simulated kubelet keeps them past the pods), every answer the services gave this test
plus a sweep of every GET route of every service, every message in every JetStream stream
of the stack's prefix (events, dead letters, KV buckets), every row of every table of every
schema of the stack's database (as text), and every object in the cluster but the Secrets
that are meant to hold them. Besides the literal secrets given, Keystone tokens (Fernet,
``gAAAAA...``) and JWTs (Kubernetes ServiceAccount tokens) are looked for by shape, since
Hoist obtains them itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

from services.inventory.items import KINDS
from shared.devservices import DevServices, plain_dsn
from sim.openstack import scenario as sc
from sim.openstack.cloud import Cloud
from sim.openstack.state import Server
from tests.conftest import TOKEN
from tests.e2e.conftest import NAMESPACE, create_plan, start, svc, wait_migration
from tests.inventory.conftest import api, unique, wait_phase
from tools.stack import Stack

#: Keystone Fernet tokens and JWTs (Kubernetes ServiceAccount tokens): obtained at run time,
#: so found by their shape.
SHAPES = {
    "keystone token": re.compile(rb"gAAAAA[A-Za-z0-9_-]{40,}"),
    "jwt": re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
}
APP_SECRET = f"app-cred-{uuid.uuid4().hex}"


class Leaks:
    """Where each secret was found: what a failed test prints."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.needles: dict[str, list[bytes]] = {}
        for name, value in secrets.items():
            assert len(value) >= 6, f"{name} is too short to search for"
            raw = value.encode()
            # As given, JSON-escaped, and base64 (an Authorization: Basic, a Secret's data).
            self.needles[name] = [raw, json.dumps(value)[1:-1].encode(), base64.b64encode(raw)]
        self.found: list[str] = []
        self.scanned: dict[str, int] = {}

    def scan(self, where: str, data: bytes | str, kind: str) -> None:
        blob = data.encode() if isinstance(data, str) else data
        self.scanned[kind] = self.scanned.get(kind, 0) + 1
        for name, needles in self.needles.items():
            for needle in needles:
                at = blob.find(needle)
                if at >= 0:
                    self.found.append(f"{name} in {where}: ...{blob[max(0, at - 80) : at + 40]!r}")
                    break
        for name, shape in SHAPES.items():
            for match in shape.finditer(blob):
                self.found.append(f"a {name} in {where}: {match.group()[:24]!r}...")


@pytest.fixture(scope="module")
def leak_server(cloud: Cloud) -> Server:
    return cloud.add_server(
        sc.Server(
            name=f"leak-{uuid.uuid4().hex[:4]}",
            flavor="m1.small",
            networks=["private"],
            boot="volume",
            status="SHUTOFF",
            root=sc.Disk(size_mib=4, data_mib=1),
        )
    )


async def _app_credential_provider(
    stack: Stack, cloud: Cloud, providers: dict[str, str], record: list[httpx.Response]
) -> tuple[str, str, str]:
    """A second cloud provider, reached with an application credential; its maps."""
    conn = cloud.connection()
    cred = await asyncio.to_thread(
        conn.identity.create_application_credential,
        conn.current_user_id,
        unique("hoist"),
        secret=APP_SECRET,
    )
    given = cloud.credentials()
    body = {
        "name": unique("appcred"),
        "type": "openstack",
        "url": cloud.auth_url,
        "credentials": {
            "applicationCredentialID": cred.id,
            "applicationCredentialSecret": APP_SECRET,
            "regionName": given["regionName"],
        },
        "tls": {"caCert": given["cacert"]},
    }
    inventory, planner = svc(stack, "inventory"), svc(stack, "planner")
    for dry in (True, False):
        r = await api(inventory, "POST", f"/providers?dryRun={str(dry).lower()}", json=body)
        record.append(r)
        assert r.status_code in (200, 201), r.text
    pid = r.json()["id"]
    await wait_phase(inventory, pid, "Ready", within=90)
    common = {"sourceProvider": pid, "targetProvider": providers["cluster"]}
    ids = []
    for path, rows in (
        ("/networkmaps", [{"source": {"name": "private"}, "destination": {"type": "pod"}}]),
        ("/storagemaps", [{"source": {"name": "standard"},
                           "destination": {"storageClass": "standard-wffc",
                                           "volumeMode": "Block"}}]),
    ):  # fmt: skip
        r = await api(planner, "POST", path, json={**common, "name": unique("appcred"),
                                                  "entries": rows})  # fmt: skip
        record.append(r)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return pid, ids[0], ids[1]


def _strings(value: Any) -> set[str]:
    """Ids and names in an answer: what the sweep fills route parameters with."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "name", "targetName", "migrationId") and isinstance(item, str):
                out.add(item)
            out |= _strings(item)
    elif isinstance(value, list):
        for item in value:
            out |= _strings(item)
    return out


async def _get(client: httpx.AsyncClient, path: str, leaks: Leaks, where: str) -> tuple[int, bytes]:
    """One GET, read for at most 2 s (event streams never end)."""
    body = b""
    try:
        async with asyncio.timeout(2):
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with client.stream("GET", path, headers=auth) as r:
                status = r.status_code
                async for chunk in r.aiter_bytes():
                    body += chunk
    except TimeoutError:
        status = 200
    leaks.scan(f"{where} GET {path}", body, "responses")
    return status, body


async def _sweep(stack: Stack, leaks: Leaks, seeds: set[str]) -> int:
    """Every GET route of every service (from its OpenAPI document), its parameters filled
    with every id and name seen, pruned by what the route's parent answered."""
    count = 0
    for name, service in stack.services.items():
        client = service.client
        doc = (await client.get(f"/api/v1/{name}/openapi.json")).json()
        known = set(seeds)
        routes = sorted(p for p, ops in doc["paths"].items() if "get" in ops)
        ok: dict[str, set[str]] = {}  # template -> values of its last parameter that answered
        for template in sorted(routes, key=lambda t: t.count("{")):
            params = re.findall(r"\{([^}]+)\}", template)
            if not params:
                status, body = await _get(client, template, leaks, name)
                count += 1
                with contextlib.suppress(ValueError):
                    known |= _strings(json.loads(body))
                continue
            if len(params) > 2:
                continue
            parent = template.split("/{" + params[-1])[0]
            firsts = sorted(ok.get(parent.rsplit("/", 1)[0] if len(params) > 1 else "", known))
            if len(params) == 1:
                firsts = sorted(known | set(KINDS))
            for first in firsts:
                path1 = template.replace("{" + params[0] + "}", first, 1)
                if len(params) == 1:
                    status, _ = await _get(client, path1, leaks, name)
                    count += 1
                    if status == 200:
                        ok.setdefault(template, set()).add(first)
                    continue
                for second in sorted(known | set(KINDS)):
                    path = re.sub(r"\{[^}]+\}", second, path1, count=1)
                    count += 1
                    await _get(client, path, leaks, name)
    return count


async def _streams(stack: Stack, servers: DevServices, leaks: Leaks) -> int:
    """Every message of every stream the stack's prefix owns (events, dead letters, KV)."""
    prefix = stack.spec.prefix
    count = 0
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            sname = info.config.name or ""
            if prefix.lower() not in sname.lower():
                continue
            state = info.state
            if not state.messages:
                continue
            for seq in range(max(1, state.first_seq), state.last_seq + 1):
                try:
                    msg = await js.get_msg(sname, seq)
                except NotFoundError:
                    continue
                headers = json.dumps(msg.headers or {}).encode()
                leaks.scan(f"stream {sname} #{seq} ({msg.subject})", (msg.data or b"") + headers,
                           "messages")  # fmt: skip
                count += 1
    finally:
        await nc.close()
    return count


async def _database(stack: Stack, leaks: Leaks) -> int:
    """Every row of every table of every schema, as text."""
    conn = await asyncpg.connect(plain_dsn(stack.spec.database_url))
    count = 0
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables, "no tables found"
        for t in tables:
            ident = f'"{t["table_schema"]}"."{t["table_name"]}"'
            # Names from the catalog, quoted: nothing of a user's is in this query.
            query = f"SELECT t::text AS row FROM {ident} t"  # noqa: S608
            for row in await conn.fetch(query):
                leaks.scan(f"table {ident}", row["row"], "rows")
                count += 1
    finally:
        await conn.close()
    return count


async def _cluster(stack: Stack, leaks: Leaks) -> int:
    """Every object in the cluster but Secrets (which are where credentials belong)."""
    count = 0
    store = stack.cluster.store
    seen: set[tuple[str, str]] = set()
    for kind in stack.cluster.registry:
        if kind.plural == "secrets" or kind.key in seen:
            continue
        seen.add(kind.key)
        for entry in store.scan(kind):
            meta = entry.obj.get("metadata", {})
            leaks.scan(f"{kind.plural} {meta.get('namespace')}/{meta.get('name')}",
                       json.dumps(entry.obj), "objects")  # fmt: skip
            count += 1
    return count


def _logs(stack: Stack, leaks: Leaks) -> int:
    files = [p for p in stack.logs.rglob("*") if p.is_file()]
    kubelet = stack.cluster.controllers.get("kubelet")
    root: Path | None = getattr(kubelet, "root", None)
    if root is not None:  # pods still there
        files += [p for p in root.rglob("*.log") if p.is_file()]
    for path in files:
        leaks.scan(f"log {path}", path.read_bytes(), "log files")
    return len(files)


async def test_no_secret_is_written_anywhere(
    stack: Stack,
    cloud: Cloud,
    servers: DevServices,
    providers: dict[str, str],
    maps: dict[str, tuple[str, str]],
    leak_server: Server,
) -> None:
    answers: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append(response)

    for service in stack.services.values():
        service.client.event_hooks["response"].append(keep)
    try:
        pid, network, storage = await _app_credential_provider(stack, cloud, providers, answers)
        ovirt_plan = await create_plan(stack, providers, maps, "ovirt", ["leak"])
        cloud_plan = await create_plan(
            stack,
            {**providers, "openstack": pid},
            {"openstack": (network, storage)},
            "openstack",
            [leak_server.name],
        )
        started = [(p, await start(stack, p)) for p in (ovirt_plan, cloud_plan)]
        for plan, migration in started:
            ended = await wait_migration(stack, plan, migration["id"], within=300)
            assert ended["phase"] == "Succeeded", ended
    finally:
        for service in stack.services.values():
            service.client.event_hooks["response"].remove(keep)

    ovirt = stack.ovirt_credentials()
    secrets = {
        "the oVirt password": ovirt["password"],
        "the OpenStack password": cloud.scenario.password,
        "the application credential's secret": APP_SECRET,
        "the static API token": TOKEN,
        "the cluster's token": stack.cluster.config.token,
    }
    leaks = Leaks(secrets)
    for r in answers:
        leaks.scan(f"answer to {r.request.method} {r.request.url.path}", r.content, "responses")
        leaks.scan(f"headers of {r.request.url.path}", json.dumps(dict(r.headers)), "responses")
    swept = await _sweep(stack, leaks, {NAMESPACE, ovirt_plan["id"], cloud_plan["id"], pid})
    counts = {
        "answers": len(answers),
        "swept": swept,
        "messages": await _streams(stack, servers, leaks),
        "rows": await _database(stack, leaks),
        "objects": await _cluster(stack, leaks),
        "log files": _logs(stack, leaks),
    }
    print(f"scanned: {counts}")
    # The scan finds a secret where it belongs (the provider's Secret, base64): it would
    # find a leak.
    control = Leaks({"the oVirt password": ovirt["password"]})
    for entry in stack.cluster.store.scan(stack.cluster.kind("secrets")):
        control.scan("a Secret", json.dumps(entry.obj), "secrets")
    assert control.found, "the scan does not find the password even in its Secret"
    # The scan must have looked at something real in each place.
    assert all(counts.values()), counts
    assert counts["log files"] > 5, counts
    assert counts["rows"] > 10, counts
    assert counts["messages"] > 10, counts
    assert leaks.found == [], "\n".join(leaks.found[:40])
