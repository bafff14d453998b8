"""The error vocabulary (``shared.errors``) and the API's answers (``shared.service.errors``).

The answers are compared byte for byte, headers included, with what the services' own
``_guarded`` wrappers produced with ``HTTPException`` (each reference below is that code):
switching a service to the shared handlers must not change one byte a client sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from shared import bus
from shared.errors import HoistError, PermanentError, RetryLater
from shared.service import errors
from shared.service.app import create_app, domain_of, engine_of
from shared.sources.problems import PERMANENT, ConnectionProblem, Reason
from shared.tls import CertificateInfo
from tests.conftest import make_settings

# --- shared.errors -----------------------------------------------------------------------------


def test_the_bus_raises_the_shared_errors() -> None:
    assert bus.PermanentError is PermanentError
    assert bus.RetryLater is RetryLater
    later = RetryLater("PVC not bound yet", delay=1.5)
    assert (str(later), later.delay, later.retry_after) == ("PVC not bound yet", 1.5, 1.5)
    assert not later.permanent
    assert later.reason == "RetryLater"
    assert repr(later) == "RetryLater('PVC not bound yet')"
    never = PermanentError("plan references a deleted provider", reason="ProviderDeleted")
    assert never.permanent
    assert never.retry_after is None
    assert (never.reason, never.message) == ("ProviderDeleted", str(never))


def test_info_is_the_payloads_error() -> None:
    info = HoistError("disk locked", reason="DiskLocked", retry_after=10).info()
    assert (info.reason, info.message, info.permanent) == ("DiskLocked", "disk locked", False)
    assert PermanentError("gone").info().permanent


@pytest.mark.parametrize("reason", list(Reason))
def test_a_connection_problem_is_permanent_by_its_reason(reason: Reason) -> None:
    problem = ConnectionProblem(reason, "the server says no")
    assert isinstance(problem, HoistError)
    assert not isinstance(problem, (PermanentError, RetryLater))  # the bus sorts it as before
    assert problem.permanent is (reason in PERMANENT)
    assert problem.permanent is (problem.retry_after is None)
    assert problem.reason is reason
    assert (str(problem), problem.message, problem.certificate) == (
        "the server says no",
        "the server says no",
        None,
    )
    assert problem.info().reason == reason.value


# --- shared.service.errors: the same bytes as before ---------------------------------------

CERT = CertificateInfo(
    sha256="AB:" * 31 + "CD",
    sha1="01:" * 19 + "02",
    subject="CN=engine.example",
    issuer="CN=Ünïcode CA",
    not_before=datetime(2024, 1, 1, tzinfo=UTC),
    not_after=datetime(2034, 1, 1, tzinfo=UTC),
    dns_names=("engine.example",),
    ip_addresses=(),
    self_signed=True,
    pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
)
PROBLEMS: list[errors.Problem] = [
    (["body", "url"], "value_error.provider", "not an http(s) URL"),
    (["body", "credentials", "password"], "missing", "required for oVirt: « mot de passe »"),
]
STARTABLE = [{"field": "vms[0]", "category": "Critical", "message": "the VM is locked"}]


class SecretStoreError(errors.Unavailable):
    """As the inventory's would be: its message with a prefix, 10 s."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 10)

    def detail(self) -> str:
        return f"cannot use Kubernetes Secrets: {self.message}"


class BadCursor(errors.BadQuery):
    """As the planner's would be: a 422."""

    status = 422

    def __init__(self, message: str) -> None:
        super().__init__("cursor", message)


def _with_cert() -> errors.Invalid:
    return errors.Invalid(PROBLEMS[:1], certificate=CERT)


def _cert_reference() -> HTTPException:
    first = {"loc": PROBLEMS[0][0], "type": PROBLEMS[0][1], "msg": PROBLEMS[0][2]}
    return HTTPException(422, [{**first, "certificate": CERT.as_dict()}])


