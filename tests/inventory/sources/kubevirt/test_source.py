"""KubeVirtSource: definitions, probes with precise reasons, full loads (local and remote)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.inventory.items import KINDS_BY_TYPE
from services.inventory.sources.contract import ConnectionProblem, Reason
from services.inventory.sources.kubevirt import KubeVirtSource
from shared.payloads import ProviderType
from shared.settings import KubeSettings
from shared.tls import fetch_certificate
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.inventory.sources.kubevirt.conftest import GETTER, SourceFactory

KINDS = set(KINDS_BY_TYPE[ProviderType.KUBEVIRT])


def ca_pem(cluster: Cluster) -> str:
    return base64.b64decode(cluster.server.ca_data).decode()


async def server_fingerprint(cluster: Cluster) -> str:
    """Fetched without blocking: the simulator serves from this test's event loop."""
    host, port = cluster.url.removeprefix("https://").split(":")
    return (await fetch_certificate(host, int(port), 5)).sha256


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def expect(source: KubeVirtSource, reason: Reason) -> ConnectionProblem:
    with pytest.raises(ConnectionProblem) as caught:
        await source.probe()
    assert caught.value.reason == reason, caught.value.message
    return caught.value


# -- definitions ----------------------------------------------------------------------------


def test_check_definition_reports_every_problem() -> None:
    check = KubeVirtSource.check_definition
    assert check("", {}) == []
    assert check("https://api.example:6443", {"token": "t"}) == []
    assert [f for f, _ in check("", {"token": "t"})] == ["url"]
    problems = check(
        "http://api.example",
        {"fingerprint": "nope", "insecureSkipVerify": "maybe", "cacert": "junk"},
    )
    assert [f for f, _ in problems] == [
        "url",
        "credentials.token",
        "credentials.fingerprint",
        "credentials.insecureSkipVerify",
        "credentials.cacert",
    ]
    assert [f for f, _ in check("https://h", {"token": "t", "kubeconfig": "x"})] == [
        "credentials.token"
    ]
    exec_config = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://h:6443"}}],
        "users": [{"name": "u", "user": {"exec": {"command": "rm"}}}],
    }
    [(field, text)] = check("https://h:6443", {"kubeconfig": yaml.safe_dump(exec_config)})
    assert field == "credentials.kubeconfig"
    assert "exec" in text
    exec_config["users"] = [{"name": "u", "user": {"token": "t"}}]
    assert check("https://h:6443", {"kubeconfig": yaml.safe_dump(exec_config)}) == []
    [(field, text)] = check("https://other:6443", {"kubeconfig": yaml.safe_dump(exec_config)})
    assert field == "url"
    assert "https://h:6443" in text
    assert [f for f, _ in check("https://h", {"kubeconfig": "{not yaml"})] == [
        "credentials.kubeconfig"
    ]


# -- probes ---------------------------------------------------------------------------------


async def test_probe_local_reports_facts(make_source: SourceFactory) -> None:
    facts = await make_source().probe()
    assert facts["version"].startswith("v1.30")
    assert facts["kubevirt"] is True
    assert facts["cdiStorageProfiles"] is True
    assert facts["networkAttachmentDefinitions"] is True
    assert facts["defaultStorageClass"] == "standard"
    assert facts["distribution"] == "Kubernetes"


async def test_probe_remote_token_with_ca_pin_and_kubeconfig(
    cluster: Cluster, make_source: SourceFactory
) -> None:
    token = cluster.config.token
    with_ca = await make_source(cluster.url, {"token": token, "cacert": ca_pem(cluster)}).probe()
    pin = await server_fingerprint(cluster)
    assert with_ca["certificate"]["sha256Fingerprint"] == pin
    assert (await make_source(cluster.url, {"token": token, "fingerprint": pin}).probe())[
        "kubevirt"
    ]
    kubeconfig = yaml.safe_dump(cluster.kubeconfig_dict())
    assert (await make_source(cluster.url, {"kubeconfig": kubeconfig}).probe())["kubevirt"]


