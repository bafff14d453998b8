"""A pass-through proxy in front of the real Glance, where download faults happen.

The catalog can name this proxy as the image service; everything goes through unchanged
(paths, ``Range``, tokens, status codes, and the ``Host`` header, so Glance's own version
links point back at the proxy). What it adds is the faults a network or an expiring token
inflict on a long download: 5xx bursts, a connection cut after N bytes, and a token revoked
in Keystone mid-stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sim.certs import client_context
from sim.openstack.faults import ConnectionResetFault, Faults
from sim.openstack.tokens import Keystone

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "date",
    "server",
}


def build_proxy(glance_url: str, faults: Faults, keystone: Keystone) -> Starlette:
    client = httpx.AsyncClient(
        base_url=glance_url,
        verify=client_context(keystone.ca_file),
        timeout=httpx.Timeout(60, read=900),
    )

    async def forward(request: Request) -> Response:
        if (status := faults.take_failure("image")) is not None:
            return JSONResponse({"code": status, "title": "Service Unavailable"}, status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if (length := request.headers.get("content-length")) is not None:
            headers["content-length"] = length
        upstream = client.build_request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=headers,
            content=request.stream(),
        )
        resp = await client.send(upstream, stream=True)
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        if "content-length" in resp.headers:
            out_headers["content-length"] = resp.headers["content-length"]
        is_download = request.method == "GET" and request.url.path.endswith("/file")
        cut = faults.take_reset() if is_download and resp.status_code < 300 else None
        revoke = faults.take_revoke() if is_download and resp.status_code < 300 else None
        token = request.headers.get("x-auth-token", "")

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            try:
                async for chunk in resp.aiter_raw():
                    for limit, why in ((cut, "reset"), (revoke, "token")):
                        if limit is not None and sent + len(chunk) > limit:
                            if limit > sent:
                                yield chunk[: limit - sent]
                            if why == "token":
                                await keystone.revoke(token)
                            faults.injected.append(f"{why}:{request.url.path}@{limit}")
                            raise ConnectionResetFault(f"{why} fault after {limit} bytes")
                    sent += len(chunk)
                    yield chunk
            finally:
                await resp.aclose()

        return StreamingResponse(body(), resp.status_code, headers=out_headers)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", forward, methods=methods)])
    app.state.client = client
    return app
