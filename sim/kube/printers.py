"""The columns `kubectl get` prints: the API server's Table conversion per kind.

kubectl renders whatever columns the server's Table answer defines and hides those with a
priority above 0 unless asked for `-o wide`. A real API server computes the built-in kinds'
cells in Go printers (a pod's READY and STATUS, a claim's ACCESS MODES); custom resources get
their CRD's additionalPrinterColumns, each a JSONPath, with `date` columns shown as ages.
The printers below compute the cells the way `pkg/printers/internalversion` does for the
kinds an administrator inspects during a migration; any other kind gets its simple columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
NONE = "<none>"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    priority: int
    cell: Callable[[Obj], Any]
    format: str = ""


def age(timestamp: Any) -> str:
    """The server's short human duration (`5s`, `3m`, `2h`, `4d`)."""
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


_STEP = re.compile(r"\.([^.\[]+)|\[\?\(@\.([\w.]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]|\[(\d+)\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The JSONPath subset of printer columns: `.a.b`, `[0]`, `[?(@.type=='Ready')]`."""
    values = [obj]
    at = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None:
            return None
        at = match.end()
        field, key, wanted, index = match.groups()
        out: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, dict) and field in value:
                out.append(value[field])
            elif key is not None and isinstance(value, list):
                out += [i for i in value if isinstance(i, dict) and str(i.get(key)) == wanted]
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                out.append(value[int(index)])
        values = out
    return values[0] if values else None


def custom(columns: tuple[tuple[Any, ...], ...]) -> list[Column]:
    """A CRD's additionalPrinterColumns (name, jsonPath, type, priority) after the name."""

    def cell(path: str, kind: str) -> Callable[[Obj], Any]:
        def read(obj: Obj) -> Any:
            value = jsonpath(obj, path)
            if kind == "date":
                return age(value) if value is not None else NONE
            return value

        return read

    out = [_name()]
    for column in columns:
        name, path, kind = column[0], column[1], column[2]
        priority = column[3] if len(column) > 3 else 0
        shown = "string" if kind == "date" else kind
        out.append(Column(name, shown, int(priority), cell(path, kind)))
    return out


def simple(columns: tuple[tuple[Any, ...], ...]) -> list[Column]:
    """A built-in kind without a printer of its own: its columns, then AGE."""
    return [*custom(columns), _age_column()]


def _name() -> Column:
    return Column("Name", "string", 0, lambda o: o["metadata"]["name"], "name")


def _age_column() -> Column:
    return Column("Age", "string", 0, lambda o: age(o["metadata"].get("creationTimestamp")))


# -- nodes ---------------------------------------------------------------------------------


def _node_status(node: Obj) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    states = ["Ready" if ready and ready.get("status") == "True" else "NotReady"]
    if not ready:
        states = ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    return ",".join(states)


def _node_roles(node: Obj) -> str:
    labels = node["metadata"].get("labels") or {}
    roles = sorted(
        key.partition("/")[2] for key in labels if key.startswith("node-role.kubernetes.io/")
    )
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    return ",".join(r for r in roles if r) or NONE


def _address(kind: str) -> Callable[[Obj], str]:
    def read(node: Obj) -> str:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == kind:
                return str(address.get("address"))
        return NONE

    return read


def _info(key: str) -> Callable[[Obj], str]:
    return lambda node: ((node.get("status") or {}).get("nodeInfo") or {}).get(key) or NONE


NODE = [
    _name(),
    Column("Status", "string", 0, _node_status),
    Column("Roles", "string", 0, _node_roles),
    _age_column(),
    Column("Version", "string", 0, _info("kubeletVersion")),
    Column("Internal-IP", "string", 1, _address("InternalIP")),
    Column("External-IP", "string", 1, _address("ExternalIP")),
    Column("OS-Image", "string", 1, _info("osImage")),
    Column("Kernel-Version", "string", 1, _info("kernelVersion")),
    Column("Container-Runtime", "string", 1, _info("containerRuntimeVersion")),
]


# -- pods ----------------------------------------------------------------------------------


def _statuses(pod: Obj) -> list[Obj]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _pod_ready(pod: Obj) -> str:
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in _statuses(pod) if s.get("ready"))
    return f"{ready}/{total}"


def _pod_status(pod: Obj) -> str:
    """The reason column of kubectl: Terminating, a waiting or terminated reason, or the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in _statuses(pod):
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            code = state["terminated"].get("exitCode", 0)
            signal = state["terminated"].get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{code}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(pod: Obj) -> str:
    return str(sum(int(s.get("restartCount") or 0) for s in _statuses(pod)))


def _gates(pod: Obj) -> str:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return NONE
    conditions = {
        c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []
    }
    met = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{met}/{len(gates)}"


POD = [
    _name(),
    Column("Ready", "string", 0, _pod_ready),
    Column("Status", "string", 0, _pod_status),
    Column("Restarts", "string", 0, _pod_restarts),
    _age_column(),
    Column("IP", "string", 1, lambda p: (p.get("status") or {}).get("podIP") or NONE),
    Column("Node", "string", 1, lambda p: (p.get("spec") or {}).get("nodeName") or NONE),
    Column(
        "Nominated Node",
        "string",
        1,
        lambda p: (p.get("status") or {}).get("nominatedNodeName") or NONE,
    ),
    Column("Readiness Gates", "string", 1, _gates),
]


# -- volumes -------------------------------------------------------------------------------

_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _modes(modes: Any) -> str:
    return ",".join(_MODES.get(m, m) for m in modes or [])


def _phase(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return str((obj.get("status") or {}).get("phase") or "")


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _bound(claim: Obj, key: str) -> Any:
    """A claim's capacity and access modes show once it is bound (empty before)."""
    if not _spec(claim).get("volumeName"):
        return ""
    return (claim.get("status") or {}).get(key)


