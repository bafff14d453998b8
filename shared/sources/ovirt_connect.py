"""Talking to one oVirt engine through ovirtsdk4: TLS, SSO, a pool of connections, errors.

ovirtsdk4 is blocking (pycurl) and one ``Connection`` serves one request at a time (it holds
a lock around its curl handle), so ``EngineClient`` keeps a small pool of connections that
share one SSO token, and runs every SDK call through the provider's ``Calls`` (the bounded
thread pool): the event loop never waits on the engine.

TLS is decided before the SDK ever connects (``check_tls``: precise reasons, the
certificate attached) and then handed to pycurl as files:

- ``cacert`` -> ``ca_file`` (chain and host name verified by libcurl);
- ``fingerprint`` without ``cacert`` -> ``check_tls`` verified the pin, and the very
  certificate it saw becomes ``ca_file``. libcurl (7.68+ with OpenSSL) accepts a partial
  chain, so pycurl then trusts exactly that leaf certificate and nothing else: a server that
  changes its certificate between the check and a later call fails verification instead of
  being trusted. The compromise: libcurl still checks the host name against that
  certificate, so a pinned certificate that does not name the host in the URL is refused
  (reported as ``TLS_UNTRUSTED`` with the certificate; use the name it carries, or a CA);
- ``insecureSkipVerify`` -> ``insecure=True``, only when the user set it.

Failures become ``ConnectionProblem`` reasons; a TLS failure of a later call is checked
again with ``check_tls`` so a renewed certificate reads ``TLS_CHANGED``, not a curl code.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pycurl

from shared.populator.trust import FlagError
from shared.sources.blocking import Calls
from shared.sources.problems import ConnectionProblem, Reason, check_tls, host_port
from shared.tls import CertificateInfo, TrustOptions

T = TypeVar("T")

API_PATH = "/ovirt-engine/api"
MIN_MAJOR = 4
# curl error codes that mean the TLS handshake or the certificate failed
_TLS_CODES = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91})
_UNREACHABLE_CODES = frozenset({5, 6, 7, 52, 55, 56})  # proxy/host resolve, connect, reset


#: How ovirtsdk4 reports an answer that is not XML/JSON (it gives no HTTP status then).
_NOT_API_CONTENT = "isn't the expected"
_MULTI_ERROR = re.compile(r"Failed to read response: \[\(<[^>]*>, (\d+),")


def _curl_code(exc: BaseException) -> int | None:
    """The curl error code behind an SDK error: the SDK re-raises pycurl's error as its own,
    or (for a failed request of its multi handle) puts curl's error list in its message."""
    for cause in (exc.__cause__, exc.__context__):
        if isinstance(cause, pycurl.error) and cause.args:
            code = cause.args[0]
            return code if isinstance(code, int) else None
    match = _MULTI_ERROR.search(str(exc))
    return int(match.group(1)) if match else None


def problem_from(exc: Exception, where: str) -> ConnectionProblem:
    """An SDK error as a reason; ``where`` names the engine for the message."""
    if isinstance(exc, ConnectionProblem):
        return exc
    text = str(exc)
    if isinstance(exc, sdk.AuthError):
        code = getattr(exc, "code", None)
        if code == 403:
            return ConnectionProblem(
                Reason.PERMISSION_DENIED,
                f"{where} refused access to the API ({text}); give the user the role it needs",
            )
        return ConnectionProblem(
            Reason.AUTH_REFUSED,
            f"{where} refused the credentials ({text}); check the user and password",
        )
    if isinstance(exc, sdk.TimeoutError):
        return ConnectionProblem(Reason.TIMEOUT, f"{where} did not answer in time ({text})")
    if isinstance(exc, sdk.NotFoundError):
        return ConnectionProblem(
            Reason.NOT_AN_API, f"{where} answered 404: this is not an oVirt engine API ({text})"
        )
    curl = _curl_code(exc)
    if isinstance(exc, sdk.ConnectionError) or curl in _UNREACHABLE_CODES:
        return ConnectionProblem(Reason.HOST_UNREACHABLE, f"cannot reach {where}: {text}")
    if curl in _TLS_CODES:
        return ConnectionProblem(Reason.TLS_UNTRUSTED, f"TLS with {where} failed: {text}")
    if curl == pycurl.E_OPERATION_TIMEDOUT:
        return ConnectionProblem(Reason.TIMEOUT, f"{where} did not answer in time ({text})")
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code >= 500:
        return ConnectionProblem(Reason.SERVER_ERROR, f"{where} failed a request: {text}")
    if isinstance(exc, sdk.Error) and curl is None:
        # content types that are not XML/JSON, XML of another shape: not the engine
        return ConnectionProblem(
            Reason.NOT_AN_API, f"{where} does not answer as an oVirt engine API ({text})"
        )
    return ConnectionProblem(Reason.SERVER_ERROR, f"{where} failed a request: {text}")


