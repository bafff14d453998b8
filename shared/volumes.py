"""Statically provisioned volumes: which Available PersistentVolume a claim may bind, the
way Kubernetes' PersistentVolume controller decides it.

Two parties ask the same question and must answer it alike: the inventory counts the
Available volumes per class and size for the planner (a plan onto a class with no volume
that fits is a problem at validation), and the populator controller picks the volume a
prime claim is pinned to. The rules are the real controller's (``FindMatchingVolume``):
same class (``""`` matches only volumes without one), same volume mode, the claim's
access modes all offered, capacity at least the request, the claim's label selector, and
(when a node is given) the volume's node affinity; of those that fit, the smallest, so a
small disk does not take the large volume a large one needs.

Stdlib, ``shared.quantity`` and the contract's keys only: the controller imports it on
every reconcile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.populator.keys import HOLD
from shared.quantity import size_bytes

NO_PROVISIONER = "kubernetes.io/no-provisioner"
"""The provisioner of a class whose volumes an administrator creates by hand."""
FILESYSTEM = "Filesystem"

Obj = Mapping[str, Any]


def is_static(class_name: str, storage_class: Obj | None) -> bool:
    """Whether claims of the class bind only pre-created volumes: no class at all
    (``storageClassName: ""``) or one whose provisioner is ``kubernetes.io/no-provisioner``."""
    if not class_name:
        return True
    return bool(storage_class is not None and storage_class.get("provisioner") == NO_PROVISIONER)


def capacity(pv: Obj) -> int:
    value = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
    try:
        return size_bytes(value) if value is not None else 0
    except ValueError:
        return 0


def is_available(pv: Obj) -> bool:
    """Available and claimed by nobody (not even pre-bound by name), not being deleted."""
    return (
        (pv.get("status") or {}).get("phase") == "Available"
        and not (pv.get("spec") or {}).get("claimRef")
        and not (pv.get("metadata") or {}).get("deletionTimestamp")
    )


def _expression_holds(expression: Obj, labels: Mapping[str, str]) -> bool:
    key, operator = str(expression.get("key", "")), str(expression.get("operator", ""))
    values = [str(v) for v in expression.get("values") or []]
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False  # an operator the API server would have refused


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A claim's label selector (``matchLabels`` and ``matchExpressions``, ANDed); none
    selects every volume."""
    if not selector:
        return True
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    return all(_expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def node_terms(pv: Obj) -> list[Obj]:
    """The volume's ``nodeAffinity.required`` terms ([]: any node may use it)."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    return list(required.get("nodeSelectorTerms") or [])


def node_names(pv: Obj) -> list[str]:
    """The node names a local volume's affinity lists (its ``In`` values; [] for none)."""
    return sorted(
        {
            str(v)
            for term in node_terms(pv)
            for e in term.get("matchExpressions") or []
            if e.get("operator") == "In"
            for v in e.get("values") or []
        }
    )


def allows_node(pv: Obj, node: Obj) -> bool:
    """Whether a pod on ``node`` may use the volume (terms ORed, expressions ANDed; a
    ``matchFields`` term can only name ``metadata.name``)."""
    terms = node_terms(pv)
    if not terms:
        return True
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    fields = {"metadata.name": str(meta.get("name", ""))}
    for term in terms:
        expressions = term.get("matchExpressions") or []
        by_field = term.get("matchFields") or []
        if not expressions and not by_field:
            continue  # an empty term selects nothing
        if all(_expression_holds(e, labels) for e in expressions) and all(
            _expression_holds(e, fields) for e in by_field
        ):
            return True
    return False


def fits(claim_spec: Obj, pv: Obj) -> bool:
    """The volume serves the claim (class, mode, access modes, size, selector), whoever
    holds it."""
    spec = pv.get("spec") or {}
    if str(claim_spec.get("storageClassName") or "") != str(spec.get("storageClassName") or ""):
        return False
    if (claim_spec.get("volumeMode") or FILESYSTEM) != (spec.get("volumeMode") or FILESYSTEM):
        return False
    if not set(claim_spec.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    requested = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage")
    if requested is None or capacity(pv) < size_bytes(requested):
        return False
    labels = (pv.get("metadata") or {}).get("labels") or {}
    return selects(user_selector(claim_spec), labels)


def requested_bytes(claim_spec: Obj) -> int:
    """What the claim asks for, in bytes (0 when it asks nothing)."""
    requested = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage")
    return size_bytes(requested) if requested is not None else 0


def user_selector(claim_spec: Obj) -> Obj | None:
    """The claim's selector without Hoist's hold (``shared.populator.HOLD_SELECTOR``): what
    the volume filled for the claim must match."""
    selector = claim_spec.get("selector")
    if not selector:
        return None
    expressions = [e for e in selector.get("matchExpressions") or [] if e.get("key") != HOLD]
    kept = (
        {**selector, "matchExpressions": expressions}
        if expressions
        else {k: v for k, v in selector.items() if k != "matchExpressions"}
    )
    return kept or None


def best(claim_spec: Obj, pvs: Iterable[Obj], node: Obj | None = None) -> Obj | None:
    """The smallest Available volume that fits (ties: by name, so two looks agree)."""
    fitting = [
        pv
        for pv in pvs
        if is_available(pv) and fits(claim_spec, pv) and (node is None or allows_node(pv, node))
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda pv: (capacity(pv), str(pv["metadata"]["name"])))


def need(claim_spec: Obj) -> str:
    """What a fitting volume must be, in the words a waiting reason uses."""
    class_name = str(claim_spec.get("storageClassName") or "")
    requested = ((claim_spec.get("resources") or {}).get("requests") or {}).get("storage", "?")
    modes = ",".join(claim_spec.get("accessModes") or []) or "any"
    what = f'of class "{class_name}"' if class_name else 'without a class (storageClassName "")'
    text = (
        f"no Available PersistentVolume {what} with >= {size_bytes(requested)} bytes, "
        f"volumeMode {claim_spec.get('volumeMode') or FILESYSTEM}, accessModes {modes}"
    )
    if selector := user_selector(claim_spec):
        text += f", matching selector {dict(selector)}"
    return text


def bound_to(pv: Obj, namespace: str, name: str, uid: str = "") -> bool:
    """Whether the volume's claimRef names the claim (by uid too once it carries one)."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if ref.get("namespace") != namespace or ref.get("name") != name:
        return False
    return not uid or not ref.get("uid") or ref.get("uid") == uid
