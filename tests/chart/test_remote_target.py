"""The remote-side manifest (``charts/remote-target.yaml``, ``python -m tools.remoterbac``):
valid for every Kubernetes version the chart supports, the definitions exactly the
controller's, and an identity that may do what Hoist does there and nothing that would
let a stolen token redefine an API or grant itself more."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared import populator as contract
from shared import remotetarget
from tests.chart import rendering as r
from tests.chart.validating import problems
from tools import remoterbac

FILE = Path(__file__).resolve().parents[2] / "charts" / "remote-target.yaml"


@pytest.mark.parametrize("version", r.KUBE_VERSIONS)
def test_every_object_is_valid(version: str) -> None:
    docs = list(yaml.safe_load_all(FILE.read_text()))
    assert docs == remotetarget.manifest()
    assert [p for doc in docs for p in problems(doc, version)] == []


def test_names_can_be_chosen() -> None:
    docs = list(yaml.safe_load_all(remoterbac.render("mig", "tools")))
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mig", "namespace": "tools"}]
    assert binding["roleRef"]["name"] == "mig"


def test_the_remote_identity_is_least_privilege() -> None:
    rules = remotetarget.cluster_role_rules()
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert all("*" not in verbs for verbs in granted.values())
    assert not any(group == "rbac.authorization.k8s.io" for group, _ in granted)
    # Definitions: read, never written (the admin applies them).
    assert granted["apiextensions.k8s.io", "customresourcedefinitions"] == {"get"}
    assert granted["populator.storage.k8s.io", "volumepopulators"] == {"get"}
    # No cluster-scoped writes but the volumes the controller rebinds (and pins, for a
    # static class: it lists the Available ones).
    assert granted["", "persistentvolumes"] == {"get", "list", "watch", "patch"}
    assert granted["", "namespaces"] == {"get", "list", "watch"}
    assert granted["storage.k8s.io", "storageclasses"] == {"get", "list", "watch"}
    # What each service does there is covered: the controller's CR status, the
    # orchestrator's CRs, the progress service's pod proxy.
    for kind in contract.KINDS:
        assert {"patch", "update"} <= granted[contract.GROUP, f"{kind.plural}/status"]
        assert {"create", "delete", "watch"} <= granted[contract.GROUP, kind.plural]
    assert granted["", "pods/proxy"] == {"get"}


def _granted() -> dict[tuple[str, str], set[str]]:
    return {
        (group, resource): set(rule["verbs"])
        for rule in remotetarget.cluster_role_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_the_remote_identity_covers_what_the_controller_and_inventory_call() -> None:
    """The remote rules mirror the controller's and the inventory's needs as data: every
    call either makes in a target cluster must be granted there (the definitions only read,
    since the remote admin applies them), or a remote cluster fails where the local works."""
    from services.controller import rbac
    from services.inventory.sources.kubevirt.kinds import SPECS

    granted = _granted()
    definitions = {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("populator.storage.k8s.io", "volumepopulators"),
    }
    for rule in rbac.cluster_role_rules():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if (group, resource) in definitions:
                    continue
                missing = set(rule["verbs"]) - granted.get((group, resource), set())
                assert not missing, (group, resource, missing)
    for spec in SPECS:
        wanted = {"get", "list", "watch"}
        missing = wanted - granted.get((spec.resource.group, spec.resource.plural), set())
        assert not missing, (spec.resource.plural, missing)
