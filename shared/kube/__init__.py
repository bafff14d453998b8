"""Kubernetes API clients: the cluster Hoist runs in, and remote target clusters.

Two kinds of cluster, trusted differently:

- the *local* cluster is configured by the operator (``KubeSettings``): a kubeconfig file
  (and context) or, in a pod, the service account. kubernetes-asyncio's own loaders read
  it, with everything a kubeconfig may do (exec plugins included): the operator chose it.
- a *remote* cluster comes from a provider's Secret, written by any API user. Its
  kubeconfig may only carry inline data (server, CA, token, client certificate): an
  ``exec`` plugin or a ``tokenFile`` would run commands or read files on Hoist's host, so
  they are refused. TLS follows the provider's trust options (``shared.tls``): a pinned
  fingerprint is checked by aiohttp on every connection, not only by the probe.

Every client is an async context manager (``async with local_client(settings) as api``);
a long-lived holder keeps the ``KubeConnection`` and calls ``close()``.

On a client, calls go through ``Kube`` (``shared.kube.calls``: raw JSON, the ``Resource``s
Hoist touches) and views are kept current by ``ListWatch`` (``shared.kube.listwatch``);
both are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from kubernetes_asyncio import client, config

from shared.kube.calls import (
    CONFIG_MAP,
    CRD,
    EVENT,
    JOB,
    JSON_PATCH,
    MERGE,
    NAMESPACE,
    NODE,
    POD,
    POPULATORS,
    PV,
    PVC,
    SECRET,
    STORAGE_CLASS,
    VIRTUAL_MACHINE,
    VOLUME_POPULATOR,
    Kube,
    NotAnObject,
    Obj,
    Resource,
    conflict,
    not_found,
    status_message,
)
from shared.kube.listwatch import ListWatch
from shared.populator.trust import FlagError, parse_flag
from shared.settings import KubeSettings
from shared.tls import TrustOptions

__all__ = [
    "CONFIG_MAP",
    "CRD",
    "EVENT",
    "JOB",
    "JSON_PATCH",
    "MERGE",
    "NAMESPACE",
    "NODE",
    "POD",
    "POPULATORS",
    "PROVIDER_SECRET_PREFIX",
    "PV",
    "PVC",
    "SECRET",
    "STORAGE_CLASS",
    "VIRTUAL_MACHINE",
    "VOLUME_POPULATOR",
    "Kube",
    "KubeConfigProblem",
    "KubeConnection",
    "ListWatch",
    "NotAnObject",
    "Obj",
    "RemoteCluster",
    "Resource",
    "conflict",
    "connect_local",
    "connect_remote",
    "local_client",
    "not_found",
    "origin",
    "parse_remote_kubeconfig",
    "provider_secret_name",
    "read_secret_data",
    "remote_cluster",
    "remote_trust",
    "status_message",
]


class _NoResponseBodies(logging.Filter):
    """kubernetes-asyncio logs every response body at DEBUG: a Secret read would put its
    data into Hoist's logs. Drop those records, whatever the log level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("response body")


logging.getLogger("kubernetes_asyncio.client.rest").addFilter(_NoResponseBodies())


class KubeConfigProblem(ValueError):
    """A kubeconfig Hoist cannot use; ``field`` names where (never a value from it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class RemoteCluster:
    """What a remote kubeconfig's current context says, reduced to inline data."""

    server: str
    token: str | None = None
    ca_pem: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None

    def __repr__(self) -> str:  # never print the token or key
        return f"RemoteCluster(server={self.server!r})"


# Keys of a kubeconfig user that make the client run a program or read a local file.
_REFUSED_USER_KEYS = ("exec", "auth-provider", "tokenFile", "client-certificate", "client-key")


