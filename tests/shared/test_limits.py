"""Refusals before any work (``shared.service.limits``): the token and the body's size are
checked before the body is read, on an app the shared factory builds.

The refusals that must not read the body are driven with a hand-made ASGI ``receive`` that
counts what the app pulled: a 50 MB body offered without a token is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import MetaData

from shared.service.app import create_app
from shared.service.auth import require_token
from shared.service.spec import ServiceSpec
from shared.settings import HoistSettings
from tests.conftest import TOKEN, make_settings

LIMIT = 64 * 1024
MB = 1024 * 1024
BEARER = {"authorization": f"Bearer {TOKEN}"}


class Item(BaseModel):
    name: str
    vms: list[str] = []


router = APIRouter()


@router.post("/api/v1/limits/items")
async def create_item(item: Item) -> dict[str, Any]:
    return {"name": item.name, "vms": len(item.vms)}


@router.post("/api/v1/limits/raw")
async def raw(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


SPEC = ServiceSpec(
    name="limits",
    title="Limits",
    summary="A service with one route, for the gate's tests.",
    port=1,
    routes=("/api/v1/limits",),
    router=router,
    metadata=MetaData(schema="limits"),
    migrations=Path("."),
    subscriptions=lambda runtime: (),
)


def settings(**overrides: Any) -> HoistSettings:
    http = {"max_body_bytes": LIMIT, **overrides.pop("http", {})}
    return make_settings(
        "nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t", http=http, **overrides
    )


@pytest.fixture
def app() -> FastAPI:
    return create_app(SPEC, settings())


class Exchange:
    """One request driven by hand: the chunks are produced only when the app asks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.next = next(chunks, None)
        self.calls = 0
        self.pulled = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        chunk, self.next = self.next, next(self.chunks, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.next is not None}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def json(self) -> Any:
        return json.loads(self.body)


