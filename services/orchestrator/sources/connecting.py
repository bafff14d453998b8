"""``connect()``: a ``Source`` for a provider of a running plan, from its Secret's keys.

The connection is made the way the inventory makes it (``shared.sources``): the TLS check
first (a pin that no longer matches reads ``TlsCertificateChanged``, an untrusted chain
``TlsUntrusted``), then ovirtsdk4's SSO or Keystone's authentication. Each source gets a
small thread pool of its own for the SDKs' blocking calls, every call bounded by
``source_timeout_seconds`` (a call past it is ``SourceUnavailable``, temporary), and
releases it at ``close()``.

The plan froze the provider's pinned fingerprint (``ProviderRef.tls_fingerprint_sha256``);
the Secret's own ``fingerprint`` key wins when both are there (the user changed the pin
since), the frozen one is used when the Secret has none.
"""

from __future__ import annotations

from collections.abc import Mapping

import openstack.connection

from services.orchestrator.sources import errors
from services.orchestrator.sources.contract import Source, SourceError
from services.orchestrator.sources.openstack import OpenStackSource
from services.orchestrator.sources.ovirt import OvirtSource
from shared.openstack_auth import OpenStackCredentials
from shared.payloads import ProviderRef, ProviderType
from shared.populator.trust import FlagError
from shared.settings import OrchestratorSettings
from shared.sources import openstack_connect
from shared.sources.blocking import Blocking, Calls
from shared.sources.ovirt_connect import EngineClient
from shared.sources.problems import ConnectionProblem, check_tls
from shared.tls import TrustOptions

APP_NAME = "hoist-orchestrator"
#: Threads (and, for oVirt, connections) one source uses at most.
THREADS = 4


def secret_with_pin(provider: ProviderRef, secret: Mapping[str, str]) -> dict[str, str]:
    data = dict(secret)
    if provider.tls_fingerprint_sha256 and not (data.get("fingerprint") or "").strip():
        data["fingerprint"] = provider.tls_fingerprint_sha256
    return data


def _trust(data: Mapping[str, str]) -> TrustOptions:
    try:
        return TrustOptions.from_secret(data)
    except ValueError as exc:
        what = "insecureSkipVerify" if isinstance(exc, FlagError) else "pinned fingerprint"
        raise SourceError(
            errors.TLS_UNTRUSTED,
            f"the provider's {what} is malformed ({exc}); fix the provider",
            permanent=True,
        ) from None


async def connect(
    provider: ProviderRef, secret: Mapping[str, str], settings: OrchestratorSettings
) -> Source:
    """Connect to ``provider`` (``ovirt`` or ``openstack``); ``SourceError`` when it cannot
    be used now (temporary) or until someone fixes it (permanent)."""
    data = secret_with_pin(provider, secret)
    timeout = settings.source_timeout_seconds
    pool = Blocking(THREADS, THREADS, timeout, name=f"source-{provider.type.value}")
    calls = pool.for_provider(provider.id)
    try:
        if provider.type is ProviderType.OVIRT:
            return await _ovirt(provider, data, pool, timeout)
        if provider.type is ProviderType.OPENSTACK:
            return await _openstack(provider, data, pool, calls, settings)
        raise SourceError(
            errors.SOURCE_UNSUPPORTED,
            f"provider {provider.id} is of type {provider.type.value}: not a source Hoist "
            "migrates from",
            permanent=True,
        )
    except ConnectionProblem as problem:
        pool.shutdown()
        raise errors.from_problem(problem) from None
    except BaseException:
        pool.shutdown()
        raise


async def _ovirt(
    provider: ProviderRef, data: dict[str, str], pool: Blocking, timeout: float
) -> Source:
    client = EngineClient(
        provider.url,
        data,
        pool.for_provider(provider.id),
        connect_timeout=timeout,
        call_timeout=timeout,
        size=THREADS,
    )
    try:
        await client.open()
    except BaseException:
        await client.close()
        raise
    return OvirtSource(client, pool)


async def _openstack(
    provider: ProviderRef,
    data: dict[str, str],
    pool: Blocking,
    calls: Calls,
    settings: OrchestratorSettings,
) -> Source:
    timeout = settings.source_timeout_seconds
    trust = _trust(data)
    await check_tls(provider.url, trust, timeout)
    connected = await calls(
        openstack_connect.connect, provider.url, data, trust, timeout, timeout, APP_NAME
    )
    region = OpenStackCredentials.from_secret(data).region

    def sdk() -> openstack.connection.Connection:
        return openstack.connection.Connection(
            session=connected.session, region_name=region or None, app_name=APP_NAME
        )

    try:
        conn = await calls(sdk)
    except BaseException:
        connected.close()
        raise
    return OpenStackSource(conn, connected, calls, pool, settings)