def parse_remote_kubeconfig(text: str) -> RemoteCluster:
    """The current context of a kubeconfig from a provider Secret; ``KubeConfigProblem``
    when it is not YAML, has no usable context, or asks for something Hoist refuses."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise KubeConfigProblem("credentials.kubeconfig", "is not valid YAML") from None
    if not isinstance(doc, dict):
        raise KubeConfigProblem("credentials.kubeconfig", "is not a kubeconfig document")
    current = doc.get("current-context")
    context = _named(doc, "contexts", current, "context")
    if context is None:
        raise KubeConfigProblem(
            "credentials.kubeconfig", "has no current-context naming one of its contexts"
        )
    cluster = _named(doc, "clusters", context.get("cluster"), "cluster")
    user = _named(doc, "users", context.get("user"), "user") or {}
    if cluster is None or not cluster.get("server"):
        raise KubeConfigProblem(
            "credentials.kubeconfig", "the current context's cluster has no server"
        )
    refused = [key for key in _REFUSED_USER_KEYS if key in user]
    if "certificate-authority" in cluster:
        refused.append("certificate-authority")
    if refused:
        raise KubeConfigProblem(
            "credentials.kubeconfig",
            f"uses {', '.join(refused)}: only inline data (token, client-certificate-data, "
            "client-key-data, certificate-authority-data) is accepted from a provider Secret",
        )
    if not user.get("token") and not user.get("client-certificate-data"):
        raise KubeConfigProblem(
            "credentials.kubeconfig", "the current context's user has no token or certificate"
        )
    return RemoteCluster(
        server=str(cluster["server"]).rstrip("/"),
        token=user.get("token") or None,
        ca_pem=_b64(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        client_cert_pem=_b64(user.get("client-certificate-data"), "client-certificate-data"),
        client_key_pem=_b64(user.get("client-key-data"), "client-key-data"),
        insecure=_kubeconfig_flag(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name") or None,
    )


def _kubeconfig_flag(value: object) -> bool:
    """A kubeconfig's ``insecure-skip-tls-verify``, read as every trust flag is."""
    try:
        return parse_flag(value, "insecure-skip-tls-verify")
    except FlagError as exc:
        raise KubeConfigProblem("credentials.kubeconfig", str(exc)) from None


class _Pin(aiohttp.Fingerprint):
    """aiohttp's pin, checked on every handshake, for a SHA-1 pin too: its constructor
    refuses SHA-1, the fingerprint older oVirt-era dialogs show. The pin is compared with
    the certificate's digest of its own length (``shared.populator.trust``)."""

    def __init__(self, fingerprint: str) -> None:
        digest = bytes.fromhex(fingerprint.replace(":", ""))
        if len(digest) == 32:
            super().__init__(digest)
        else:
            self._hashfunc = hashlib.sha1
            self._fingerprint = digest


def _named(doc: Mapping[str, Any], section: str, name: object, key: str) -> dict[str, Any] | None:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key)
            return value if isinstance(value, dict) else None
    return None


