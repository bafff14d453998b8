"""What a failed request to a KubeVirt target means for the provider.

The requests themselves are ``shared.kube.Kube``'s (raw JSON, the client's authentication
and TLS); their failures (an ``ApiException`` with a status, a network or TLS error, an
answer that is not a Kubernetes JSON object) become ``ConnectionProblem``s here, with the
reason that says whether retrying can help and a message that says what to do.
"""

from __future__ import annotations

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from services.inventory.sources.contract import ConnectionProblem, Reason
from shared.kube import NotAnObject, status_message
from shared.tls import colon_hex


def problem(exc: BaseException, where: str) -> ConnectionProblem:
    """What a failed request to ``where`` (a host or a path) means for the provider."""
    if isinstance(exc, ConnectionProblem):
        return exc
    if isinstance(exc, NotAnObject):
        return ConnectionProblem(Reason.NOT_AN_API, str(exc))
    if isinstance(exc, ApiException):
        status = exc.status or 0
        detail = status_message(exc)
        if status == 401:
            return ConnectionProblem(
                Reason.AUTH_REFUSED,
                f"{where}: the cluster refused the credentials (401): the token or client "
                "certificate is invalid or expired; update the provider's credentials",
            )
        if status == 403:
            return ConnectionProblem(
                Reason.PERMISSION_DENIED,
                f"{where}: forbidden (403){': ' + detail if detail else ''}; grant the "
                "provider's identity get, list and watch on namespaces, storageclasses, "
                "csistoragecapacities, persistentvolumeclaims, persistentvolumes, virtualmachines, "
                "storageprofiles and network-attachment-definitions",
            )
        if status == 404:
            return ConnectionProblem(
                Reason.NOT_AN_API, f"{where} is not served: is the URL a Kubernetes API server?"
            )
        return ConnectionProblem(
            Reason.SERVER_ERROR,
            f"{where}: the cluster answered {status}{': ' + detail if detail else ''}; retrying",
        )
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return ConnectionProblem(
            Reason.TLS_CHANGED,
            f"{where}: the server presented a certificate with "
            f"{'SHA-1' if len(exc.got) == 20 else 'SHA-256'} fingerprint "
            f"{colon_hex(exc.got)}, not the pinned one: confirm the new fingerprint and "
            "update the provider",
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConnectionProblem(
            Reason.TLS_UNTRUSTED,
            f"{where}: the server's certificate is not trusted "
            f"({exc.certificate_error}); give its CA or pin its fingerprint",
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return ConnectionProblem(Reason.NOT_AN_API, f"{where}: TLS handshake failed ({exc})")
    if isinstance(exc, TimeoutError):
        return ConnectionProblem(Reason.TIMEOUT, f"{where} did not answer in time; retrying")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectionProblem(
            Reason.HOST_UNREACHABLE,
            f"cannot reach {where}: {exc.os_error.strerror or exc.os_error}; retrying",
        )
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return ConnectionProblem(
            Reason.HOST_UNREACHABLE, f"the connection to {where} broke ({exc!r}); retrying"
        )
    return ConnectionProblem(Reason.SERVER_ERROR, f"{where}: {exc!r}")


#: The failures ``problem()`` knows the meaning of.
TRANSLATED = (
    ApiException,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    ConnectionProblem,
    NotAnObject,
)
