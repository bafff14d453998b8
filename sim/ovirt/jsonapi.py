"""The engine's JSON (``Accept: application/json``): the same documents the XML API renders.

The engine serializes its JAXB objects with Jackson, so its JSON follows the XML element
tree (oVirt REST API guide, "JSON representation"; clients such as Oracle's OLVM bindings
of the engine's output read it so):

* a single object is a plain JSON object (no wrapper); a collection is one key, the
  singular element name, holding an array: ``{"vm": [{...}, {...}]}``, and an empty
  collection is ``{}`` (JAXB leaves the list null, and null members are left out);
* attributes (``id``, ``href``, ``rel``) are plain keys; a reference is an object
  ``{"href": .., "id": ..}``; ``link`` is always an array of ``{"href", "rel"}``;
* nested lists keep their wrapper: ``"nics": {"nic": [...]}``;
* scalar values are strings, numbers and booleans included (``"memory": "1073741824"``,
  ``"stateless": "false"``), but dates are epoch milliseconds (Jackson's default for
  ``XMLGregorianCalendar``): ``"time": 1519134588467``;
* faults too: ``{"reason": .., "detail": ..}``.

Converting the XML the handlers already render keeps both representations the same
documents by construction; ``JsonNegotiation`` does it for every response of the API.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree as ET

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON = "application/json"
#: Elements whose text is a date: Jackson writes those as epoch milliseconds.
DATES = frozenset(
    ("time", "date", "creation_date", "modification_date", "creation_time", "start_time")
)
#: Elements that are lists whatever their parent is called.
ALWAYS_LISTS = frozenset(("link",))
#: Nested list wrappers the documents hold (``<nics/>`` when a VM has none is ``{}``).
WRAPPERS = frozenset(("nics", "disk_attachments", "disks", "storage_domains", "data_centers"))


def _millis(text: str) -> int | str:
    try:
        return round(datetime.datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return text


def _is_list_wrapper(el: ET.Element) -> bool:
    """``<nics><nic/>..</nics>``: an element whose children all have its tag minus the
    ``s`` (every collection of the API is named so)."""
    tags = {child.tag for child in el}
    return len(tags) == 1 and f"{next(iter(tags))}s" == el.tag


def _value(el: ET.Element) -> Any:
    if len(el) == 0 and not el.attrib:
        text = el.text or ""
        if el.tag in DATES:
            return _millis(text)
        return {} if el.tag in WRAPPERS else text
    return _object(el)


def _object(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = dict(el.attrib)
    lists = _is_list_wrapper(el)
    for child in el:
        value = _value(child)
        if lists or child.tag in ALWAYS_LISTS:
            out.setdefault(child.tag, []).append(value)
        elif child.tag in out:  # repeated but not a list wrapper: keep every value
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    return out


def to_json(xml: bytes) -> bytes:
    """The JSON of one XML document the API rendered."""
    root = ET.fromstring(xml)  # noqa: S314 (the simulator's own output)
    return json.dumps(_object(root), indent=2).encode()


def _ranges(accept: str) -> Iterable[tuple[str, float]]:
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            yield media.lower(), q


def _quality(ranges: list[tuple[str, float]], media: str) -> tuple[float, int]:
    """The q of the most specific range matching ``media``, and how specific it was."""
    kind = media.split("/")[0]
    best: tuple[int, float] | None = None
    for candidate, q in ranges:
        specificity = {media: 2, f"{kind}/*": 1, "*/*": 0}.get(candidate)
        if specificity is not None and (best is None or specificity > best[0]):
            best = (specificity, q)
    return (0.0, -1) if best is None else (best[1], best[0])


def wants_json(accept: str) -> bool:
    """Whether the engine would answer JSON: JSON is preferred (by q, then by how specific
    the matching range is) over XML; on a tie, or with no ``Accept``, XML, the default."""
    ranges = list(_ranges(accept))
    if not ranges:
        return False
    json_q = _quality(ranges, JSON)
    xml_q = max(_quality(ranges, "application/xml"), _quality(ranges, "text/xml"))
    return json_q[0] > 0 and json_q > xml_q


class JsonNegotiation:
    """ASGI middleware: an XML answer to a request that prefers JSON goes out as JSON.
    Other answers (HTML error pages, plain text, JSON already) pass unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wants_json(Headers(scope=scope).get("accept", "")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def convert(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            payload = bytes(body)
            headers = MutableHeaders(raw=list(start["headers"]))
            if headers.get("content-type", "").startswith("application/xml") and payload:
                payload = to_json(payload)
                headers["content-type"] = JSON
                headers["content-length"] = str(len(payload))
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, convert)
