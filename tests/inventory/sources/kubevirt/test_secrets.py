"""SecretStore against the simulated cluster: round trips, replacement, errors, no leaks."""

from __future__ import annotations

import base64
import logging
import uuid

import pytest
from kubernetes_asyncio import client

from services.inventory.secrets import (
    NamespaceMissing,
    SecretForbidden,
    SecretNotFound,
    SecretStore,
    secret_name,
)
from shared.kube import local_client
from shared.settings import KubeSettings

PASSWORD = "s3cr3t-Pa55word-do-not-leak"


@pytest.fixture(scope="module")
async def store(api: client.ApiClient) -> SecretStore:
    # The simulated cluster starts with Hoist's namespace, as a Helm install leaves it.
    await client.CoreV1Api(api).read_namespace("hoist")
    return SecretStore(api, "hoist")


def new_id() -> str:
    return str(uuid.uuid4())


async def test_put_get_replace_delete(
    store: SecretStore, api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    provider = new_id()
    data = {"username": "admin@internal", "password": PASSWORD, "cacert": "-----BEGIN X-----\n"}
    with caplog.at_level(logging.DEBUG):
        name = await store.put(provider, data)
        assert name == f"hoist-provider-{provider}"
        assert await store.get(provider) == data
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert PASSWORD not in caplog.text
    assert encoded not in caplog.text

    stored = await client.CoreV1Api(api).read_namespaced_secret(name, "hoist")
    assert stored.type == "Opaque"
    assert stored.metadata.labels == {
        "app.kubernetes.io/managed-by": "hoist",
        "hoist.io/provider": provider,
    }
    assert stored.data["password"] == base64.b64encode(PASSWORD.encode()).decode()
    assert PASSWORD not in str(stored.data)

    # Replacing keeps the name and drops keys no longer given (idempotent).
    assert await store.put(provider, {"token": "t0k3n"}) == name
    assert await store.put(provider, {"token": "t0k3n"}, "kubevirt") == name
    assert await store.get(provider) == {"token": "t0k3n"}
    # The type label: how the populator controller finds the remote target clusters;
    # one written without it (before it existed) gets it, its data kept.
    stored = await client.CoreV1Api(api).read_namespaced_secret(name, "hoist")
    assert stored.metadata.labels["hoist.io/provider-type"] == "kubevirt"
    await store.put(provider, {"token": "t0k3n"})
    await store.ensure_type(provider, "kubevirt")
    await store.ensure_type(provider, "kubevirt")
    stored = await client.CoreV1Api(api).read_namespaced_secret(name, "hoist")
    assert stored.metadata.labels["hoist.io/provider-type"] == "kubevirt"
    assert await store.get(provider) == {"token": "t0k3n"}

    await store.delete(provider)
    await store.delete(provider)  # already gone: fine
    with pytest.raises(SecretNotFound) as caught:
        await store.get(provider)
    assert name in str(caught.value)


async def test_list_ids_finds_only_hoist_provider_secrets(
    store: SecretStore, api: client.ApiClient
) -> None:
    first, second = new_id(), new_id()
    await store.put(first, {"token": "a"})
    await store.put(second, {"token": "b"})
    await client.CoreV1Api(api).create_namespaced_secret(
        "hoist", {"metadata": {"name": "someone-elses"}, "stringData": {"x": "y"}}
    )
    ids = await store.list_ids()
    assert {first, second} <= ids
    await store.delete(first)
    ids = await store.list_ids()
    assert second in ids
    assert first not in ids


async def test_missing_namespace_and_forbidden_say_what_next(
    api: client.ApiClient, viewer_settings: KubeSettings
) -> None:
    missing = SecretStore(api, "no-such-namespace")
    with pytest.raises(NamespaceMissing) as caught:
        await missing.put(new_id(), {"password": PASSWORD})
    message = str(caught.value)
    assert "no-such-namespace" in message
    assert "create it" in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None
    assert await missing.list_ids() == set()

    async with local_client(viewer_settings) as viewer:
        readonly = SecretStore(viewer, "hoist")
        with pytest.raises(SecretForbidden) as refused:
            await readonly.put(new_id(), {"password": PASSWORD})
        assert "grant" in str(refused.value)
        assert PASSWORD not in str(refused.value)
        with pytest.raises(SecretForbidden):
            await readonly.delete(new_id())


def test_provider_ids_must_make_valid_names() -> None:
    assert secret_name("abc-123") == "hoist-provider-abc-123"
    for bad in ("", "UPPER", "a_b", "x" * 64, "-a"):
        with pytest.raises(ValueError, match="provider id"):
            secret_name(bad)
