"""Raw JSON reads over a kubernetes-asyncio ApiClient, and what their failures mean.

The typed API classes would turn every object into a model only for it to be turned back
into a dict, and custom resources (StorageProfile, NetworkAttachmentDefinition,
VirtualMachine) have no models; ``ApiClient.call_api`` with ``object`` as the response type
keeps the JSON, with the client's authentication and TLS.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from services.inventory.sources.contract import ConnectionProblem, Reason
from shared.tls import colon_hex

Obj = dict[str, Any]
PAGE = 500


async def get_json(
    api: client.ApiClient,
    path: str,
    query: dict[str, str] | None = None,
    timeout: aiohttp.ClientTimeout | float | None = None,
) -> Obj:
    """GET ``path`` as a JSON object; ``ApiException`` for a non-2xx answer and
    ``ConnectionProblem(NOT_AN_API)`` when the answer is not a JSON object."""
    data = await api.call_api(
        path,
        "GET",
        query_params=list((query or {}).items()),
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _preload_content=True,
        _request_timeout=timeout,
    )
    if not isinstance(data, dict):
        raise ConnectionProblem(
            Reason.NOT_AN_API, f"{path} did not answer with a Kubernetes JSON object"
        )
    return data


async def list_all(
    api: client.ApiClient, path: str, timeout: aiohttp.ClientTimeout | float | None = None
) -> tuple[list[Obj], str]:
    """Every object of a collection, page by page, and the list's resourceVersion (where a
    watch continues from). A ``continue`` token that expires mid-way restarts the list."""
    while True:
        items: list[Obj] = []
        query: dict[str, str] = {"limit": str(PAGE)}
        try:
            while True:
                page = await get_json(api, path, query, timeout)
                items.extend(page.get("items") or [])
                meta = page.get("metadata") or {}
                token = meta.get("continue")
                if not token:
                    return items, str(meta.get("resourceVersion", ""))
                query["continue"] = token
        except ApiException as exc:
            if exc.status == 410 and "continue" in query:
                continue
            raise


def status_message(exc: ApiException) -> str:
    """The ``message`` of a Kubernetes Status body (names the verb and resource refused)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def problem(exc: BaseException, where: str) -> ConnectionProblem:
    """What a failed request to ``where`` (a host or a path) means for the provider."""
    if isinstance(exc, ConnectionProblem):
        return exc
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
                "csistoragecapacities, persistentvolumeclaims, virtualmachines, "
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
            f"{where}: the server presented a certificate with SHA-256 fingerprint "
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


TRANSLATED = (ApiException, aiohttp.ClientError, OSError, TimeoutError, ConnectionProblem)
