"""The FastAPI application every service is: health, metrics, auth, errors, lifecycle.

Routes:

- ``/healthz``: the process is alive (no dependency checked; a liveness probe must not
  restart a pod because PostgreSQL is down).
- ``/readyz``: NATS (with JetStream) and PostgreSQL answer now and start-up finished; 503
  with the reason of each failing check otherwise.
- ``/metrics``: Prometheus text.
- everything under ``/api/v1``: bearer token required; the service's own routes plus
  ``/api/v1/<service>/{status,deadletters}``; ``/api/v1/<service>/{docs,openapi.json}`` are
  public.

Before anything reads a request's body, ``shared.service.limits.Gate`` checks the token
(under ``/api/v1``) and the body's size (``HOIST_HTTP_MAX_BODY_BYTES``, every route).

Errors are JSON ``{"detail": ...}`` with a precise status (``shared.service.errors``: a route
raises an ``ApiError``); an unexpected exception is logged with its traceback and answered as
a 500 that carries only a request id to quote. Every route's OpenAPI entry declares the
errors it answers (``shared.service.answers``): its own, plus the 401, 413, 422 and 503 the
app answers for any route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from shared import logs
from shared.service import errors, limits, operations
from shared.service.answers import ERRORS, PROTECTED, WITH_BODY, Problems
from shared.service.auth import require_token
from shared.service.runtime import Runtime
from shared.service.spec import ServiceSpec
from shared.settings import HoistSettings

log = logging.getLogger("hoist.http")

REQUESTS = Counter(
    "hoist_http_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
LATENCY = Histogram("hoist_http_request_seconds", "HTTP request latency by route.", ["route"])


def create_app(spec: ServiceSpec, settings: HoistSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(spec, settings)
        app.state.runtime = runtime
        starting = asyncio.create_task(runtime.start(), name="startup")
        try:
            yield
        finally:
            log.info("shutting down: no new work; finishing what is in flight")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await runtime.stop()
            reviews = getattr(app.state, "kube_auth", None)
            if reviews is not None:
                await reviews.close()

    app = FastAPI(
        title=f"Hoist {spec.title}",
        summary=spec.summary,
        version=spec.version,
        lifespan=lifespan,
        docs_url=f"{spec.base}/docs",
        openapi_url=f"{spec.base}/openapi.json",
        redoc_url=None,
        root_path=settings.http.root_path,
    )
    app.state.settings = settings
    app.state.spec = spec

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name, "version": spec.version}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: the failing checks"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = await runtime.checks()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": spec.name, "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    protected = [Depends(require_token)]
    for router in (spec.router, operations.build_router(spec.base)):
        _document_errors(router.routes, PROTECTED)
        app.include_router(router, dependencies=protected)
    _document_errors(app.routes, ())
    errors.install(app)
    _install_request_logging(app)
    # Added last, so outermost: it answers before the request logging reads a JSON body.
    public = {path for path in (app.docs_url, app.openapi_url) if path}
    app.add_middleware(limits.Gate, public=public, record=_record_refusal)
    return app


class Health(BaseModel):
    status: str
    service: str
    version: str


class Readiness(BaseModel):
    status: str = Field(description="ready, or not ready")
    service: str
    checks: dict[str, str] = Field(description="Each dependency: ok, or why not.")


def _document_errors(routes: Sequence[BaseRoute], protected: tuple[int, ...]) -> None:
    """Declare on each route the errors the app answers whatever the route does: the NUL
    refusal's and validation's 422, the gate's 413 for a body; under ``/api/v1`` the gate's
    401 and the 503 of a service starting (``protected``). A route's own declaration of one
    of them wins (it says what it means there)."""
    for route in routes:
        included = getattr(route, "original_router", None)  # a router included in this one
        if isinstance(included, APIRouter):
            _document_errors(included.routes, protected)
        if not isinstance(route, APIRoute):
            continue
        codes = (422, *protected)
        if route.body_field is not None:
            codes += WITH_BODY
        for code in codes:
            route.responses.setdefault(code, ERRORS[code])


def _record_refusal(scope: Scope, status: int, elapsed: float, request_id: str) -> None:
    """What the request logging does for a request the gate refused before reaching it."""
    full = (r for r in scope["app"].router.routes if r.matches(scope)[0] is Match.FULL)
    name = getattr(next(full, None), "path", "unmatched")
    REQUESTS.labels(name, str(status)).inc()
    LATENCY.labels(name).observe(elapsed)
    with logs.bound(request_id=request_id):
        log.info(
            "%s %s -> %d",
            scope["method"],
            scope["path"],
            status,
            extra={"duration_ms": round(elapsed * 1000, 1)},
        )


def _install_request_logging(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.monotonic()
        with logs.bound(request_id=request_id):
            refused = await _refuse_nul(request)
            response = refused or await call_next(request)
            route = request.scope.get("route")
            name = getattr(route, "path", "unmatched")
            elapsed = time.monotonic() - started
            REQUESTS.labels(name, str(response.status_code)).inc()
            LATENCY.labels(name).observe(elapsed)
            if name not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "%s %s -> %d",
                    request.method,
                    request.url.path,
                    response.status_code,
                    extra={"duration_ms": round(elapsed * 1000, 1)},
                )
        response.headers["x-request-id"] = request_id
        return response


# A JSON string escape of NUL that is not itself escaped (``\\u0000`` is a literal backslash).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


async def _refuse_nul(request: Request) -> Response | None:
    """NUL anywhere in a path, query or JSON string: 422 here rather than a 500 from
    PostgreSQL, which refuses NUL in text, deep in whichever handler would store it."""
    where = (
        "path" if "\x00" in request.scope.get("path", "")
        else "query" if b"%00" in request.scope.get("query_string", b"")
        else None
    )  # fmt: skip
    if where is not None:
        problem = {"loc": [where], "type": "value_error",
                   "msg": f"NUL characters are not allowed in the {where}"}  # fmt: skip
        return JSONResponse(Problems(detail=[problem]).model_dump(), status_code=422)
    if (
        request.method in ("POST", "PUT", "PATCH")
        and "json" in request.headers.get("content-type", "")
        and _JSON_NUL.search(await request.body())
    ):
        return JSONResponse(
            {"detail": [{"loc": ["body"], "type": "value_error",
                         "msg": "NUL characters (\\u0000) are not allowed"}]},
            status_code=422,
        )  # fmt: skip
    return None


D = TypeVar("D")


def domain_of(request: Request, kind: type[D], waiting_for: str) -> D:
    """The service's domain (``ServiceSpec.domain``) for a route; 503 with ``Retry-After``
    while the service is still starting (``waiting_for`` says on what)."""
    domain = request.app.state.runtime.domain
    if domain is None:
        raise errors.Unavailable(f"the service is starting (waiting for {waiting_for}); retry", 2)
    if not isinstance(domain, kind):
        raise TypeError(f"the service's domain is a {type(domain).__name__}, not {kind.__name__}")
    return domain


def engine_of(request: Request) -> AsyncEngine:
    """The service's database engine for a read-only route; 503 with ``Retry-After`` until
    start-up finished (PostgreSQL migrated, NATS connected)."""
    runtime = request.app.state.runtime
    if not runtime.started.is_set():
        raise errors.Unavailable(
            "the service is starting (waiting for PostgreSQL or NATS); retry", 2
        )
    engine: AsyncEngine = runtime.engine
    return engine
