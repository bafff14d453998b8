"""The pod subresources that reach into a running pod: `log`, `proxy` and `binding`.

`pods/log` reads the files the kubelet writes for each container (with `follow`,
`tailLines`, `previous`); the proxy forwards a request to the pod's IP and port (plain or
`https:` prefixed, without verifying the pod's certificate, as the real API server does),
which is how a client outside the pod network scrapes a populator's metrics.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from sim.kube.errors import ApiError, bad_request
from sim.kube.routing import respond
from sim.kube.store import encode

HOP_HEADERS = frozenset(
    {
        "host",
        "authorization",
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "accept-encoding",
    }
)


async def serve(
    cluster: Any,
    send: Any,
    receive: Any,
    method: str,
    subresource: str,
    namespace: str,
    name: str,
    rest: str,
    query: Any,
    headers: dict[str, str],
    body: bytes,
) -> None:
    pods = cluster.kind("pods")
    if subresource == "binding":
        binding = json.loads(body or b"{}")
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise bad_request("a binding needs target.name")
        pod = cluster.store.entry(pods, namespace, name).obj
        if pod["spec"].get("nodeName"):
            raise ApiError(
                409,
                "Conflict",
                f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"',
            )
        cluster.store.mutate(
            pods,
            namespace,
            name,
            lambda o: o["spec"].__setitem__("nodeName", target),
            subresource="binding",
        )
        await respond(
            send,
            201,
            encode({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}),
        )
        return
    pod_name, port, scheme = _split_target(name)
    pod = cluster.store.entry(pods, namespace, pod_name).obj
    if subresource == "log":
        await _log(cluster, send, pod, query)
    else:
        await _proxy(send, pod, port, scheme, method, rest, query, headers, body)


def _split_target(name: str) -> tuple[str, str, str]:
    """`https:pod:8443` -> (pod, 8443, https); `pod:8080` -> (pod, 8080, http)."""
    parts = name.split(":")
    scheme = "http"
    if parts[0] in ("http", "https") and len(parts) > 1:
        scheme, parts = parts[0], parts[1:]
    return parts[0], parts[1] if len(parts) > 1 else "", scheme


def _container(pod: dict[str, Any], wanted: str | None) -> str:
    names = [str(c["name"]) for c in pod["spec"].get("containers") or []]
    if wanted:
        if wanted not in names:
            raise bad_request(f"container {wanted} is not valid for pod {pod['metadata']['name']}")
        return wanted
    if len(names) != 1:
        raise bad_request(
            f"a container name must be specified for pod "
            f"{pod['metadata']['name']}, choose one of: [{' '.join(names)}]"
        )
    return names[0]


async def _log(cluster: Any, send: Any, pod: dict[str, Any], query: Any) -> None:
    meta = pod["metadata"]
    container = _container(pod, query.get("container"))
    kubelet = cluster.controllers.get("kubelet")
    previous = query.flag("previous")
    path = (
        kubelet.log_path(meta["namespace"], meta["name"], container, previous) if kubelet else None
    )
    if path is None or not path.exists():
        state = "waiting to start"
        raise bad_request(
            f'container "{container}" in pod "{meta["name"]}" is {state}: ContainerCreating'
            if not previous
            else f'previous terminated container "{container}" in pod "{meta["name"]}" not found'
        )
    tail = query.int("tailLines")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    with path.open("rb") as stream:
        data = stream.read()
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        await send({"type": "http.response.body", "body": data, "more_body": True})
        follow = query.flag("follow") and not previous
        pods = cluster.kind("pods")
        while follow:
            chunk = stream.read(65536)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                continue
            current = cluster.store.find(pods, meta["namespace"], meta["name"])
            if (
                current is None
                or current.obj["metadata"]["uid"] != meta["uid"]
                or current.obj.get("status", {}).get("phase") in ("Succeeded", "Failed")
            ):
                rest = stream.read()
                if rest:
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
                break
            await asyncio.sleep(0.1)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _proxy(
    send: Any,
    pod: dict[str, Any],
    port: str,
    scheme: str,
    method: str,
    rest: str,
    query: Any,
    headers: dict[str, str],
    body: bytes,
) -> None:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or pod.get("status", {}).get("phase") != "Running":
        raise ApiError(
            503,
            "ServiceUnavailable",
            f"pod {pod['metadata']['name']} is not running: no endpoints available",
        )
    if not port:
        ports = [
            p["containerPort"]
            for c in pod["spec"].get("containers") or []
            for p in c.get("ports") or []
        ]
        if not ports:
            raise bad_request("a port is required to proxy to a pod without declared ports")
        port = str(ports[0])
    url = f"{scheme}://{ip}:{port}/{rest}"
    forwarded = {k: v for k, v in headers.items() if k not in HOP_HEADERS}
    params = [(k, v) for k, values in query._values.items() for v in values]
    try:
        async with httpx.AsyncClient(verify=False, timeout=30) as client:  # noqa: S501
            reply = await client.request(
                method, url, params=params, headers=forwarded, content=body or None
            )
    except httpx.HTTPError as exc:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from exc
    passed = [
        (k.encode(), v.encode())
        for k, v in reply.headers.items()
        if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"
    ]
    await respond(
        send,
        reply.status_code,
        reply.content,
        passed or [(b"content-type", b"application/octet-stream")],
    )
