"""Which Available volume a claim of a static class binds (``shared.volumes``): the
controller's pick and the planner's count must agree with the PersistentVolume
controller's rules."""

from __future__ import annotations

from typing import Any

from shared import populator as contract
from shared import volumes

MiB = 1 << 20


def pv(name: str, size: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    phase = spec.pop("phase", "Available")
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-static",
            **spec,
        },
        "status": {"phase": phase},
    }


def claim(size: str = "10Mi", **spec: Any) -> dict[str, Any]:
    return {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "local-static",
        "resources": {"requests": {"storage": size}},
        "selector": contract.HOLD_SELECTOR,  # Hoist's hold: not the user's selector
        **spec,
    }


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}}


def on(node_name: str) -> dict[str, Any]:
    term = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}}


def test_the_smallest_fitting_available_volume_is_chosen() -> None:
    pvs = [
        pv("small", "8Mi"),
        pv("big", "1Gi"),
        pv("fit-b", "12Mi"),
        pv("fit-a", "12Mi"),
        pv("bound", "10Mi", claimRef={"namespace": "x", "name": "y"}),
        pv("released", "10Mi", phase="Released"),
        pv("block", "10Mi", volumeMode="Block"),
        pv("rox", "10Mi", accessModes=["ReadOnlyMany"]),
        pv("other-class", "10Mi", storageClassName="fast"),
    ]
    assert volumes.best(claim(), pvs)["metadata"]["name"] == "fit-a"  # type: ignore[index]
    assert volumes.best(claim("2Gi"), pvs) is None


def test_no_class_matches_only_volumes_without_one() -> None:
    pvs = [pv("classed", "1Gi"), pv("bare", "1Gi", storageClassName="")]
    chosen = volumes.best(claim(storageClassName=""), pvs)
    assert chosen is not None
    assert chosen["metadata"]["name"] == "bare"
    assert volumes.is_static("", None)
    assert volumes.is_static("local", {"provisioner": volumes.NO_PROVISIONER})
    assert not volumes.is_static("standard", {"provisioner": "csi.example.com"})


def test_the_users_selector_counts_and_hoists_hold_does_not() -> None:
    pvs = [pv("plain", "10Mi"), pv("fast", "20Mi", labels={"tier": "fast"})]
    assert volumes.best(claim(), pvs)["metadata"]["name"] == "plain"  # type: ignore[index]
    wanted = {
        "matchLabels": {"tier": "fast"},
        "matchExpressions": [*contract.HOLD_SELECTOR["matchExpressions"]],
    }
    chosen = volumes.best(claim(selector=wanted), pvs)
    assert chosen is not None
    assert chosen["metadata"]["name"] == "fast"
    assert "tier" in volumes.need(claim(selector=wanted))
    assert "selector" not in volumes.need(claim())


def test_node_affinity_restricts_where_a_volume_serves() -> None:
    pvs = [pv("n1", "10Mi", nodeAffinity=on("node-1")), pv("n2", "20Mi", nodeAffinity=on("node-2"))]
    chosen = volumes.best(claim(), pvs, node("node-2"))
    assert chosen is not None
    assert chosen["metadata"]["name"] == "n2"
    assert volumes.allows_node(pv("any", "1Mi"), node("node-9"))
    by_field = {
        "required": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}
            ]
        }
    }
    assert volumes.allows_node(pv("f", "1Mi", nodeAffinity=by_field), node("a"))
    assert not volumes.allows_node(pv("f", "1Mi", nodeAffinity=by_field), node("b"))


def test_need_says_what_is_missing() -> None:
    assert volumes.need(claim("16Mi", volumeMode="Block")) == (
        'no Available PersistentVolume of class "local-static" with >= '
        f"{16 * MiB} bytes, volumeMode Block, accessModes ReadWriteOnce"
    )
