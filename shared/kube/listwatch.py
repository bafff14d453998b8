"""Keeping a view of one kind of Kubernetes object current: list, then watch, forever.

Why one loop for every service: the controller, the inventory and progress each had their
own, and each had learnt a different part of what a watch needs. ``ListWatch`` does it all:

- it lists (page by page when asked), hands the list over (``on_list``: the complete state,
  deletions included by absence), then watches from the list's resourceVersion and hands
  over each change (``on_event``);
- a watch the server ends cleanly (its ``timeoutSeconds``) resumes from the last version
  seen, bookmarks included, without listing again;
- ``410 Gone``, as an HTTP status or as an ``ERROR`` event (the version fell out of the
  server's history), lists again at once: what the watch missed is settled by the list;
- any other failure (a refused request, a broken connection, a line that is not JSON)
  lists again after a backoff that doubles up to its bound and resets after a watch that
  ran to its end (or a 410);
- ``optional=True``: a kind the server does not serve (404, its CRD not installed) is empty
  and complete (``on_list([])`` once, when it goes missing) and is listed again every
  ``poll_seconds`` until it appears.

``synced`` is set after the first list; ``problem`` says why the view may be stale (None
when it is not); ``relists`` counts lists. ``on_problem(exc)`` is told when the kind cannot
be read (a list failed, or the server refused the watch) and ``on_problem(None)`` when it
can again; a watch connection that merely broke is not a problem of the kind.

The stream is read with ``ApiClient.call_api(..., _preload_content=False)`` rather than
``kubernetes_asyncio.watch.Watch``, which opens an aiohttp session of its own per instance
that nothing closes, retries a 410 once from the same (still too old) version, and builds
model objects that callers would only turn back into dicts.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from shared.kube.calls import Kube, Obj, Resource, Timeout, read_body, status_message

__all__ = ["ListWatch"]

OnList = Callable[[list[Obj]], Awaitable[None] | None]
OnEvent = Callable[[str, Obj], Awaitable[None] | None]
OnProblem = Callable[[BaseException | None], None]


class _Gone(Exception):
    """The watch cannot continue from its resourceVersion: list again, now."""


class ListWatch:
    """One list-and-watch loop over ``res`` (in ``namespace``, or all of them), of the
    objects ``selector`` picks. ``name`` names it in logs, in ``log`` (the owner's)."""

    def __init__(
        self,
        kube: Kube,
        res: Resource,
        *,
        name: str,
        on_list: OnList,
        on_event: OnEvent,
        on_problem: OnProblem | None = None,
        namespace: str | None = None,
        selector: str | None = None,
        item_kind: str = "",
        optional: bool = False,
        poll_seconds: float = 30.0,
        watch_seconds: int = 300,
        backoff: tuple[float, float] = (1.0, 30.0),
        page: int | None = None,
        list_timeout: Timeout = None,
        watch_timeout: Timeout = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.kube = kube
        self.res = res
        self.name = name
        self.on_list = on_list
        self.on_event = on_event
        self.on_problem = on_problem
        self.namespace = namespace
        self.selector = selector
        self.item_kind = item_kind
        self.optional = optional
        self.poll_seconds = poll_seconds
        self.watch_seconds = watch_seconds
        self.backoff = backoff
        self.page = page
        self.list_timeout = list_timeout
        # The server ends the watch after watch_seconds; a silent connection for longer than
        # that (and bookmarks' period) is a dead one.
        self.watch_timeout = watch_timeout or aiohttp.ClientTimeout(sock_read=watch_seconds + 30)
        self.log = log or logging.getLogger("hoist.kube.watch")
        self.synced = asyncio.Event()
        self.problem: str | None = "not listed yet"
        self.relists = 0
        self.missing = False

    async def run(self, resource_version: str | None = None, *, missing: bool = False) -> None:
        """Watch from ``resource_version`` (None: list first), forever. ``missing``: the
        caller found the (optional) kind not served and said so; a 404 is not news then."""
        version = resource_version
        self.missing = missing
        first, most = self.backoff
        wait, backoff = 0.0, first
        while True:
            listing = version is None
            try:
                if version is None:
                    if wait > 0:
                        await asyncio.sleep(wait)
                    version = await self._relist()
                    if version is None:  # an optional kind, not served
                        wait = self.poll_seconds
                        continue
                    listing = False
                version = await self._watch(version)
                wait, backoff = 0.0, first
                self.problem = None
            except asyncio.CancelledError:
                raise
            except _Gone:
                self.log.info("the %s watch expired (410 Gone): relisting", self.name)
                version, wait, backoff = None, 0.0, first
            except Exception as exc:
                version, wait, backoff = None, min(backoff, most), min(backoff * 2, most)
                self.problem = _describe(exc)
                if listing or isinstance(exc, ApiException):
                    self._tell(exc)
                self.log.warning(
                    "the %s %s failed (%s); relisting in %.0f s",
                    self.name,
                    "list" if listing else "watch",
                    self.problem,
                    wait,
                )

    async def _relist(self) -> str | None:
        """List into ``on_list``; the version to watch from (None: an optional kind that is
        not served)."""
        self.relists += 1
        try:
            items, version = await self.kube.list(
                self.res,
                self.namespace,
                selector=self.selector,
                page=self.page,
                timeout=self.list_timeout,
            )
        except ApiException as exc:
            if exc.status != 404 or not self.optional:
                raise
            self._tell(None)
            if not self.missing:
                self.missing = True
                await _call(self.on_list, [])
            self._synced()
            return None
        if self.item_kind:
            for item in items:  # list items carry no kind; handlers may want it
                item.setdefault("kind", self.item_kind)
        self.missing = False
        self._tell(None)
        await _call(self.on_list, items)
        self._synced()
        return version

    async def _watch(self, version: str) -> str:
        """Hand over events from ``version`` until the server ends the watch; the version to
        resume from. ``_Gone`` for a 410, ``ApiException`` for another refusal."""
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_seconds)),
        ]
        if self.selector:
            query.append(("labelSelector", self.selector))
        response = await self.kube.request(
            "GET", self.res.path(self.namespace), query=query, timeout=self.watch_timeout
        )
        if response.status == 410 or (response.status == 404 and self.optional):
            response.release()
            raise _Gone  # too old, or the CRD went away: the list tells which
        if response.status != 200:
            await read_body(response)  # raises the ApiException
        self._tell(None)
        try:
            async for line in response.content:
                if line.strip():
                    version = await self._event(json.loads(line), version)
        finally:
            response.release()
        return version

    async def _event(self, event: object, version: str) -> str:
        if not isinstance(event, dict):
            raise ValueError(f"a watch event that is not an object: {event!r:.80}")
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            error = ApiException(status=obj.get("code") or 500, reason=obj.get("reason"))
            error.body = json.dumps(obj)
            raise error
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            await _call(self.on_event, kind, obj)
        return version

    def _synced(self) -> None:
        self.problem = None
        self.synced.set()

    def _tell(self, exc: BaseException | None) -> None:
        if self.on_problem is not None:
            self.on_problem(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        detail = status_message(exc)
        return f"the API server answered {exc.status}{': ' + detail if detail else ''}"
    return repr(exc)


async def _call(handler: Callable[..., Awaitable[None] | None], *args: object) -> None:
    result = handler(*args)
    if inspect.isawaitable(result):
        await result