class EngineClient:
    """One engine's connections (sharing an SSO token) and its TLS files.

    ``open()`` checks TLS, logs in and reads the API root; ``run(fn)`` runs ``fn(connection)``
    in the thread pool with a connection of its own (at most ``size`` at once).
    """

    def __init__(
        self,
        url: str,
        secret: Mapping[str, str],
        calls: Calls,
        *,
        connect_timeout: float,
        call_timeout: float,
        size: int,
    ) -> None:
        self.url = url.strip().rstrip("/")
        self.user = (secret.get("user") or "").strip()
        self._password = secret.get("password") or ""
        self._secret = secret
        self.calls = calls
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.size = max(1, size)
        host, port = host_port(self.url)
        self.where = f"the engine at {host}:{port}"
        self.trust: TrustOptions | None = None
        self.certificate: CertificateInfo | None = None
        self._dir: Path | None = None
        self._tls: dict[str, Any] = {}
        self._token: str | None = None
        self._login: sdk.Connection | None = None
        self._idle: asyncio.Queue[sdk.Connection] = asyncio.Queue()
        self._all: list[sdk.Connection] = []
        self._opened = False

    @property
    def opened(self) -> bool:
        return self._opened

    def _trust(self) -> TrustOptions:
        try:
            return TrustOptions.from_secret(self._secret)
        except ValueError as exc:
            what = "insecureSkipVerify" if isinstance(exc, FlagError) else "the pinned fingerprint"
            raise ConnectionProblem(Reason.TLS_UNTRUSTED, f"{what}: {exc}") from None

    def _tls_files(self, trust: TrustOptions, cert: CertificateInfo | None) -> dict[str, Any]:
        """ovirtsdk4's TLS arguments for ``trust`` (files in a private directory)."""
        if cert is None:  # plain http
            return {}
        if trust.insecure and not trust.fingerprint and not trust.ca_pem:
            return {"insecure": True}
        pem = trust.ca_pem if trust.ca_pem else (cert.pem if trust.fingerprint else None)
        if pem is None:
            return {}  # the system CA store, which check_tls verified against
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hoist-ovirt-"))
        path = self._dir / "trusted.pem"
        path.write_text(pem if pem.endswith("\n") else pem + "\n")
        return {"ca_file": str(path)}

    def _connection(self, timeout: float, token: str | None) -> sdk.Connection:
        return sdk.Connection(
            url=self.url,
            username=self.user,
            password=self._password,
            token=token,
            timeout=math.ceil(timeout),
            **self._tls,
        )

    async def open(self) -> dict[str, Any]:
        """TLS check, SSO login, the API root: the facts a connection test shows."""
        await self.close()
        self.trust = self._trust()
        self.certificate = await check_tls(self.url, self.trust, self.connect_timeout)
        self._tls = self._tls_files(self.trust, self.certificate)
        first = self._connection(self.connect_timeout, None)
        self._login = first  # owns the token: logging it out at close() ends the session

        def login() -> tuple[str, Any]:
            token = first.authenticate()
            return token, first.system_service().get()

        try:
            token, api = await self.calls(login)
        except Exception as exc:
            raise await self._explain(exc) from None
        self._token = token
        if not isinstance(api, types.Api):
            raise ConnectionProblem(
                Reason.NOT_AN_API,
                f"{self.url} answers, but with a {type(api).__name__}, not the engine's API root",
            )
        version = api.product_info.version if api.product_info else None
        major = version.major if version is not None else None
        full = (version.full_version if version is not None else None) or (
            f"{major}.{version.minor}" if version is not None else "unknown"
        )
        if major is None or major < MIN_MAJOR:
            raise ConnectionProblem(
                Reason.API_UNSUPPORTED,
                f"{self.where} runs oVirt {full}; Hoist needs the version 4 API (oVirt 4.0 or "
                "newer): upgrade the engine",
            )
        # the login connection keeps its short timeout: calls get connections of their own
        self._opened = True
        facts: dict[str, Any] = {
            "product": api.product_info.name if api.product_info else "oVirt Engine",
            "version": full,
            # Numbers as well as the text: the planner compares them (warm migration needs
            # 4.4's incremental backup) and ``full_version`` is free text such as
            # "4.5.7-1.el8".
            "apiVersion": {"major": major, "minor": version.minor if version else None},
            "tls": self.trust.describe() if self.certificate else "none (http)",
        }
        if self.certificate is not None:
            facts["certificate"] = {
                "sha256Fingerprint": self.certificate.sha256,
                "sha1Fingerprint": self.certificate.sha1,
                "subject": self.certificate.subject,
                "notAfter": self.certificate.not_after.isoformat(),
            }
        return facts

    async def _explain(self, exc: Exception) -> ConnectionProblem:
        """A precise reason: for a TLS failure, what the certificate looks like now; for an
        answer that is not the API's, whether it was the web server's 5xx page."""
        problem = problem_from(exc, self.where)
        if problem.reason == Reason.NOT_AN_API and _NOT_API_CONTENT in str(exc):
            status = await self._status()
            if status is not None and status >= 500:
                # httpd answers for a stopped engine (maintenance, an upgrade, a restart);
                # the SDK only says the page is not XML, so the status is read here
                return ConnectionProblem(
                    Reason.SERVER_ERROR,
                    f"{self.where} answered {status} with its web server's page instead of "
                    "the API: the engine is down (maintenance, an upgrade or a restart); "
                    "retrying until it is back",
                )
        if problem.reason == Reason.TLS_UNTRUSTED and self.trust is not None:
            try:
                cert = await check_tls(self.url, self.trust, self.connect_timeout)
            except ConnectionProblem as precise:
                return precise
            problem.certificate = cert
            if cert is not None and self.trust.fingerprint and not self.trust.ca_pem:
                problem.message = (
                    f"{self.where} presents the pinned certificate, but it does not name the "
                    f"host of the URL ({', '.join(cert.dns_names + cert.ip_addresses) or '-'}); "
                    "use a host name the certificate carries, or give its CA"
                )
        return problem

    async def _status(self) -> int | None:
        """The HTTP status of the API root without credentials (None if unreachable)."""
        verify: ssl.SSLContext | bool = self.trust.context() if self.trust else False
        try:
            async with httpx.AsyncClient(verify=verify, timeout=self.connect_timeout) as http:
                return (await http.get(f"{self.url}/")).status_code
        except (httpx.HTTPError, OSError, ssl.SSLError):
            return None

    async def run(self, fn: Callable[[sdk.Connection], T]) -> T:
        """``fn(connection)`` in the thread pool; SDK errors become ``ConnectionProblem``."""
        if not self._opened:
            await self.open()
        if self._idle.empty() and len(self._all) < self.size:
            conn = self._connection(self.call_timeout, self._token)
            self._all.append(conn)
        else:
            conn = await self._idle.get()
        try:
            return await self.calls(fn, conn)
        except ConnectionProblem:
            raise
        except Exception as exc:
            raise await self._explain(exc) from None
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Log out (the shared token, and any a connection renewed) and remove the TLS files."""
        conns, self._all = self._all, []
        login, self._login = self._login, None
        shared, self._token = self._token, None
        self._idle = asyncio.Queue()
        self._opened = False

        def logout() -> None:
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close(logout=conn.authenticate() != shared)
            if login is not None:
                with contextlib.suppress(Exception):
                    login.close(logout=shared is not None)

        if conns or login is not None:
            with contextlib.suppress(Exception):
                await self.calls(logout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