def _b64(value: object, field: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise KubeConfigProblem(
            "credentials.kubeconfig", f"{field} is not base64 of a PEM text"
        ) from None


def remote_cluster(url: str, secret: Mapping[str, str]) -> RemoteCluster:
    """The remote cluster a provider means: its Secret's kubeconfig, else ``url`` + token."""
    if secret.get("kubeconfig"):
        return parse_remote_kubeconfig(secret["kubeconfig"])
    return RemoteCluster(server=url.rstrip("/"), token=secret.get("token") or None)


def remote_trust(cluster: RemoteCluster, secret: Mapping[str, str]) -> TrustOptions:
    """The Secret's trust keys win; a kubeconfig's CA or insecure flag fills what they omit."""
    trust = TrustOptions.from_secret(secret)
    return TrustOptions(
        ca_pem=trust.ca_pem or cluster.ca_pem,
        fingerprint=trust.fingerprint,
        insecure=trust.insecure or (cluster.insecure and not trust.fingerprint),
    )


class KubeConnection:
    """An ApiClient and the private files it needs (a client key), removed on ``close()``."""

    def __init__(self, api: client.ApiClient, scratch: Path | None = None) -> None:
        self.api = api
        self._scratch = scratch

    async def close(self) -> None:
        try:
            await self.api.close()
        finally:
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None

    async def __aenter__(self) -> client.ApiClient:
        return self.api

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_local(settings: KubeSettings) -> KubeConnection:
    """The cluster Hoist runs in: ``settings.kubeconfig`` (and context), else in-cluster."""
    configuration = client.Configuration()
    if settings.kubeconfig is not None:
        await config.load_kube_config(
            config_file=str(settings.kubeconfig),
            context=settings.context,
            client_configuration=configuration,
            persist_config=False,
        )
    else:
        config.load_incluster_config(client_configuration=configuration)
    return KubeConnection(client.ApiClient(configuration))


async def connect_remote(url: str, secret: Mapping[str, str]) -> KubeConnection:
    """A remote cluster from a provider's URL and Secret (see ``remote_cluster``)."""
    cluster = remote_cluster(url, secret)
    trust = remote_trust(cluster, secret)
    configuration = client.Configuration(host=cluster.server)
    if cluster.token:
        configuration.api_key["BearerToken"] = cluster.token
        configuration.api_key_prefix["BearerToken"] = "Bearer"
    configuration.tls_server_name = cluster.tls_server_name
    scratch: Path | None = None
    tls: ssl.SSLContext | aiohttp.Fingerprint | bool = trust.context()
    if trust.fingerprint and not trust.ca_pem:
        tls = _Pin(trust.fingerprint)
    elif trust.insecure and not trust.ca_pem:
        tls = False
    if cluster.client_cert_pem and cluster.client_key_pem:
        # ssl loads a client certificate only from files: a private directory, gone on close.
        scratch = Path(tempfile.mkdtemp(prefix="hoist-kube-"))
        cert, key = scratch / "client.crt", scratch / "client.key"
        cert.write_text(cluster.client_cert_pem)
        key.touch(mode=0o600)
        key.write_text(cluster.client_key_pem)
        if isinstance(tls, ssl.SSLContext):
            tls.load_cert_chain(cert, key)
        else:
            context = trust.context()
            context.load_cert_chain(cert, key)
            # A pin with a client certificate: aiohttp takes one ssl value, so the pin is
            # checked by the probe's check_tls on each connect, and the chain is not verified.
            tls = context
    api = client.ApiClient(configuration)
    await _use_tls(api, tls, configuration)
    return KubeConnection(api, scratch)


async def _use_tls(
    api: client.ApiClient,
    tls: ssl.SSLContext | aiohttp.Fingerprint | bool,
    configuration: client.Configuration,
) -> None:
    """Swap the client's aiohttp session for one that verifies the way the provider says.

    kubernetes-asyncio builds its SSL context from a CA *file* only; a CA from a Secret,
    a pinned fingerprint (``aiohttp.Fingerprint``, checked on every handshake) or a client
    certificate need a connector of our own. The session it replaces was never used.
    """
    old = api.rest_client.pool_manager
    api.rest_client.pool_manager = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize, ssl=tls),
        trust_env=True,
        read_bufsize=2**21,
    )
    await old.close()


@asynccontextmanager
async def local_client(settings: KubeSettings) -> AsyncIterator[client.ApiClient]:
    async with await connect_local(settings) as api:
        yield api


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (ports made explicit), for comparisons."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


PROVIDER_SECRET_PREFIX = "hoist-provider-"  # noqa: S105 - a name, not a secret


def provider_secret_name(provider_id: str) -> str:
    """The deterministic name of a provider's credentials Secret in Hoist's namespace."""
    return PROVIDER_SECRET_PREFIX + provider_id


async def read_secret_data(
    api: client.ApiClient, namespace: str, name: str
) -> dict[str, str] | None:
    """A Secret's data, decoded; ``None`` when it does not exist. Other failures raise
    ``ApiException`` whose message must not be logged as is (it may quote the body): log
    its ``status`` only."""
    # No time limit of its own, as the typed call it replaces: its callers bound their work.
    secret = await Kube(api, timeout=None).get(SECRET, name, namespace)
    if secret is None:
        return None
    data: dict[str, str] = secret.get("data") or {}
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