def chunks(size: int, total: int) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body in chunks of ``size``; the last one ends it."""
    block = b" " * size
    sent = 0
    while sent < total:
        yield block[: min(size, total - sent)]
        sent += size


async def drive(
    app: FastAPI,
    path: str,
    body: Iterator[bytes],
    headers: dict[str, str],
    *,
    method: str = "POST",
    root_path: str = "",
) -> Exchange:
    exchange = Exchange(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, exchange.receive, exchange.send)
    return exchange


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# --- the token, before the body ----------------------------------------------------------------


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer nope", "Basic dXNlcjpwdw=="], ids=["none", "wrong", "basic"]
)
async def test_a_huge_body_without_a_valid_token_is_refused_unread(
    app: FastAPI, length: bool, authorization: str | None
) -> None:
    headers = {"content-type": "application/json"}
    headers |= {"content-length": str(50 * MB)} if length else {"transfer-encoding": "chunked"}
    if authorization:
        headers["authorization"] = authorization
    ex = await drive(app, "/api/v1/limits/items", chunks(MB, 50 * MB), headers)
    assert ex.status == 401
    assert (ex.calls, ex.pulled) == (0, 0)
    assert ex.headers["www-authenticate"] == 'Bearer realm="hoist"'
    assert ex.headers["x-request-id"]


async def test_every_api_path_is_gated_but_the_docs(app: FastAPI) -> None:
    for path in ("/api/v1/limits/status", "/api/v1/limits/deadletters", "/api/v1/nowhere"):
        ex = await drive(app, path, iter(()), {}, method="GET")
        assert ex.status == 401, path
    async with client(app) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert (await http.get("/api/v1/limits/openapi.json")).status_code == 200
        assert (await http.get("/api/v1/limits/docs")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("tokens", "authorization"),
    [
        ([TOKEN], None),
        ([TOKEN], "Bearer nope"),
        ([TOKEN], "Basic dXNlcjpwdw=="),
        ([TOKEN], "Bearer"),
        ([], f"Bearer {TOKEN}"),
    ],
    ids=["missing", "wrong", "basic", "empty", "no tokens configured"],
)
async def test_the_401_is_the_dependencys_answer_byte_for_byte(
    tokens: list[str], authorization: str | None
) -> None:
    ours = create_app(SPEC, settings(auth={"tokens": tokens}))
    # What every API route answered before the gate: the dependency alone.
    before = FastAPI()
    before.state.settings = ours.state.settings

    @before.post("/api/v1/limits/items", dependencies=[Depends(require_token)])
    async def item(item: Item) -> None:
        raise AssertionError("refused before")

    headers = {"authorization": authorization} if authorization else {}
    async with client(ours) as http, client(before) as old:
        new = await http.post("/api/v1/limits/items", json={"name": "x"}, headers=headers)
        ref = await old.post("/api/v1/limits/items", json={"name": "x"}, headers=headers)
    assert (new.status_code, new.content) == (401, ref.content)
    for header in ("www-authenticate", "content-type", "content-length"):
        assert new.headers[header] == ref.headers[header]


# --- the size limit ----------------------------------------------------------------------------


async def test_an_announced_body_over_the_limit_is_refused_unread(app: FastAPI) -> None:
    headers = {**BEARER, "content-type": "application/json", "content-length": str(LIMIT + 1)}
    ex = await drive(app, "/api/v1/limits/items", chunks(MB, LIMIT + 1), headers)
    assert ex.status == 413
    assert (ex.calls, ex.pulled) == (0, 0)
    assert ex.json() == {
        "detail": f"the request body is larger than {LIMIT} bytes (HOIST_HTTP_MAX_BODY_BYTES)"
    }


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/api/v1/limits/items", "application/json"), ("/api/v1/limits/raw", "text/plain")],
    ids=["json (read by the NUL check)", "text (read by the route)"],
)
async def test_a_chunked_body_is_refused_once_it_exceeds_the_limit(
    app: FastAPI, path: str, content_type: str
) -> None:
    headers = {**BEARER, "content-type": content_type, "transfer-encoding": "chunked"}
    ex = await drive(app, path, chunks(4096, 50 * MB), headers)
    assert ex.status == 413
    assert ex.json()["detail"].startswith(f"the request body is larger than {LIMIT} bytes")
    assert LIMIT < ex.pulled <= LIMIT + 4096  # stopped at the chunk that went over


async def test_the_limit_holds_with_authentication_disabled() -> None:
    app = create_app(SPEC, settings(auth={"disabled": True, "tokens": []}))
    headers = {"content-type": "application/json", "content-length": str(50 * MB)}
    ex = await drive(app, "/api/v1/limits/items", chunks(MB, 50 * MB), headers)
    assert (ex.status, ex.calls) == (413, 0)
    async with client(app) as http:
        ok = await http.post("/api/v1/limits/items", json={"name": "a"})
    assert (ok.status_code, ok.json()) == (200, {"name": "a", "vms": 0})


async def test_the_health_routes_are_limited_too_but_otherwise_untouched(app: FastAPI) -> None:
    ex = await drive(app, "/healthz", iter(()), {}, method="GET")
    assert (ex.status, ex.json()["status"]) == (200, "ok")
    big = {"content-length": str(LIMIT + 1)}
    assert (await drive(app, "/healthz", iter(()), big, method="GET")).status == 413


# --- everything else as before -----------------------------------------------------------------


async def test_requests_within_the_limit_are_answered_as_before(app: FastAPI) -> None:
    body = json.dumps({"name": "p", "vms": ["x" * 60] * 500}).encode()
    assert len(body) < LIMIT
    async with client(app) as http:
        ok = await http.post(
            "/api/v1/limits/items",
            content=body,
            headers={**BEARER, "content-type": "application/json", "x-request-id": "r-1"},
        )
        assert (ok.status_code, ok.json()) == (200, {"name": "p", "vms": 500})
        assert ok.headers["x-request-id"] == "r-1"
        invalid = await http.post("/api/v1/limits/items", json={"vms": []}, headers=BEARER)
        assert invalid.status_code == 422
        nul = await http.post("/api/v1/limits/items", json={"name": "a\x00"}, headers=BEARER)
        assert nul.status_code == 422
        assert "NUL" in nul.json()["detail"][0]["msg"]
    exact = {**BEARER, "content-type": "text/plain"}
    for framing in ({"content-length": str(LIMIT)}, {"transfer-encoding": "chunked"}):
        ex = await drive(app, "/api/v1/limits/raw", chunks(4096, LIMIT), exact | framing)
        assert (ex.status, ex.json()) == (200, {"bytes": LIMIT})


async def test_the_gate_sees_the_path_under_the_root_path() -> None:
    app = create_app(SPEC, settings(http={"root_path": "/hoist"}))
    huge = {"content-type": "application/json", "content-length": str(50 * MB)}
    for path in ("/hoist/api/v1/limits/items", "/api/v1/limits/items"):
        ex = await drive(app, path, chunks(MB, 50 * MB), huge, root_path="/hoist")
        assert (ex.status, ex.calls) == (401, 0), path
    ex = await drive(app, "/hoist/api/v1/limits/openapi.json", iter(()), {}, method="GET")
    assert ex.status == 200


def test_the_default_limit_fits_the_largest_plan_twice() -> None:
    """20,000 VMs by their longest names, each with a target name and power state, pretty
    printed: about 8 MB; the default leaves twice that."""
    ref = {"name": "x" * 253, "targetName": "y" * 63, "targetPowerState": "Off"}
    plan = {
        "name": "p",
        "targetNamespace": "ns",
        "networkMap": "n",
        "storageMap": "s",
        "sourceProvider": "a",
        "targetProvider": "b",
        "vms": [ref] * 20_000,
    }
    largest = len(json.dumps(plan, indent=2).encode())
    assert 2 * largest <= HoistSettings().http.max_body_bytes