PVC = [
    _name(),
    Column("Status", "string", 0, _phase),
    Column("Volume", "string", 0, lambda c: _spec(c).get("volumeName") or ""),
    Column("Capacity", "string", 0, lambda c: (_bound(c, "capacity") or {}).get("storage", "")),
    Column("Access Modes", "string", 0, lambda c: _modes(_bound(c, "accessModes"))),
    Column("StorageClass", "string", 0, lambda c: _spec(c).get("storageClassName") or ""),
    Column(
        "VolumeAttributesClass",
        "string",
        0,
        lambda c: _spec(c).get("volumeAttributesClassName") or "<unset>",
    ),
    _age_column(),
    Column("VolumeMode", "string", 1, lambda c: _spec(c).get("volumeMode") or "Filesystem"),
]


def _claim(volume: Obj) -> str:
    ref = _spec(volume).get("claimRef") or {}
    return f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else ""


PV = [
    _name(),
    Column("Capacity", "string", 0, lambda v: (_spec(v).get("capacity") or {}).get("storage", "")),
    Column("Access Modes", "string", 0, lambda v: _modes(_spec(v).get("accessModes"))),
    Column(
        "Reclaim Policy", "string", 0, lambda v: _spec(v).get("persistentVolumeReclaimPolicy", "")
    ),
    Column("Status", "string", 0, _phase),
    Column("Claim", "string", 0, _claim),
    Column("StorageClass", "string", 0, lambda v: _spec(v).get("storageClassName") or ""),
    Column(
        "VolumeAttributesClass",
        "string",
        0,
        lambda v: _spec(v).get("volumeAttributesClassName") or "<unset>",
    ),
    Column("Reason", "string", 0, lambda v: (v.get("status") or {}).get("reason") or ""),
    _age_column(),
    Column("VolumeMode", "string", 1, lambda v: _spec(v).get("volumeMode") or "Filesystem"),
]

# -- configuration, storage classes, events -------------------------------------------------

_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def _class_name(sc: Obj) -> str:
    default = (sc["metadata"].get("annotations") or {}).get(_DEFAULT_CLASS) == "true"
    return str(sc["metadata"]["name"]) + (" (default)" if default else "")


STORAGE_CLASS = [
    Column("Name", "string", 0, _class_name, "name"),
    Column("Provisioner", "string", 0, lambda c: c.get("provisioner", "")),
    Column("ReclaimPolicy", "string", 0, lambda c: c.get("reclaimPolicy") or "Delete"),
    Column("VolumeBindingMode", "string", 0, lambda c: c.get("volumeBindingMode") or "Immediate"),
    Column("AllowVolumeExpansion", "boolean", 0, lambda c: bool(c.get("allowVolumeExpansion"))),
    _age_column(),
]


def _config_entries(config_map: Obj) -> int:
    return len(config_map.get("data") or {}) + len(config_map.get("binaryData") or {})


CONFIG_MAP = [
    _name(),
    Column(
        "Data", "integer", 0, lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})
    ),
    _age_column(),
]

SECRET = [
    _name(),
    Column("Type", "string", 0, lambda s: s.get("type") or "Opaque"),
    Column("Data", "integer", 0, lambda s: len(s.get("data") or {})),
    _age_column(),
]

SERVICE_ACCOUNT = [
    _name(),
    Column("Secrets", "integer", 0, lambda a: len(a.get("secrets") or [])),
    _age_column(),
]

CRD = [
    _name(),
    Column("Created At", "date", 0, lambda c: c["metadata"].get("creationTimestamp")),
]


def _involved(event: Obj) -> str:
    ref = event.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _source(event: Obj) -> str:
    source = event.get("source") or {}
    where = source.get("component") or event.get("reportingComponent") or ""
    return f"{where}, {source['host']}" if source.get("host") else where


EVENT = [
    Column("Last Seen", "string", 0, lambda e: age(e.get("lastTimestamp") or e.get("eventTime"))),
    Column("Type", "string", 0, lambda e: e.get("type", "")),
    Column("Reason", "string", 0, lambda e: e.get("reason", "")),
    Column("Object", "string", 0, _involved),
    Column(
        "Subobject", "string", 1, lambda e: (e.get("involvedObject") or {}).get("fieldPath", "")
    ),
    Column("Source", "string", 1, _source),
    Column("Message", "string", 0, lambda e: e.get("message", "")),
    Column("First Seen", "string", 1, lambda e: age(e.get("firstTimestamp"))),
    Column("Count", "integer", 1, lambda e: int(e.get("count") or 1)),
    Column("Name", "string", 1, lambda e: e["metadata"]["name"], "name"),
]

BUILTIN = {
    ("", "ConfigMap"): CONFIG_MAP,
    ("", "Secret"): SECRET,
    ("", "ServiceAccount"): SERVICE_ACCOUNT,
    ("", "Event"): EVENT,
    ("storage.k8s.io", "StorageClass"): STORAGE_CLASS,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): CRD,
    ("", "Node"): NODE,
    ("", "Pod"): POD,
    ("", "PersistentVolumeClaim"): PVC,
    ("", "PersistentVolume"): PV,
}


def columns_of(
    group: str, kind: str, declared: tuple[tuple[Any, ...], ...], crd: bool
) -> list[Column]:
    """A built-in printer, a CRD's declared columns (NAME and AGE when it declares none)."""
    if (group, kind) in BUILTIN:
        return BUILTIN[(group, kind)]
    if crd and declared:
        return custom(declared)
    return simple(declared)
