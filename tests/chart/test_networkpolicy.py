"""What the chart's NetworkPolicies let through, evaluated as a cluster enforces them.

The policies are rendered by the real helm, checked against the upstream schemas, then
applied by a small evaluator of the NetworkPolicy semantics (a pod is isolated in a
direction once any policy of its namespace selects it for that direction; a connection
passes when the source may send it and the destination may receive it; peers are pod
selectors in the policy's namespace, namespace selectors (with or without a pod selector),
or IP blocks; ports by number or by the destination container's port name). The pods are
the rendered Deployments' and StatefulSets' own templates, the populator pod's labels come
from the controller's manifest builder, so a renamed label breaks this test, not a cluster.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from services.controller.manifests import hoist_labels
from shared import populator as contract
from shared.populator.page import METRICS_PORT
from tests.chart import rendering as r
from tests.chart.validating import problems

Obj = dict[str, Any]

TARGET = "vms-a"
API_SERVER = "10.0.0.1"
ENGINE = "192.0.2.10"
ELSEWHERE = "203.0.113.5"
VALUES: Obj = {
    "rbac": {"targetNamespaces": [TARGET]},
    "networkPolicy": {
        "apiServer": {"to": [{"ipBlock": {"cidr": f"{API_SERVER}/32"}}], "ports": [443, 6443]},
        "sources": {
            "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
            "ports": [443, 54322, 54323, 5000],
        },
    },
}


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # name -> number


@dataclass(frozen=True)
class Outside:
    ip: str


Endpoint = Pod | Outside


def _selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, op = labels.get(e["key"]), e["operator"]
        if op == "In" and value not in e["values"]:
            return False
        if op == "NotIn" and value in e["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def _peer_matches(peer: Obj, policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Outside):
            return False  # pod IPs are not what the chart's blocks name
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(x) for x in block.get("except", [])
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not _selects(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return _selects(peer.get("podSelector"), other.labels)


def _port_matches(ports: list[Obj] | None, dest: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        wanted = p.get("port")
        if wanted is None or wanted == port:
            return True
        if isinstance(wanted, str) and isinstance(dest, Pod) and dest.ports.get(wanted) == port:
            return True
    return False


def _allowed(policies: list[Obj], pod: Pod, direction: str, other: Endpoint, dest: Endpoint,
             port: int, protocol: str) -> bool:  # fmt: skip
    key = "egress" if direction == "Egress" else "ingress"
    peer_key = "to" if direction == "Egress" else "from"
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and _selects(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peer_key)
            if peers and not any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            ):
                continue
            if _port_matches(rule.get("ports"), dest, port, protocol):
                return True
    return False


def reaches(policies: list[Obj], src: Endpoint, dst: Endpoint, port: int,
            protocol: str = "TCP") -> bool:  # fmt: skip
    out = not isinstance(src, Pod) or _allowed(policies, src, "Egress", dst, dst, port, protocol)
    into = not isinstance(dst, Pod) or _allowed(policies, dst, "Ingress", src, dst, port, protocol)
    return out and into


def _pods(docs: list[Obj]) -> dict[str, Pod]:
    """component -> its pod, from the rendered workloads' templates."""
    out: dict[str, Pod] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = doc["spec"]["template"]
        labels = template["metadata"]["labels"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        out[labels["app.kubernetes.io/component"]] = Pod(r.NAMESPACE, labels, ports)
    return out


def _render(values: Obj) -> list[Obj]:
    result = r.template(values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    return _render(VALUES)


@pytest.fixture(scope="module")
def world(rendered: list[Obj]) -> tuple[list[Obj], dict[str, Endpoint]]:
    policies = r.of_kind(rendered, "NetworkPolicy")
    pods: dict[str, Endpoint] = dict(_pods(rendered))
    populator = hoist_labels({"metadata": {"labels": {}}}, contract.POPULATOR_COMPONENT)
    pods["populator"] = Pod(TARGET, populator, {"metrics": METRICS_PORT})
    pods["stranger"] = Pod(TARGET, {"app": "other"}, {"http": 8080})
    pods["dns"] = Pod("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
    pods["apiserver"] = Outside(API_SERVER)
    pods["engine"] = Outside(ENGINE)
    pods["elsewhere"] = Outside(ELSEWHERE)
    return policies, pods


SERVICES = ("inventory", "planner", "orchestrator", "progress")
CONTROLLER = "populator-controller"


@pytest.mark.parametrize("version", r.KUBE_VERSIONS)
def test_policies_are_valid(rendered: list[Obj], version: str) -> None:
    policies = r.of_kind(rendered, "NetworkPolicy")
    assert len(policies) >= 10
    assert [p for doc in policies for p in problems(doc, version)] == []


def test_on_by_default() -> None:
    docs = r.objects("default")
    names = {p["metadata"]["name"] for p in r.of_kind(docs, "NetworkPolicy")}
    assert {"hoist-api", "hoist-inventory-egress", "hoist-populator-controller-egress"} <= names


def test_only_the_progress_service_reads_populator_metrics(
    world: tuple[list[Obj], dict[str, Endpoint]],
) -> None:
    policies, pods = world
    target = pods["populator"]
    assert reaches(policies, pods["progress"], target, METRICS_PORT)
    for other in (*SERVICES, CONTROLLER, "nats", "postgresql", "stranger"):
        if other != "progress":
            assert not reaches(policies, pods[other], target, METRICS_PORT), other
    assert not reaches(policies, pods["elsewhere"], target, METRICS_PORT)
    assert not reaches(policies, pods["progress"], target, 22)


def test_populators_reach_only_their_source_and_the_api_server(
    world: tuple[list[Obj], dict[str, Endpoint]],
) -> None:
    policies, pods = world
    pop = pods["populator"]
    assert reaches(policies, pop, pods["engine"], 443)
    assert reaches(policies, pop, pods["engine"], 54322)
    assert reaches(policies, pop, pods["apiserver"], 443)
    assert reaches(policies, pop, pods["dns"], 53, "UDP")
    assert not reaches(policies, pop, pods["engine"], 22)
    assert not reaches(policies, pop, pods["elsewhere"], 443)
    for other in ("nats", "postgresql", *SERVICES, "stranger"):
        assert not reaches(policies, pop, pods[other], 4222), other
        assert not reaches(policies, pop, pods[other], 5432), other
        assert not reaches(policies, pop, pods[other], 8080), other


def test_services_reach_only_what_they_need(
    world: tuple[list[Obj], dict[str, Endpoint]],
) -> None:
    policies, pods = world
    http = pods["inventory"].ports["http"]  # type: ignore[union-attr]
    for name in (*SERVICES, CONTROLLER):
        src = pods[name]
        assert reaches(policies, src, pods["nats"], 4222), name
        assert reaches(policies, src, pods["apiserver"], 443), name
        assert reaches(policies, src, pods["dns"], 53, "UDP"), name
        assert not reaches(policies, src, pods["elsewhere"], 443), name
        assert not reaches(policies, src, pods["stranger"], 8080), name
        db = reaches(policies, src, pods["postgresql"], 5432)
        assert db == (name != CONTROLLER), name
        sources = reaches(policies, src, pods["engine"], 443)
        assert sources == (name in ("inventory", "orchestrator")), name
        for callee in SERVICES:
            calls = reaches(policies, src, pods[callee], http)
            assert calls == (name == "planner" and callee == "inventory"), (name, callee)
    # The console forwards to the four services' APIs and opens nothing else.
    console = pods["console"]
    for callee in SERVICES:
        port = pods[callee].ports["http"]  # type: ignore[union-attr]
        assert reaches(policies, console, pods[callee], port), callee
    for server, port in (("nats", 4222), ("postgresql", 5432), ("apiserver", 443), ("engine", 443)):
        assert not reaches(policies, console, pods[server], port), server
    assert reaches(policies, console, pods["dns"], 53, "UDP")
    # The bundled servers take connections from the release's pods only.
    assert not reaches(policies, pods["populator"], pods["postgresql"], 5432)
    assert not reaches(policies, pods["stranger"], pods["nats"], 4222)


def test_without_addresses_only_the_ports_bound_egress() -> None:
    """The defaults know no addresses: the source and API server ports go anywhere, and
    nothing else does."""
    docs = _render({"rbac": {"targetNamespaces": [TARGET]}})
    policies = r.of_kind(docs, "NetworkPolicy")
    pop = Pod(TARGET, hoist_labels({"metadata": {"labels": {}}}, contract.POPULATOR_COMPONENT))
    assert reaches(policies, pop, Outside(ELSEWHERE), 54322)
    assert not reaches(policies, pop, Outside(ELSEWHERE), 22)
    assert not reaches(policies, pop, Outside(ELSEWHERE), 5432)


def test_populator_namespaces_override_the_target_namespaces() -> None:
    values = {"networkPolicy": {"populators": {"namespaces": ["a", "b"]}}}
    docs = _render(values)
    placed = {
        p["metadata"]["namespace"]
        for p in r.of_kind(docs, "NetworkPolicy")
        if p["metadata"]["name"] == "hoist-populators"
    }
    assert placed == {"a", "b"}