# (the shared error, the HTTPException the service's _guarded raised for it)
CASES: dict[str, tuple[Callable[[], Exception], Callable[[], HTTPException]]] = {
    "planner Invalid": (
        lambda: errors.Invalid(PROBLEMS),
        lambda: HTTPException(422, [{"loc": lc, "type": t, "msg": m} for lc, t, m in PROBLEMS]),
    ),
    "inventory Invalid with a certificate": (_with_cert, _cert_reference),
    "NotStartable": (
        lambda: errors.NotStartable("the plan has critical problems", STARTABLE),
        lambda: HTTPException(
            422, {"message": "the plan has critical problems", "problems": STARTABLE}
        ),
    ),
    "Conflict": (
        lambda: errors.Conflict(["body", "name"], "a plan named 'é' exists"),
        lambda: HTTPException(
            409, [{"loc": ["body", "name"], "type": "conflict", "msg": "a plan named 'é' exists"}]
        ),
    ),
    "NotFound": (
        lambda: errors.NotFound("no plan 'prüfung'"),
        lambda: HTTPException(404, "no plan 'prüfung'"),
    ),
    "PreconditionFailed": (
        lambda: errors.PreconditionFailed("the plan is at revision 7, not 6"),
        lambda: HTTPException(412, "the plan is at revision 7, not 6"),
    ),
    "inventory BadQuery": (
        lambda: errors.BadQuery("sort", "cannot sort by 'size'"),
        lambda: HTTPException(
            400, [{"loc": ["query", "sort"], "type": "value_error", "msg": "cannot sort by 'size'"}]
        ),
    ),
    "planner BadCursor": (
        lambda: BadCursor("not a cursor of this listing"),
        lambda: HTTPException(
            422,
            [
                {
                    "loc": ["query", "cursor"],
                    "type": "value_error",
                    "msg": "not a cursor of this listing",
                }
            ],
        ),
    ),
    "planner InventoryUnavailable": (
        lambda: errors.Unavailable("the inventory cannot be asked right now (timeout); retry", 5),
        lambda: HTTPException(
            503,
            "the inventory cannot be asked right now (timeout); retry",
            headers={"Retry-After": "5"},
        ),
    ),
    "inventory SecretStoreError": (
        lambda: SecretStoreError("the namespace 'hoist' does not exist"),
        lambda: HTTPException(
            503,
            "cannot use Kubernetes Secrets: the namespace 'hoist' does not exist",
            headers={"Retry-After": "10"},
        ),
    ),
}


async def _answer(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get("/x")


def _raising(make: Callable[[], Exception], *, shared: bool) -> FastAPI:
    app = FastAPI()
    if shared:
        errors.install(app)

    @app.get("/x")
    async def route() -> None:
        raise make()

    return app


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_answer_is_byte_identical(case: str) -> None:
    shared, reference = CASES[case]
    ours = await _answer(_raising(shared, shared=True))
    theirs = await _answer(_raising(reference, shared=False))
    assert ours.status_code == theirs.status_code
    assert ours.content == theirs.content
    assert ours.headers.multi_items() == theirs.headers.multi_items()


def test_unavailable_is_a_retry_later() -> None:
    slow = errors.Unavailable("try again", 2.5)
    assert isinstance(slow, RetryLater)
    assert (slow.delay, slow.retry_after, slow.headers) == (2.5, 2.5, {"Retry-After": "3"})
    assert errors.NotFound("x").headers == {}


async def test_unexpected_errors_and_bad_requests() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug; its text must not reach the client")

    @app.get("/n/{n}")
    async def number(n: int) -> int:
        return n

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        crashed = await http.get("/boom")
        bad = await http.get("/n/secret-value")
    assert crashed.status_code == 500
    assert crashed.json() == {
        "detail": "internal error; quote this request id when reporting it",
        "request_id": "",
    }
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": [
            {
                "loc": ["path", "n"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            }
        ]
    }
    assert b"secret-value" not in bad.content


async def test_every_service_app_answers_the_shared_errors() -> None:
    import services.progress

    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    app = create_app(services.progress.SPEC, settings)

    @app.get("/starting")
    async def starting(request: Request) -> None:
        domain_of(request, object, "PostgreSQL or NATS")

    @app.get("/not-started")
    async def not_started(request: Request) -> None:
        engine_of(request)

    reference = FastAPI()

    @reference.get("/starting")
    async def starting_before() -> None:
        raise HTTPException(
            503,
            "the service is starting (waiting for PostgreSQL or NATS); retry",
            headers={"Retry-After": "2"},
        )

    @reference.get("/not-started")
    async def not_started_before() -> None:
        raise HTTPException(
            503,
            "the service is starting (waiting for PostgreSQL or NATS); retry",
            headers={"Retry-After": "2"},
        )

    # What app.state.runtime is before start-up finished.
    app.state.runtime = SimpleNamespace(domain=None, started=asyncio.Event())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    before = httpx.ASGITransport(app=reference, raise_app_exceptions=False)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        httpx.AsyncClient(transport=before, base_url="http://test") as old,
    ):
        for path in ("/starting", "/not-started"):
            ours, theirs = await http.get(path), await old.get(path)
            assert (ours.status_code, ours.content) == (503, theirs.content)
            assert ours.headers["Retry-After"] == "2"
            assert ours.headers["content-type"] == theirs.headers["content-type"]
