"""What the API server does to an object before storing it: defaults, rules, schema.

These are the parts of a real server's registry strategies and admission plugins that Hoist
can trip over: object names, label syntax, the defaults clients rely on reading back
(volumeMode, restartPolicy, the default StorageClass, initial phases), Secret encoding, the
fields that are immutable after creation (a PVC's spec, a Pod's spec, a StorageClass), and
finally the upstream schema. Each refusal is the 422 a real cluster would answer.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from sim.kube.errors import ApiError, cause, invalid
from sim.kube.kinds import Kind
from sim.kube.store import Obj, Store
from sim.kube.validation import Validator

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_LABEL_KINDS = frozenset({"Namespace", "Service"})
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def _check_meta(kind: Kind, obj: Obj) -> list[dict[str, str]]:
    meta = obj["metadata"]
    problems: list[dict[str, str]] = []
    name = meta["name"]
    if kind.kind in DNS_LABEL_KINDS:
        if len(name) > 63 or not LABEL.match(name):
            problems.append(
                cause(
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC '
                    "1123 label must consist of lower case alphanumeric characters "
                    "or '-', and must start and end with an alphanumeric character",
                )
            )
    elif kind.group == "rbac.authorization.k8s.io":
        # RBAC names are path segments (``system:basic-user``), as ValidatePathSegmentName.
        if name in (".", "..") or "/" in name or "%" in name:
            problems.append(
                cause("metadata.name", f"Invalid value: \"{name}\": may not contain '/' or '%'")
            )
    elif kind.kind != "Event" and (len(name) > 253 or not SUBDOMAIN.match(name)):
        problems.append(
            cause(
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 '
                "subdomain must consist of lower case alphanumeric characters, '-' "
                "or '.', and must start and end with an alphanumeric character",
            )
        )
    for field in ("labels", "annotations"):
        values = meta.get(field) or {}
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            prefix, _, label_name = str(key).rpartition("/")
            if (
                not LABEL_NAME.match(label_name)
                or len(label_name) > 63
                or (prefix and not SUBDOMAIN.match(prefix))
            ):
                problems.append(
                    cause(
                        f"metadata.{field}",
                        f'Invalid value: "{key}": name part '
                        "must consist of alphanumeric characters, '-', '_' or '.'",
                    )
                )
            elif field == "labels" and (
                not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value)
            ):
                problems.append(
                    cause(
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid '
                        "label must be an empty string or consist of alphanumeric "
                        "characters, '-', '_' or '.' (at most 63)",
                    )
                )
    return problems


def _default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("enableServiceLinks", True)
    for container in spec.get("containers") or []:
        image = str(container.get("image", ""))
        latest = ":" not in image.rpartition("/")[2] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _check_pod(obj: Obj) -> list[dict[str, str]]:
    spec = obj.get("spec") or {}
    problems = []
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    names: set[str] = set()
    containers = spec.get("containers") or []
    if not containers:
        problems.append(cause("spec.containers", "Required value", "FieldValueRequired"))
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        if container.get("name") in names:
            problems.append(
                cause(
                    f"{where}.name",
                    f'Duplicate value: "{container.get("name")}"',
                    "FieldValueDuplicate",
                )
            )
        names.add(container.get("name"))
        for field in ("volumeMounts", "volumeDevices"):
            for n, mount in enumerate(container.get(field) or []):
                if mount.get("name") not in volumes:
                    problems.append(
                        cause(
                            f"{where}.{field}[{n}].name",
                            f'Not found: "{mount.get("name")}"',
                            "FieldValueNotFound",
                        )
                    )
        mounted = {m.get("name") for m in container.get("volumeMounts") or []}
        for n, device in enumerate(container.get("volumeDevices") or []):
            if device.get("name") in mounted:
                problems.append(
                    cause(
                        f"{where}.volumeDevices[{n}].name",
                        "Invalid value: "
                        f'"{device.get("name")}": can only use volume source type '
                        "of PersistentVolumeClaim or Ephemeral for block mode, and "
                        "may not also be mounted",
                    )
                )
    return problems


JOB_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"


def _default_and_check_job(obj: Obj, old: Obj | None) -> list[dict[str, str]]:
    """The Job registry strategy: defaults, the generated selector and template labels
    (``manualSelector`` unset), restartPolicy Never or OnFailure, an immutable template."""
    spec = obj.setdefault("spec", {})
    if old is not None:
        if (old.get("spec") or {}).get("template") != spec.get("template"):
            return [cause("spec.template", "Invalid value: field is immutable")]
        return []
    meta = obj["metadata"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if not spec.get("manualSelector"):
        labels.update(
            {JOB_UID: meta["uid"], JOB_NAME: meta["name"], "controller-uid": meta["uid"],
             "job-name": meta["name"]}
        )  # fmt: skip
        spec["selector"] = {"matchLabels": {JOB_UID: meta["uid"]}}
    pod = {"spec": template.setdefault("spec", {})}
    restart = pod["spec"].get("restartPolicy")
    _default_pod(pod)
    problems = []
    if restart not in ("Never", "OnFailure"):
        pod["spec"]["restartPolicy"] = restart
        problems.append(
            cause(
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart or ""}": supported values: "OnFailure", "Never"',
                "FieldValueNotSupported",
            )
        )
    for field, least in (("backoffLimit", 0), ("activeDeadlineSeconds", 1)):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or value < least):
            problems.append(cause(f"spec.{field}", f"Invalid value: {value}: must be >= {least}"))
    return problems + [
        cause(f"spec.template.{c['field']}", c["message"], c.get("reason", "FieldValueInvalid"))
        for c in _check_pod(pod)
    ]


def _default_pvc(store: Store, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    if "storageClassName" not in spec:
        sc_kind = store.registry.lookup("storage.k8s.io", "v1", "storageclasses")
        assert sc_kind is not None
        defaults = [
            e.obj["metadata"]["name"]
            for e in store.scan(sc_kind)
            if (e.obj["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
        ]
        if defaults:
            spec["storageClassName"] = sorted(defaults)[0]
    # AnyVolumeDataSource: the two fields mirror each other when only one is given.
    if spec.get("dataSource") and not spec.get("dataSourceRef"):
        spec["dataSourceRef"] = dict(spec["dataSource"])
    elif spec.get("dataSourceRef") and not spec.get("dataSource"):
        ref = spec["dataSourceRef"]
        if not ref.get("namespace"):
            spec["dataSource"] = {k: v for k, v in ref.items() if k != "namespace"}


def _check_pvc(obj: Obj) -> list[dict[str, str]]:
    spec = obj.get("spec") or {}
    problems = []
    if not spec.get("accessModes"):
        problems.append(
            cause(
                "spec.accessModes",
                "Required value: at least 1 access mode is required",
                "FieldValueRequired",
            )
        )
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        problems.append(cause("spec.resources[storage]", "Required value", "FieldValueRequired"))
    ref = spec.get("dataSourceRef")
    if ref is not None and not ref.get("name"):
        problems.append(cause("spec.dataSourceRef.name", "Required value", "FieldValueRequired"))
    return problems


def _check_pvc_update(old: Obj, new: Obj) -> list[dict[str, str]]:
    old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    if not old_spec.get("volumeName") and new_spec.get("volumeName"):
        # Binding fills in volumeName once; that is the one change a bound claim allows.
        old_spec["volumeName"] = new_spec["volumeName"]
    for spec in (old_spec, new_spec):
        spec.pop("volumeAttributesClassName", None)
        spec["resources"] = {
            k: v for k, v in (spec.get("resources") or {}).items() if k != "requests"
        }
    if old_spec != new_spec:
        return [
            cause(
                "spec",
                "Forbidden: spec is immutable after creation except "
                "resources.requests and volumeAttributesClassName for bound claims",
                "FieldValueForbidden",
            )
        ]
    return []


def _check_pod_update(old: Obj, new: Obj, binding: bool) -> list[dict[str, str]]:
    def mutable_removed(spec: dict[str, Any]) -> dict[str, Any]:
        spec = dict(spec)
        if binding and not (old.get("spec") or {}).get("nodeName"):
            spec.pop("nodeName", None)  # pods/binding assigns the node, once
        for field in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
            spec.pop(field, None)
        spec["containers"] = [
            {k: v for k, v in c.items() if k != "image"} for c in spec.get("containers") or []
        ]
        return spec

    if mutable_removed(old.get("spec") or {}) != mutable_removed(new.get("spec") or {}):
        return [
            cause(
                "spec",
                "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`, `spec.activeDeadlineSeconds`, "
                "`spec.tolerations` (only additions to existing tolerations)",
                "FieldValueForbidden",
            )
        ]
    return []


def _default_and_check_secret(obj: Obj) -> list[dict[str, str]]:
    obj.setdefault("type", "Opaque")
    data = obj.setdefault("data", {}) or {}
    for key, value in (obj.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data
    problems = []
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            problems.append(cause(f"data[{key}]", "Invalid value: illegal base64 data"))
    if not data:
        obj.pop("data")
    return problems


def _defaults(store: Store, kind: Kind, obj: Obj, old: Obj | None) -> list[dict[str, str]]:
    creating = old is None
    problems: list[dict[str, str]] = []
    match (kind.group, kind.kind):
        case ("", "Namespace"):
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            if creating:
                obj["status"] = {"phase": "Active"}
        case ("", "Secret"):
            problems += _default_and_check_secret(obj)
        case ("", "Pod"):
            if creating:
                _default_pod(obj)
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
                problems += _check_pod(obj)
            else:
                assert old is not None
                problems += _check_pod_update(old, obj, store.subresource == "binding")
        case ("", "PersistentVolumeClaim"):
            if creating:
                _default_pvc(store, obj)
                obj["status"] = {"phase": "Pending"}
                problems += _check_pvc(obj)
            else:
                assert old is not None
                problems += _check_pvc_update(old, obj)
        case ("", "PersistentVolume"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")
            if creating:
                obj["status"] = {"phase": "Pending"}
        case ("storage.k8s.io", "StorageClass"):
            obj.setdefault("reclaimPolicy", "Delete")
            obj.setdefault("volumeBindingMode", "Immediate")
            if old is not None:
                for field in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
                    if old.get(field) != obj.get(field):
                        problems.append(
                            cause(
                                field,
                                f"Forbidden: updates to {field} are forbidden.",
                                "FieldValueForbidden",
                            )
                        )
        case ("batch", "Job"):
            problems += _default_and_check_job(obj, old)
        case ("kubevirt.io", "VirtualMachine"):
            spec = obj.get("spec") or {}
            if "running" in spec and "runStrategy" in spec:
                problems.append(
                    cause(
                        "spec.running",
                        "Invalid value: running and runStrategy are mutually exclusive",
                    )
                )
    return problems


class Admission:
    """The admitter the store calls before every write."""

    def __init__(self, store: Store, validator: Validator) -> None:
        self.store = store
        self.validator = validator

    def __call__(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        problems = _check_meta(kind, obj) + _defaults(self.store, kind, obj, old)
        if not problems:
            problems = self.validator.check(kind, obj)
        if problems:
            raise invalid(kind.kind, kind.group, obj["metadata"].get("name", ""), problems)


def reject_unknown_kind(kind_name: str, api_version: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f"the server could not find the requested resource "
        f'(kind "{kind_name}" in version "{api_version}")',
    )