async def test_probe_reasons(cluster: Cluster, make_source: SourceFactory) -> None:
    ca = ca_pem(cluster)
    refused = await expect(
        make_source(cluster.url, {"token": "wrong-token", "cacert": ca}), Reason.AUTH_REFUSED
    )
    assert "wrong-token" not in refused.message
    denied = await expect(
        make_source(cluster.url, {"token": GETTER, "cacert": ca}), Reason.PERMISSION_DENIED
    )
    assert "list" in denied.message
    await expect(
        make_source(f"https://127.0.0.1:{closed_port()}", {"token": "t", "cacert": ca}),
        Reason.HOST_UNREACHABLE,
    )
    changed = await expect(
        make_source(cluster.url, {"token": "t", "fingerprint": "AB" * 32}), Reason.TLS_CHANGED
    )
    assert changed.certificate is not None
    untrusted = await expect(make_source(cluster.url, {"token": "t"}), Reason.TLS_UNTRUSTED)
    assert untrusted.certificate is not None


async def test_probe_refuses_an_old_kubernetes(tmp_path: Path, make_source: SourceFactory) -> None:
    config = ClusterConfig(storage_root=tmp_path / "v", kube_version="1.25", disabled=_QUIET)
    async with Cluster(config) as old:
        kube = KubeSettings(kubeconfig=old.kubeconfig(tmp_path / "kubeconfig"))
        problem = await expect(make_source(kube=kube), Reason.API_UNSUPPORTED)
        assert "1.25" in problem.message
        assert "1.26" in problem.message


_QUIET = frozenset({"scheduler", "kubelet", "provisioner", "binder"})


# -- loads ----------------------------------------------------------------------------------


def by_key(items: list[Any]) -> dict[tuple[str, str], Any]:
    return {item.key: item for item in items}


async def test_load_local(make_source: SourceFactory) -> None:
    batch = await make_source().load()
    assert batch.complete == KINDS
    items = by_key(batch.items)
    assert items["namespace", "default"].status == "Active"
    standard = items["storageclass", "standard"].data
    assert standard["provisioner"] == "sim.hoist.io/hostpath"
    assert standard["volumeBindingMode"] == "Immediate"
    assert standard["reclaimPolicy"] == "Delete"
    assert standard["allowVolumeExpansion"] is True
    assert standard["default"] is True
    assert items["storageclass", "local-static"].data["reclaimPolicy"] == "Retain"
    profile = items["storageprofile", "standard"]
    assert profile.parent == "standard"
    assert {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block"} in profile.data[
        "claimPropertySets"
    ]
    assert items["storageprofile", "local-static"].data["claimPropertySets"] == []


async def test_load_remote_with_token_matches_local(
    cluster: Cluster, make_source: SourceFactory
) -> None:
    api = await make_source(
        cluster.url, {"token": cluster.config.token, "cacert": ca_pem(cluster)}
    ).load()
    local = await make_source().load()
    assert api.complete == local.complete == KINDS
    assert {i.key: i.digest() for i in api.items} == {i.key: i.digest() for i in local.items}


async def test_a_remote_cluster_without_hoists_definitions_says_what_is_missing(
    cluster: Cluster, make_source: SourceFactory
) -> None:
    """The provider connects (its inventory is useful), and ``PopulatorsInstalled`` names
    each definition its admin must apply; a local target has no such condition."""
    source = make_source(cluster.url, {"token": cluster.config.token, "cacert": ca_pem(cluster)})
    facts = await source.probe()
    [(ctype, ok, reason, message)] = source.conditions(facts)
    assert (ctype, ok, reason) == ("PopulatorsInstalled", False, "DefinitionsMissing")
    for plural in ("ovirtvolumepopulators", "openstackvolumepopulators"):
        assert f"customresourcedefinitions/{plural}.hoist.io (absent)" in message
    assert "python -m tools.remoterbac" in message
    local = make_source()
    assert local.conditions(await local.probe()) == []
