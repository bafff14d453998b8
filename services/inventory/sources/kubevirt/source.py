"""A KubeVirt target: the cluster Hoist runs in (no URL) or a remote one.

What a target must serve, decided here: Kubernetes 1.26 or newer and KubeVirt's
``kubevirt.io/v1`` (Hoist creates VirtualMachines there; a cluster without it cannot
receive a single VM, so the probe fails with ``API_UNSUPPORTED``). CDI's StorageProfiles
(``cdi.kubevirt.io/v1beta1``) and Multus' NetworkAttachmentDefinitions are optional: Hoist's
own populators copy the disks without CDI, and a target may use only the pod network.
Their presence is reported in the probe's facts, and a missing one is an empty kind.

Besides what maps refer to (namespaces, storage classes and profiles, NADs), a target's
VirtualMachines and PVCs are collected so the planner can refuse a plan whose names are
taken, and its CSIStorageCapacity objects so it can tell a plan that does not fit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from services.inventory.items import Batch, Item
from services.inventory.sources.contract import (
    ConnectionProblem,
    Reason,
    Source,
    check_tls,
)
from services.inventory.sources.kubevirt.kinds import SPECS, KindSpec, is_default_class
from services.inventory.sources.kubevirt.problems import TRANSLATED, problem
from services.inventory.sources.kubevirt.watching import (
    PAGE,
    KindWatcher,
    Pending,
    normalize_all,
)
from shared import remotetarget
from shared.kube import (
    NAMESPACE,
    STORAGE_CLASS,
    Kube,
    KubeConfigProblem,
    KubeConnection,
    connect_local,
    connect_remote,
    origin,
    parse_remote_kubeconfig,
    remote_cluster,
    remote_trust,
)
from shared.payloads import ProviderType
from shared.populator.trust import (
    INSECURE_SKIP_VERIFY,
    FlagError,
    normalize_fingerprint,
    parse_flag,
)

log = logging.getLogger(__name__)

MIN_VERSION = (1, 26)
POPULATORS_INSTALLED = "PopulatorsInstalled"
MISSING_FACT = "missingDefinitions"
"""The probe's fact: what a remote cluster lacks of Hoist's CRDs and VolumePopulators."""
KUBEVIRT = ("kubevirt.io", "v1")
CDI = ("cdi.kubevirt.io", "v1beta1")
MULTUS = ("k8s.cni.cncf.io", "v1")


class KubeVirtSource(Source):
    type: ClassVar[ProviderType] = ProviderType.KUBEVIRT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection: KubeConnection | None = None
        self._pending = Pending()
        self._problems: dict[str, ConnectionProblem] = {}
        self._watchers: dict[str, KindWatcher] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- definition --------------------------------------------------------------------

    @classmethod
    def check_definition(cls, url: str, secret: Mapping[str, str]) -> list[tuple[str, str]]:
        url = url.strip()
        kubeconfig, token = secret.get("kubeconfig", ""), secret.get("token", "")
        if not url:
            if kubeconfig or token:
                return [
                    (
                        "url",
                        "credentials of a remote cluster were given without its URL: set the "
                        "URL (https://host[:port]), or remove them to mean the local cluster",
                    )
                ]
            return []
        problems = _url_problems(url)
        if kubeconfig and token:
            problems.append(("credentials.token", "give either a kubeconfig or a token, not both"))
        elif not kubeconfig and not token:
            problems.append(("credentials.token", "a remote cluster needs a token or a kubeconfig"))
        elif kubeconfig:
            try:
                server = parse_remote_kubeconfig(kubeconfig).server
            except KubeConfigProblem as exc:
                problems.append((exc.field, exc.problem))
            else:
                if not problems and origin(server) != origin(url):
                    problems.append(
                        ("url", f"differs from the kubeconfig's server ({origin(server)})")
                    )
        problems.extend(_trust_problems(secret))
        return problems

    # -- connection --------------------------------------------------------------------

    @property
    def local(self) -> bool:
        return not self.provider.url.strip()

    @property
    def where(self) -> str:
        return self.provider.url.strip() or "the local cluster"

    async def _kube(self) -> Kube:
        """Calls on the target; every one names its own time limit (the settings')."""
        if self._connection is None:
            self._connection = await (self._connect_local() if self.local else self._connect())
        return Kube(self._connection.api, timeout=None)

    async def _connect_local(self) -> KubeConnection:
        try:
            return await connect_local(self.context.kube)
        except (ConfigException, OSError) as exc:
            raise ConnectionProblem(
                Reason.NOT_AN_API,
                f"Hoist's own cluster configuration is unusable ({exc}); set "
                "HOIST_KUBE_KUBECONFIG (and HOIST_KUBE_CONTEXT), or run Hoist in the cluster",
            ) from None

    async def _connect(self) -> KubeConnection:
        try:
            return await connect_remote(self.provider.url, self.secret)
        except KubeConfigProblem as exc:
            raise ConnectionProblem(Reason.AUTH_REFUSED, str(exc)) from None
        except (ssl.SSLError, ValueError, OSError) as exc:
            # Never the exception text: it may quote a key or certificate.
            raise ConnectionProblem(
                Reason.AUTH_REFUSED,
                f"the provider's client certificate, key or CA cannot be used "
                f"({type(exc).__name__}); update its credentials",
            ) from None

    async def probe(self) -> dict[str, Any]:
        timeout = self.context.settings.connect_timeout_seconds
        facts: dict[str, Any] = {}
        if not self.local:
            try:
                cluster = remote_cluster(self.provider.url, self.secret)
            except KubeConfigProblem as exc:
                raise ConnectionProblem(Reason.AUTH_REFUSED, str(exc)) from None
            cert = await check_tls(cluster.server, remote_trust(cluster, self.secret), timeout)
            if cert is not None:
                facts["certificate"] = {k: v for k, v in cert.as_dict().items() if k != "pem"}
        kube = await self._kube()
        limit = aiohttp.ClientTimeout(total=timeout)
        try:
            version = await kube.call("GET", "/version", timeout=limit)
            groups = await kube.call("GET", "/apis", timeout=limit)
            classes, _ = await kube.list(STORAGE_CLASS, page=PAGE, timeout=limit)
            await kube.call("GET", NAMESPACE.path(), query=[("limit", "1")], timeout=limit)
        except TRANSLATED as exc:
            raise problem(exc, self.where) from None
        served = _served(groups)
        git_version = str(version.get("gitVersion", ""))
        found = _major_minor(version)
        if found is None or found < MIN_VERSION:
            raise ConnectionProblem(
                Reason.API_UNSUPPORTED,
                f"{self.where} runs Kubernetes {git_version or 'of an unknown version'}; Hoist "
                f"needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer: upgrade the cluster",
            )
        if KUBEVIRT[1] not in served.get(KUBEVIRT[0], ()):
            raise ConnectionProblem(
                Reason.API_UNSUPPORTED,
                f"{self.where} does not serve kubevirt.io/v1: install KubeVirt (Hoist creates "
                "VirtualMachines there), then update the provider to test it again",
            )
        if not self.local:
            # Hoist's credentials there may not define APIs: the admin installs them.
            try:
                facts[MISSING_FACT] = await remotetarget.missing(kube)
            except TRANSLATED as exc:
                raise problem(exc, self.where) from None
        defaults = sorted(c["metadata"]["name"] for c in classes if is_default_class(c))
        facts.update(
            {
                "version": git_version,
                "platform": str(version.get("platform", "")),
                "distribution": "OpenShift" if "config.openshift.io" in served else "Kubernetes",
                "kubevirt": True,
                "cdiStorageProfiles": CDI[1] in served.get(CDI[0], ()),
                "networkAttachmentDefinitions": MULTUS[1] in served.get(MULTUS[0], ()),
                "defaultStorageClass": defaults[0] if defaults else "",
            }
        )
        return facts

    def conditions(self, facts: Mapping[str, Any]) -> list[tuple[str, bool, str, str]]:
        """``PopulatorsInstalled`` of a remote cluster: its claims are filled only once
        Hoist's CRDs and VolumePopulators are there (the local controller registers them
        in its own cluster, so a local target has no such condition)."""
        if self.local or MISSING_FACT not in facts:
            return []
        lacking = list(facts[MISSING_FACT])
        if not lacking:
            return [(POPULATORS_INSTALLED, True, "Installed", "")]
        return [
            (
                POPULATORS_INSTALLED,
                False,
                "DefinitionsMissing",
                f"{self.where} lacks Hoist's definitions: {', '.join(lacking)}; its claims "
                "are not filled until its admin applies `python -m tools.remoterbac` there "
                "(docs/helm.md)",
            )
        ]

    # -- collection --------------------------------------------------------------------

    async def load(self) -> Batch:
        kube = await self._kube()
        await self._stop_watches()
        self._pending = Pending()
        self._problems = {}
        listed = await asyncio.gather(*(self._list(kube, spec) for spec in SPECS))
        batch = Batch(complete=frozenset(spec.kind for spec in SPECS))
        for spec, (items, version) in zip(SPECS, listed, strict=True):
            batch.extend(items)
            self._start_watch(kube, spec, version)
        return batch

    async def _list(self, kube: Kube, spec: KindSpec) -> tuple[list[Item], str | None]:
        settings = self.context.settings
        timeout = aiohttp.ClientTimeout(
            sock_connect=settings.connect_timeout_seconds, sock_read=settings.call_timeout_seconds
        )
        try:
            objects, version = await kube.list(spec.resource, page=PAGE, timeout=timeout)
        except ApiException as exc:
            if exc.status == 404 and spec.optional:
                return [], None
            raise problem(exc, f"{self.where} {spec.path}") from None
        except TRANSLATED as exc:
            raise problem(exc, f"{self.where} {spec.path}") from None
        return normalize_all(spec, objects), version

    def _start_watch(self, kube: Kube, spec: KindSpec, version: str | None) -> None:
        settings = self.context.settings
        watcher = KindWatcher(
            kube,
            spec,
            self._pending,
            self._problems,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=settings.call_timeout_seconds,
            poll_seconds=settings.refresh_seconds,
            max_backoff=settings.retry_max_seconds,
        )
        self._watchers[spec.kind] = watcher
        self._tasks[spec.kind] = asyncio.create_task(
            watcher.run(version), name=f"kubevirt-watch-{self.provider.id}-{spec.kind}"
        )

    async def refresh(self) -> Batch:
        if not self._tasks:
            raise RuntimeError("refresh() before load(): nothing is watched yet")
        for kind, task in self._tasks.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise ConnectionProblem(
                    Reason.SERVER_ERROR,
                    f"the {kind} watch of {self.where} stopped: {task.exception()!r}; reloading",
                )
        for found in self._problems.values():
            raise found
        await self._alive()
        return self._pending.take()

    async def _alive(self) -> None:
        """One small request per refresh: a watch stays silent when nothing changes, so
        without it a server that went away (or a token revoked) would go unnoticed until
        the watch's read timeout; ``/version`` costs the server nothing."""
        kube = await self._kube()
        limit = aiohttp.ClientTimeout(total=self.context.settings.connect_timeout_seconds)
        try:
            await kube.call("GET", "/version", timeout=limit)
        except TRANSLATED as exc:
            raise problem(exc, self.where) from None

    async def _stop_watches(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._watchers.clear()

    async def close(self) -> None:
        await self._stop_watches()
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


# -- helpers ------------------------------------------------------------------------------


def _url_problems(url: str) -> list[tuple[str, str]]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return [("url", "is not a URL (https://host[:port])")]
    if parts.scheme != "https" or not parts.hostname:
        return [("url", "must be https://host[:port]: the API server of the target cluster")]
    if parts.username or parts.password or parts.query or parts.fragment:
        return [("url", "must not carry credentials, a query or a fragment")]
    return []


def _trust_problems(secret: Mapping[str, str]) -> list[tuple[str, str]]:
    problems = []
    fingerprint = (secret.get("fingerprint") or "").strip()
    if fingerprint:
        try:
            normalize_fingerprint(fingerprint)
        except ValueError as exc:
            problems.append(("credentials.fingerprint", str(exc)))
    try:
        insecure = parse_flag(secret.get(INSECURE_SKIP_VERIFY))
    except FlagError as exc:
        problems.append((f"credentials.{exc.field}", exc.reason))
        insecure = False
    if insecure and fingerprint:
        problems.append(
            ("credentials.insecureSkipVerify", "contradicts the pinned fingerprint: drop one")
        )
    cacert = (secret.get("cacert") or "").strip()
    if cacert:
        try:
            ssl.create_default_context(cadata=cacert)
        except (ssl.SSLError, ValueError):
            problems.append(("credentials.cacert", "is not a PEM bundle of CA certificates"))
    return problems


def _served(groups: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    return {
        str(group.get("name")): tuple(str(v.get("version")) for v in group.get("versions") or [])
        for group in groups.get("groups") or []
    }


def _major_minor(version: Mapping[str, Any]) -> tuple[int, int] | None:
    """``major``/``minor`` of ``/version`` (managed clusters say ``"27+"``)."""
    major = re.match(r"\d+", str(version.get("major", "")))
    minor = re.match(r"\d+", str(version.get("minor", "")))
    if major and minor:
        return int(major.group()), int(minor.group())
    found = re.match(r"v(\d+)\.(\d+)", str(version.get("gitVersion", "")))
    return (int(found.group(1)), int(found.group(2))) if found else None
