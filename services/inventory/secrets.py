"""Provider credentials, kept as Kubernetes Secrets in Hoist's namespace.

The database holds only a provider's id; its credentials live in the Secret
``hoist-provider-<id>`` so that cluster RBAC, encryption at rest and the populator pods
(which mount the same Secret) all apply to one copy. The name is derived from the id, so a
crash between writing the row and the Secret leaves nothing to reconcile but orphans,
which ``list_ids()`` finds by label.

Nothing here ever puts a value into a log line or an exception message: errors name the
Secret and the status, and chain no ``ApiException`` (whose text carries the response).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared.kube import SECRET, Kube
from shared.remotetarget import PROVIDER_TYPE_LABEL
from shared.service.errors import Unavailable

PREFIX = "hoist-provider-"
MANAGED_BY = {"app.kubernetes.io/managed-by": "hoist"}
PROVIDER_LABEL = "hoist.io/provider"
# A label value (and the rest of a DNS-1123 name): provider ids are UUIDs or slugs.
_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class SecretStoreError(Unavailable):
    """The Secret could not be read or written; the message says what to do. To an API
    client: 503, retry after 10 s."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 10)

    def detail(self) -> str:
        return f"cannot use Kubernetes Secrets: {self.message}"


class NamespaceMissing(SecretStoreError):
    """Hoist's namespace does not exist: nothing can be stored until it is created."""


class SecretForbidden(SecretStoreError):
    """Hoist's identity may not do this to Secrets in its namespace (an RBAC problem)."""


class SecretNotFound(SecretStoreError, KeyError):
    """The provider has no credentials Secret (deleted by hand, or never written)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def secret_name(provider_id: str) -> str:
    if not _ID.match(provider_id):
        raise ValueError(
            "a provider id must be lowercase letters, digits and '-', at most 63 characters"
        )
    return PREFIX + provider_id


class SecretStore:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        # No time limit of its own, as the typed calls it replaced: the API's callers and
        # the collectors bound their work.
        self.kube = Kube(api_client, timeout=None)
        self.namespace = namespace

    def _body(self, provider_id: str, data: dict[str, str], ptype: str) -> dict[str, Any]:
        labels = {**MANAGED_BY, PROVIDER_LABEL: provider_id}
        if ptype:  # the populator controller finds remote kubevirt targets by it
            labels[PROVIDER_TYPE_LABEL] = ptype
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name(provider_id),
                "namespace": self.namespace,
                "labels": labels,
            },
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }

    async def put(self, provider_id: str, data: dict[str, str], ptype: str = "") -> str:
        """Create or replace the provider's Secret with exactly ``data``; its name."""
        name = secret_name(provider_id)
        body = self._body(provider_id, data, ptype)
        for _ in range(3):  # create / replace race with a concurrent delete or create
            try:
                await self.kube.create(SECRET, body, self.namespace)
                return name
            except ApiException as exc:
                if exc.status != 409:
                    raise self._error(exc, "create", name) from None
            try:
                await self.kube.replace(SECRET, name, body, self.namespace)
                return name
            except ApiException as exc:
                if exc.status != 404 or _missing_kind(exc) == "namespaces":
                    raise self._error(exc, "replace", name) from None
        raise SecretStoreError(
            f"the Secret {self.namespace}/{name} kept changing while being written; "
            "the provider was not saved, try again"
        )

    async def get(self, provider_id: str) -> dict[str, str]:
        """The provider's credentials, decoded; ``SecretNotFound`` when there is no Secret."""
        name = secret_name(provider_id)
        try:
            secret = await self.kube.call("GET", SECRET.path(self.namespace, name))
        except ApiException as exc:
            if exc.status == 404 and _missing_kind(exc) != "namespaces":
                raise SecretNotFound(
                    f"the credentials Secret {self.namespace}/{name} does not exist; "
                    "update the provider with its credentials to recreate it"
                ) from None
            raise self._error(exc, "read", name) from None
        data: dict[str, str] = secret.get("data") or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

    async def ensure_type(self, provider_id: str, ptype: str) -> None:
        """Label the Secret with the provider's type when it lacks it (one written before
        the label existed), keeping its data: the populator controller finds remote
        targets by it. Replaced with its resourceVersion, so a concurrent write wins."""
        name = secret_name(provider_id)
        try:
            secret = await self.kube.call("GET", SECRET.path(self.namespace, name))
            meta = secret.get("metadata") or {}
            if (meta.get("labels") or {}).get(PROVIDER_TYPE_LABEL) == ptype:
                return
            meta["labels"] = {**(meta.get("labels") or {}), PROVIDER_TYPE_LABEL: ptype}
            await self.kube.replace(SECRET, name, secret, self.namespace)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone, or written meanwhile (with the label, by ``put``)
            raise self._error(exc, "label", name) from None

    async def delete(self, provider_id: str) -> None:
        """Remove the provider's Secret; one that is already gone is fine."""
        name = secret_name(provider_id)
        try:
            await self.kube.delete(SECRET, name, self.namespace)
        except ApiException as exc:
            raise self._error(exc, "delete", name) from None

    async def list_ids(self) -> set[str]:
        """Ids of every provider that has a Hoist-managed Secret (orphans included)."""
        selector = f"app.kubernetes.io/managed-by=hoist,{PROVIDER_LABEL}"
        try:
            secrets, _ = await self.kube.list(SECRET, self.namespace, selector=selector, page=500)
        except ApiException as exc:
            raise self._error(exc, "list", "") from None
        ids: set[str] = set()
        for secret in secrets:
            meta = secret.get("metadata") or {}
            provider = (meta.get("labels") or {}).get(PROVIDER_LABEL)
            if provider and meta.get("name") == PREFIX + provider:
                ids.add(provider)
        return ids

    def _error(self, exc: ApiException, verb: str, name: str) -> SecretStoreError:
        what = f"Secret {self.namespace}/{name}" if name else f"Secrets in {self.namespace}"
        if exc.status == 404:
            return NamespaceMissing(
                f"cannot {verb} the {what}: the namespace {self.namespace!r} does not exist; "
                "create it (or point HOIST_KUBE_NAMESPACE at Hoist's namespace) and retry"
            )
        if exc.status in (401, 403):
            return SecretForbidden(
                f"cannot {verb} the {what}: the cluster refused ({exc.status}); grant Hoist's "
                f"service account get, list, create, update and delete on secrets in "
                f"{self.namespace!r}"
            )
        return SecretStoreError(
            f"cannot {verb} the {what}: the cluster answered {exc.status}; "
            "retry later (writing a provider's Secret again is safe)"
        )


def _missing_kind(exc: ApiException) -> str:
    """``details.kind`` of a 404 Status: ``namespaces`` when the namespace is what is gone."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    details = status.get("details") if isinstance(status, dict) else None
    return str((details or {}).get("kind", ""))
