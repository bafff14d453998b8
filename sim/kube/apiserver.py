"""The HTTP face of the simulated cluster: Kubernetes REST over the store.

A plain ASGI application (no web framework: Kubernetes URLs, content negotiation and
streaming watches follow their own rules, and list and watch latency matter for the
benchmark). It speaks what kubectl and kubernetes_asyncio send: discovery, CRUD on
namespaced and cluster-scoped resources and their subresources, the three patch formats,
list with selectors and pagination, watches with bookmarks and 410 Gone, Tables for
`kubectl get`, bearer-token authentication, pod logs and the pod proxy. Everything it
refuses, it refuses with the `kind: Status` body and code of a real API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from sim import certs
from sim.kube import discovery, fieldmanager, impersonation, patching, podaccess, reviews
from sim.kube.authn import Identity
from sim.kube.errors import ApiError, bad_request
from sim.kube.kinds import Kind
from sim.kube.rbac import Attributes
from sim.kube.routing import (
    Query,
    Receive,
    Route,
    decode,
    delete_options,
    dry_run,
    object_of,
    parse_path,
    read_body,
    respond,
    verb_of,
)
from sim.kube.selectors import combine, field_predicate, label_predicate
from sim.kube.store import Entry, encode

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
WATCH_TIMEOUT = 1800.0


class ApiServer:
    """The ASGI application."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.registry = cluster.registry

    # -- plumbing ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        query = Query(scope.get("query_string", b""))
        try:
            await self._dispatch(scope, receive, send, path, query, headers)
        except ApiError as error:
            extra = [(b"retry-after", str(error.retry_after).encode())] if error.retry_after else []
            await respond(send, error.code, encode(error.status()), extra)
        except Exception:
            log.exception("internal error serving %s %s", scope["method"], path)
            internal = ApiError(500, "InternalError", "an internal error occurred in the simulator")
            await respond(send, 500, encode(internal.status()))

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        query: Query,
        headers: dict[str, str],
    ) -> None:
        method = scope["method"]
        if path in ("/healthz", "/readyz", "/livez"):
            await respond(send, 200, b"ok", [(b"content-type", b"text/plain")])
            return
        user = self.cluster.authn.authenticate_header(headers.get("authorization", ""))
        user = impersonation.identity_of(self.cluster.authz, user, scope["headers"])
        fault = self.cluster.faults.request_fault(path)
        if fault is not None:
            raise _fault_error(fault, self.cluster.faults.retry_after)
        if path.startswith("/sim/"):
            self.cluster.authz.check(user, Attributes(verb="admin", path=path))
            await self._sim(send, receive, method, path)
            return
        document = self._discovery(path)
        if document is not None:
            if user.legacy_verbs is None:
                self.cluster.authz.check(user, Attributes(verb="get", path=path.rstrip("/") or "/"))
            await respond(send, 200, encode(document))
            return
        route = parse_path(path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind = self.registry.lookup(route.group, route.version, route.plural)
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.namespace is not None and not kind.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        body = await read_body(receive) if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        if reviews.is_review(kind, route):
            await reviews.serve(self.cluster, send, method, kind, route, user, body, headers)
            return
        await self._resource(send, receive, scope, method, kind, route, query, headers, body, user)

    def _discovery(self, path: str) -> dict[str, Any] | None:
        parts = path.strip("/").split("/")
        if path.rstrip("/") == "/version":
            return discovery.version(self.cluster.config.kube_version)
        if parts == ["api"]:
            return discovery.api_versions()
        if parts == ["openapi", "v3"]:
            return discovery.openapi_root(self.registry)
        if parts[:2] == ["openapi", "v3"] and len(parts) in (4, 5):
            gv = parts[2:]
            group, version = ("", gv[1]) if gv[0] == "api" else (gv[1], gv[-1])
            if len(gv) == (2 if gv[0] == "api" else 3) and gv[0] in ("api", "apis"):
                return discovery.openapi_group_version(
                    self.registry,
                    group,
                    version,
                    self.cluster.config.kube_version,
                    self.cluster.crds.schema_of,
                )
        if parts == ["apis"]:
            return discovery.api_groups(self.registry)
        if len(parts) == 2 and parts[0] == "api":
            return discovery.resource_list(self.registry, "", parts[1])
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.api_group(self.registry, parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            return discovery.resource_list(self.registry, parts[1], parts[2])
        return None

    # -- resources -----------------------------------------------------------------------

    async def _resource(
        self,
        send: Send,
        receive: Receive,
        scope: Scope,
        method: str,
        kind: Kind,
        route: Route,
        query: Query,
        headers: dict[str, str],
        body: bytes,
        user: Identity,
    ) -> None:
        ns = route.namespace if kind.namespaced else None
        sub = route.subresource
        if (
            sub is not None
            and sub != "status"
            and sub not in kind.extra_subresources
            and not (kind.kind == "Namespace" and sub == "finalize")
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = verb_of(method, route, query)
        # As the real request info: a namespace's own path is "in" that namespace, so a
        # RoleBinding there may grant reading it.
        scope_ns = route.name if kind.kind == "Namespace" and route.name else ns
        attrs = Attributes(
            verb, kind.group, kind.plural, sub or "", route.name or "", scope_ns or ""
        )
        self.cluster.authz.check(user, attrs)
        if sub in ("log", "proxy", "binding"):
            assert route.name is not None
            await podaccess.serve(
                self.cluster,
                send,
                receive,
                method,
                sub,
                ns or "default",
                route.name,
                route.rest,
                query,
                headers,
                body,
            )
            return
        writes = ("create", "update", "patch", "delete", "deletecollection")
        writer = fieldmanager.Writer(
            fieldmanager.manager_of(query.get("fieldManager"), headers.get("user-agent", "")),
            "Update",
            _sub(sub),
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(fieldmanager.writing(writer))
            if verb in writes and dry_run(verb, query, body):
                stack.enter_context(self.store.dry_run())
            await self._resource_verb(send, receive, verb, kind, ns, route, query, headers, body)

    async def _resource_verb(
        self,
        send: Send,
        receive: Receive,
        verb: str,
        kind: Kind,
        ns: str | None,
        route: Route,
        query: Query,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        if verb in ("create", "update", "patch", "delete"):
            await self._write(send, verb, kind, ns, route, query, headers, body)
        elif verb == "watch":
            await self._watch(send, receive, kind, ns, route.name, query)
        elif verb == "list":
            await self._list(send, kind, ns, query, headers)
        elif verb == "get":
            assert route.name is not None
            entry = self.store.entry(kind, ns, route.name)
            if _wants_table(headers):
                await respond(send, 200, encode(discovery.table(kind, [entry.obj], {})))
            else:
                await respond(send, 200, _raw(kind, entry))
        elif verb == "deletecollection":
            predicate = combine(
                label_predicate(query.get("labelSelector")),
                field_predicate(query.get("fieldSelector"), kind),
            )
            items = []
            for entry in list(self.store.scan(kind, ns, predicate)):
                meta = entry.obj["metadata"]
                with contextlib.suppress(ApiError):
                    items.append(self.store.delete(kind, meta.get("namespace"), meta["name"]))
            await respond(
                send,
                200,
                encode(
                    {
                        "kind": kind.list_kind,
                        "apiVersion": kind.api_version,
                        "metadata": {},
                        "items": items,
                    }
                ),
            )

    async def _write(
        self,
        send: Send,
        verb: str,
        kind: Kind,
        ns: str | None,
        route: Route,
        query: Query,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        sub = route.subresource
        if verb == "create":
            obj = object_of(body, kind, headers)
            created = self.store.create(kind, obj, ns)
            await respond(send, 201, encode(created))
        elif verb == "update":
            obj = object_of(body, kind, headers)
            stored = self.store.update(
                kind, obj, subresource=_sub(sub), namespace=ns, name=route.name
            )
            await respond(send, 200, encode(stored))
        elif verb == "patch":
            assert route.name is not None
            await self._patch(send, kind, ns, route.name, _sub(sub), query, headers, body)
        elif verb == "delete":
            assert route.name is not None
            options = delete_options(body, query)
            deleted = self.store.delete(kind, ns, route.name, **options)
            still = self.store.find(kind, ns, route.name) is not None
            code = 202 if still and options.get("propagation") == "Foreground" else 200
            await respond(send, code, encode(deleted))

    async def _list(
        self, send: Send, kind: Kind, ns: str | None, query: Query, headers: dict[str, str]
    ) -> None:
        predicate = combine(
            label_predicate(query.get("labelSelector")),
            field_predicate(query.get("fieldSelector"), kind),
        )
        result = self.store.list(kind, ns, predicate, query.int("limit"), query.get("continue"))
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        if _wants_table(headers):
            table = discovery.table(kind, [e.obj for e in result.items], meta)
            await respond(send, 200, encode(table))
            return
        head = encode({"kind": kind.list_kind, "apiVersion": kind.api_version, "metadata": meta})
        body = b"".join(
            (head[:-1], b',"items":[', b",".join(_raw(kind, e) for e in result.items), b"]}")
        )
        await respond(send, 200, body)

    async def _patch(
        self,
        send: Send,
        kind: Kind,
        ns: str | None,
        name: str,
        subresource: str | None,
        query: Query,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        content_type = headers.get("content-type", "")
        if kind.custom and content_type.startswith(patching.STRATEGIC_PATCH):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not "
                "supported for custom resources; use a JSON merge patch",
            )
        patch = decode(body, content_type)
        found = self.store.find(kind, ns, name)
        if content_type.startswith(patching.APPLY_PATCH):
            code, applied = fieldmanager.serve_apply(
                self.store,
                kind,
                ns,
                name,
                subresource,
                query.get("fieldManager"),
                query.flag("force"),
                patch,
            )
            await respond(send, code, encode(applied))
            return
        if found is None:
            self.store.entry(kind, ns, name)  # raises the 404
            return
        patched = patching.apply(content_type, found.obj, patch)
        if not isinstance(patched, dict):
            raise bad_request("a patch must produce an object")
        stored = self.store.update(kind, patched, subresource=subresource, namespace=ns, name=name)
        await respond(send, 200, encode(stored))

    async def _watch(
        self,
        send: Send,
        receive: Receive,
        kind: Kind,
        ns: str | None,
        name: str | None,
        query: Query,
    ) -> None:
        predicate = combine(
            label_predicate(query.get("labelSelector")),
            field_predicate(query.get("fieldSelector"), kind),
            field_predicate(f"metadata.name={name}", kind) if name else None,
        )
        timeout = float(query.int("timeoutSeconds") or WATCH_TIMEOUT)
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-cache, private"),
            ],
        }
        try:
            watcher = self.store.watch(
                kind,
                ns,
                predicate,
                query.get("resourceVersion"),
                bookmarks=query.flag("allowWatchBookmarks"),
                send_initial=query.flag("sendInitialEvents"),
            )
        except ApiError as error:
            if error.code != 410:
                raise
            # Too old: a real server answers 200 and sends the 410 as an ERROR event.
            await send(start)
            event = encode({"type": "ERROR", "object": error.status()}) + b"\n"
            await send({"type": "http.response.body", "body": event, "more_body": False})
            return
        await send(start)
        disconnected = asyncio.create_task(_disconnect(receive))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                getter = asyncio.ensure_future(watcher.queue.get())
                done, _ = await asyncio.wait(
                    {getter, disconnected},
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter not in done:
                    getter.cancel()
                    break
                items = [getter.result()]
                while not watcher.queue.empty() and len(items) < 256:
                    items.append(watcher.queue.get_nowait())
                chunk = b"".join(_event_line(kind, item) for item in items if item is not None)
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if None in items:
                    break
        finally:
            self.store.unwatch(watcher)
            disconnected.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- simulator controls --------------------------------------------------------------

    async def _sim(self, send: Send, receive: Receive, method: str, path: str) -> None:
        faults = self.cluster.faults
        if path == "/sim/faults":
            if method == "PUT":
                faults.update(json.loads(await read_body(receive) or b"{}"))
            await respond(send, 200, encode(faults.describe()))
        elif path == "/sim/watches" and method == "DELETE":
            await respond(send, 200, encode({"dropped": self.store.drop_watches()}))
        elif path.startswith("/sim/pods/") and path.endswith("/kill") and method == "POST":
            _, _, _, namespace, name, _ = path.split("/")
            kubelet = self.cluster.controllers.get("kubelet")
            if kubelet is None:
                raise bad_request("the kubelet is switched off")
            await kubelet.kill(namespace, name)
            await respond(send, 200, encode({"killed": f"{namespace}/{name}"}))
        else:
            raise ApiError(404, "NotFound", f"no simulator control at {method} {path}")


def _fault_error(code: int, retry_after: int) -> ApiError:
    if code == 429:
        return ApiError(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
            retry_after=retry_after,
        )
    reason = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(code, "Unknown")
    return ApiError(code, reason, f"injected fault: the server answered {code}")


def _sub(subresource: str | None) -> str | None:
    return "status" if subresource == "status" else None


def _wants_table(headers: dict[str, str]) -> bool:
    return "as=Table" in headers.get("accept", "")


def _raw(kind: Kind, entry: Entry) -> bytes:
    if entry.obj.get("apiVersion") == kind.api_version:
        return entry.raw
    return encode({**entry.obj, "apiVersion": kind.api_version})


def _event_line(kind: Kind, item: tuple[str, Entry | int]) -> bytes:
    event_type, payload = item
    if isinstance(payload, int):
        bookmark: dict[str, Any] = {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(payload)},
        }
        if event_type == "INITIAL_END":
            bookmark["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
        return b'{"type":"BOOKMARK","object":' + encode(bookmark) + b"}\n"
    return b'{"type":"' + event_type.encode() + b'","object":' + _raw(kind, payload) + b"}\n"


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Server:
    """A running uvicorn serving one cluster; `url` and `ca_data` go into kubeconfigs.

    `tls_directory` holds the throwaway CA and server certificate; it belongs to this
    server alone (kubeconfigs carry the CA inline), so `close` removes it once uvicorn has
    stopped using the key: otherwise every cluster leaves one behind in the temp directory.
    """

    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        url: str,
        ca_data: str | None,
        cert: certs.ServerCert | None,
        tls_directory: Path | None = None,
    ) -> None:
        self._server = server
        self._task = task
        self.url = url
        self.ca_data = ca_data
        self.cert = cert
        self.tls_directory = tls_directory

    async def close(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, timeout=5)
        if self.tls_directory is not None:
            shutil.rmtree(self.tls_directory, ignore_errors=True)
            self.tls_directory = None


async def serve(cluster: Any) -> Server:
    config = cluster.config
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, a response written as headers then
    # body waits out the client's delayed ACK (~40 ms per request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((config.host, config.port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    cert = None
    directory: Path | None = None
    options: dict[str, Any] = {}
    try:
        if config.tls:
            directory = Path(tempfile.mkdtemp(prefix="hoist-kube-tls-"))
            cert = certs.issue(directory, [config.host, "localhost"], "hoist-kube-apiserver")
            options = {"ssl_certfile": str(cert.cert_file), "ssl_keyfile": str(cert.key_file)}
        return await _start(cluster, sock, port, cert, directory, options)
    except BaseException:
        # A server that never started has no `close` to remove its certificates.
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise


async def _start(
    cluster: Any,
    sock: socket.socket,
    port: int,
    cert: certs.ServerCert | None,
    directory: Path | None,
    options: dict[str, Any],
) -> Server:
    """Run uvicorn on `sock` and wait until it accepts connections."""
    import base64

    config = cluster.config
    uv_config = uvicorn.Config(
        ApiServer(cluster),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_keep_alive=120,
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(uv_config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="sim-kube-apiserver")
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    scheme = "https" if config.tls else "http"
    ca_data = base64.b64encode(cert.ca_pem.encode()).decode() if cert else None
    return Server(server, task, f"{scheme}://{config.host}:{port}", ca_data, cert, directory)
