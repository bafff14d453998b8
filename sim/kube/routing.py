"""Reading a Kubernetes API request (path, query, verb, body) and writing a plain answer.

Kept apart from the handlers so the rules a real API server applies before it looks at any
object (what a URL names, which verb a method and query mean, how bodies and delete options
are decoded, what is a 400 or a 405) read in one place.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml

from sim.kube import protobuf
from sim.kube.errors import ApiError, bad_request
from sim.kube.kinds import Kind

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]


@dataclass
class Route:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    rest: str
    watch_path: bool


def parse_path(path: str) -> Route | None:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = None
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or not rest[0]:
        return None
    return Route(
        group,
        version,
        rest[0],
        namespace,
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
        "/".join(rest[3:]),
        watch_path,
    )


class Query:
    def __init__(self, raw: bytes) -> None:
        self._values = parse_qs(raw.decode("latin-1"), keep_blank_values=True)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))

    def flag(self, name: str) -> bool:
        return (self.get(name) or "").lower() in ("1", "true", "yes")

    def int(self, name: str) -> int | None:
        value = self.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError as exc:
            raise bad_request(f"invalid value for {name}: {value!r}") from exc


def verb_of(method: str, route: Route, query: Query) -> str:
    if method == "GET":
        if route.watch_path or query.flag("watch"):
            return "watch"
        return "get" if route.name else "list"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method not in verbs or (method != "POST" and not route.name):
        raise ApiError(
            405,
            "MethodNotAllowed",
            f"the server does not allow this method on the requested resource ({method})",
        )
    if method == "POST" and route.name and route.subresource not in ("binding", "proxy"):
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource (POST)",
        )
    return verbs[method]


def decode(body: bytes, content_type: str) -> Any:
    if not body:
        raise bad_request("the request body is empty")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc


def object_of(body: bytes, kind: Kind, headers: dict[str, str]) -> dict[str, Any]:
    content_type = headers.get("content-type", "")
    if protobuf.is_protobuf(content_type):
        obj: Any = protobuf.decode_object(body, kind)
    else:
        obj = decode(body, content_type)
    if not isinstance(obj, dict):
        raise bad_request("the body of the request must be an object")
    if obj.get("kind") and obj["kind"] != kind.kind:
        raise bad_request(
            f"the kind in the data ({obj['kind']}) does not match the expected kind ({kind.kind})"
        )
    if obj.get("apiVersion") and obj["apiVersion"] != kind.api_version:
        raise bad_request(
            f"the API version in the data ({obj['apiVersion']}) does not match "
            f"the expected API version ({kind.api_version})"
        )
    return obj


def delete_options(body: bytes, query: Query) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"invalid DeleteOptions: {exc}") from exc
        if isinstance(parsed, dict):
            options = parsed
    propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
    if options.get("orphanDependents") is True:
        propagation = "Orphan"
    if propagation not in (None, "Orphan", "Background", "Foreground"):
        raise bad_request(f'unsupported propagationPolicy "{propagation}"')
    grace = query.int("gracePeriodSeconds")
    if grace is None and options.get("gracePeriodSeconds") is not None:
        grace = int(options["gracePeriodSeconds"])
    return {
        "propagation": propagation,
        "preconditions": options.get("preconditions"),
        "grace_period": grace,
    }


def dry_run(verb: str, query: Query, body: bytes) -> bool:
    """Whether a write asks for ``dryRun=All`` (the query, or a DELETE's DeleteOptions body);
    any other value is refused as the API server's options validation refuses it."""
    values = query.all("dryRun")
    options_kind = {
        "create": "CreateOptions",
        "update": "UpdateOptions",
        "patch": "PatchOptions",
    }.get(verb, "DeleteOptions")
    if verb in ("delete", "deletecollection") and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("dryRun"), list):
            values += [str(v) for v in parsed["dryRun"]]
    values = [v for v in values if v != ""]
    bad = [v for v in values if v != "All"]
    if bad:
        shown = "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
        raise ApiError(
            422,
            "Invalid",
            f'{options_kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: '
            f'{shown}: supported values: "All"',
        )
    return bool(values)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def respond(
    send: Send, code: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = list(headers or [])
    if not any(name == b"content-type" for name, _ in headers):
        headers += JSON
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
