"""Why a source provider cannot be used now, and the TLS check made before any SDK connects.

Errors say what happens next: a ``ConnectionProblem`` carries a ``Reason``; temporary
reasons are retried with backoff, permanent ones (``PERMANENT``) wait for a person to fix
the provider (its credentials, its certificate settings, its URL) or the server.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from enum import StrEnum

from shared.errors import HoistError
from shared.tls import CertificateInfo, TrustOptions, fetch_certificate
from shared.urls import endpoint


class Reason(StrEnum):
    AUTH_REFUSED = "AuthRefused"
    PERMISSION_DENIED = "PermissionDenied"
    TLS_UNTRUSTED = "TlsUntrusted"
    TLS_CHANGED = "TlsCertificateChanged"
    HOST_UNREACHABLE = "HostUnreachable"
    TIMEOUT = "Timeout"
    API_UNSUPPORTED = "ApiVersionUnsupported"
    NOT_AN_API = "NotAnApiEndpoint"
    SERVER_ERROR = "ServerError"


# Reasons that retrying cannot fix: the user must change the provider (or the server).
PERMANENT = frozenset(
    {
        Reason.AUTH_REFUSED,
        Reason.PERMISSION_DENIED,
        Reason.TLS_UNTRUSTED,
        Reason.TLS_CHANGED,
        Reason.API_UNSUPPORTED,
        Reason.NOT_AN_API,
    }
)

# Which part of a provider definition a reason points at (the API's error ``loc``).
FIELD_OF = {
    Reason.AUTH_REFUSED: "credentials",
    Reason.PERMISSION_DENIED: "credentials",
    Reason.TLS_UNTRUSTED: "tls",
    Reason.TLS_CHANGED: "tls",
    Reason.HOST_UNREACHABLE: "url",
    Reason.TIMEOUT: "url",
    Reason.API_UNSUPPORTED: "url",
    Reason.NOT_AN_API: "url",
    Reason.SERVER_ERROR: "url",
}


class ConnectionProblem(HoistError):
    """The provider cannot be used now, for ``reason``; ``message`` says it for a person.

    Permanent or not follows from the reason (``PERMANENT``). A temporary one has no delay
    of its own (``retry_after`` 0): the caller retries on its own backoff, as before. It is
    neither a ``PermanentError`` nor a ``RetryLater``, so a bus handler it escaped from
    treats it as any other exception, as it always did.
    """

    reason: Reason

    def __init__(
        self, reason: Reason, message: str, certificate: CertificateInfo | None = None
    ) -> None:
        super().__init__(message, reason=reason, retry_after=None if reason in PERMANENT else 0.0)
        self.certificate = certificate

    @property
    def permanent(self) -> bool:
        return self.reason in PERMANENT

    @property
    def field(self) -> str:
        return FIELD_OF[self.reason]


def host_port(url: str) -> tuple[str, int]:
    """The host and port ``url`` names (the scheme's default port when it names none);
    ``("", 0)`` when it names no server (``shared.urls.endpoint``), which ``check_tls``
    refuses."""
    try:
        where = endpoint(url)
    except ValueError:
        return "", 0
    return where.host, where.port or 80


async def check_tls(url: str, trust: TrustOptions, timeout: float) -> CertificateInfo | None:
    """Verify an ``https`` server's certificate as ``trust`` says, before any SDK talks to it.

    Gives the SDKs' vague TLS failures precise reasons: ``TLS_CHANGED`` when a pin does not
    match, ``TLS_UNTRUSTED`` (with the certificate, for the user to confirm) when the chain
    or host name does not verify, ``HOST_UNREACHABLE`` / ``TIMEOUT`` from the network.
    Returns the certificate (None for plain http).
    """
    if not url.lstrip().lower().startswith("https:"):
        return None
    try:
        where = endpoint(url)
    except ValueError as exc:
        raise ConnectionProblem(Reason.NOT_AN_API, str(exc)) from None
    host, port = where.host, where.port
    try:
        cert = await fetch_certificate(host, port, timeout)
    except TimeoutError:
        raise ConnectionProblem(
            Reason.TIMEOUT, f"{host}:{port} did not answer within {timeout:.0f} s"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectionProblem(
            Reason.NOT_AN_API, f"{host}:{port} does not speak TLS ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise ConnectionProblem(
            Reason.HOST_UNREACHABLE, f"cannot reach {host}:{port}: {exc.strerror or exc}"
        ) from None
    if trust.fingerprint:
        der = base64.b64decode("".join(cert.pem.strip().splitlines()[1:-1]))
        problem = trust.check_pin(der)
        if problem:
            raise ConnectionProblem(Reason.TLS_CHANGED, problem, cert)
        return cert
    if trust.insecure:
        return cert
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=trust.context(), server_hostname=host),
            timeout,
        )
        writer.close()
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionProblem(
            Reason.TLS_UNTRUSTED,
            f"the certificate of {host}:{port} is not trusted ({exc.verify_message}); "
            f"check its fingerprint (SHA-256 {cert.sha256}) and pin it or give its CA",
            cert,
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ConnectionProblem(
            Reason.HOST_UNREACHABLE, f"TLS handshake with {host}:{port} failed: {exc}"
        ) from None
    return cert
