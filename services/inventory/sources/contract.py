"""What a source (oVirt, OpenStack, a KubeVirt target) implements, and what it is given.

A ``Source`` is one provider's client. The collector loop (``collecting.py``) owns its
lifecycle: ``probe()`` once per (re)connection, ``load()`` for a full inventory, then
``refresh()`` every interval; the store turns each ``Batch`` into revisions, concerns and
events. A source never touches the database, NATS or Kubernetes Secrets: it gets its
provider's non-secret description, the Secret's keys, and a ``SourceContext`` with the
bounded thread pool its blocking SDK calls must go through.

Errors say what happens next: ``ConnectionProblem`` with a ``Reason`` (the provider turns
ConnectionFailed with that reason; temporary ones are retried with backoff, permanent ones
wait for the user to fix the provider). Any other exception from ``refresh()`` is treated
as temporary and retried.
"""

from __future__ import annotations

import asyncio
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from services.inventory.model import Batch, Concern, Item
from shared.payloads import ProviderType
from shared.settings import InventorySettings, KubeSettings
from shared.tls import CertificateInfo, TrustOptions, fetch_certificate

T = TypeVar("T")


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


class ConnectionProblem(Exception):
    """The provider cannot be used now, for ``reason``; ``message`` says it for a person."""

    def __init__(
        self, reason: Reason, message: str, certificate: CertificateInfo | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.certificate = certificate

    @property
    def permanent(self) -> bool:
        return self.reason in PERMANENT

    @property
    def field(self) -> str:
        return FIELD_OF[self.reason]


@dataclass(frozen=True)
class ProviderInfo:
    """A provider without its secrets."""

    id: str
    name: str
    type: ProviderType
    url: str
    settings: Mapping[str, Any] = field(default_factory=dict)


class Blocking:
    """The thread pool every blocking SDK call runs in, shared by all providers.

    Each provider gets at most ``per_provider`` threads of it at once, so a provider whose
    calls hang holds a few threads, never all of them; a call running past ``timeout``
    raises ``ConnectionProblem(TIMEOUT)`` (its thread finishes in the background).
    """

    def __init__(self, workers: int, per_provider: int, timeout: float) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="inventory-sdk")
        self.per_provider = per_provider
        self.timeout = timeout
        self._gates: dict[str, asyncio.Semaphore] = {}

    @classmethod
    def from_settings(cls, settings: InventorySettings) -> Blocking:
        return cls(settings.workers, settings.calls_per_provider, settings.call_timeout_seconds)

    def for_provider(self, provider_id: str) -> Calls:
        gate = self._gates.setdefault(provider_id, asyncio.Semaphore(self.per_provider))
        return Calls(self, gate)

    def forget(self, provider_id: str) -> None:
        self._gates.pop(provider_id, None)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Calls:
    """``await calls(fn, *args)``: run one blocking call of one provider."""

    pool: Blocking
    gate: asyncio.Semaphore

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self.gate:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.pool.executor, lambda: fn(*args, **kwargs))
            try:
                return await asyncio.wait_for(future, self.pool.timeout)
            except TimeoutError:
                raise ConnectionProblem(
                    Reason.TIMEOUT,
                    f"the provider did not answer a call within {self.pool.timeout:.0f} s",
                ) from None


@dataclass(frozen=True)
class SourceContext:
    calls: Calls
    settings: InventorySettings
    kube: KubeSettings
    """How to reach the cluster Hoist runs in (a ``kubevirt`` provider without URL)."""


class Source(ABC):
    """One provider's client; subclasses live in ``sources/<type>/``."""

    type: ClassVar[ProviderType]

    def __init__(
        self, provider: ProviderInfo, secret: Mapping[str, str], context: SourceContext
    ) -> None:
        self.provider = provider
        self.secret = secret
        self.context = context

    @classmethod
    @abstractmethod
    def check_definition(cls, url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
        """Static checks before any connection: ``[(field, problem)]``, empty when fine.

        ``field`` is ``url`` or ``credentials.<key>``; missing or contradictory keys
        (``username`` without ``password``) are reported here, all at once.
        """

    @abstractmethod
    async def probe(self) -> dict[str, Any]:
        """Connect, authenticate and check the API version; raise ``ConnectionProblem``.

        Returns facts worth showing (product, version, ...). Must not take longer than
        ``context.settings.connect_timeout_seconds`` per network step.
        """

    @abstractmethod
    async def load(self) -> Batch:
        """The whole inventory: a batch ``complete`` for every kind the type collects."""

    @abstractmethod
    async def refresh(self) -> Batch:
        """What changed since the last ``load()`` or ``refresh()``."""

    def assess(self, vm: Item) -> list[Concern]:
        """Validation concerns of one VM, from its ``data`` alone (the collector embeds in a
        VM what its concerns need: its disks' status, NIC models, ...)."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called when the provider is deleted or reconnects."""


# --- helpers sources share -----------------------------------------------------------------


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


async def check_tls(url: str, trust: TrustOptions, timeout: float) -> CertificateInfo | None:
    """Verify an ``https`` server's certificate as ``trust`` says, before any SDK talks to it.

    Gives the SDKs' vague TLS failures precise reasons: ``TLS_CHANGED`` when a pin does not
    match, ``TLS_UNTRUSTED`` (with the certificate, for the user to confirm) when the chain
    or host name does not verify, ``HOST_UNREACHABLE`` / ``TIMEOUT`` from the network.
    Returns the certificate (None for plain http).
    """
    if urlsplit(url).scheme != "https":
        return None
    host, port = host_port(url)
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
        import base64

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
