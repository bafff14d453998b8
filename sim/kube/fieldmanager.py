"""Field ownership: `metadata.managedFields` and server-side apply conflicts.

Every write through the API records which field manager set which fields, as the API
server's field manager does: an update (create, PUT, any non-apply PATCH) takes the fields
it changed from whoever owned them; an apply owns exactly the fields of its configuration,
refuses (409, one cause per field) to change a field another manager owns to another value
unless forced (`--force-conflicts` takes ownership), shares a field set to the same value,
and removes the fields it applied before and no longer applies when nobody else owns them.
Clients rely on this: `kubectl apply --server-side` is how two tools split one object.

Fields are paths of FieldsV1 elements: `f:<name>` for a struct or map member, `k:{"key":...}`
for an item of a list merged by key (the strategic-merge keys of `sim.kube.patching`),
`v:<json>` for a member of a set list; any other list is atomic (one leaf).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.patching import MERGE_KEYS, SET_LISTS, strategic_merge

Path = tuple[str, ...]
Obj = dict[str, Any]
MARK = object()  # a node owned as such (a list item, a map): its leaves are compared
#: maps of free-form keys (FieldsV1 marks them with "." as it marks list items).
MAP_FIELDS = frozenset(
    {"labels", "annotations", "data", "binaryData", "stringData", "matchLabels"}
    | {"nodeSelector", "requests", "limits", "capacity", "parameters", "selector"}
)
_SERVER_META = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp"}
    | {"deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"}
)


@dataclass(frozen=True)
class Writer:
    """Who is writing in the current request, and how."""

    manager: str
    operation: str  # "Update", or "Apply" (the object then carries its computed managedFields)
    subresource: str | None = None


_WRITER: ContextVar[Writer | None] = ContextVar("hoist_sim_writer", default=None)


@contextmanager
def writing(writer: Writer) -> Iterator[None]:
    token = _WRITER.set(writer)
    try:
        yield
    finally:
        _WRITER.reset(token)


def manager_of(field_manager: str | None, user_agent: str) -> str:
    """The fieldManager query, else the user agent up to its first "/" (the server's rule)."""
    return field_manager or user_agent.split("/")[0][:128] or "unknown"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- field sets ----------------------------------------------------------------------------


def fields(obj: Obj | None, subresource: str | None, status: bool) -> dict[Path, Any]:
    """Every owned path of an object with its value (MARK for nodes owned as such)."""
    out: dict[Path, Any] = {}
    if not obj:
        return out
    for key, value in obj.items():
        skipped = status and (key == "status") != (subresource == "status")
        if key in ("apiVersion", "kind") or skipped:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in _SERVER_META:
                    _walk(mvalue, ("f:metadata", f"f:{mkey}"), out, mkey)
            continue
        _walk(value, (f"f:{key}",), out, key)
    return out


def _walk(value: Any, path: Path, out: dict[Path, Any], name: str) -> None:
    key = MERGE_KEYS.get(name)
    if isinstance(value, dict) and value:
        if name in MAP_FIELDS:
            out[path] = MARK
        for child, item in value.items():
            _walk(item, (*path, f"f:{child}"), out, child)
    elif (
        isinstance(value, list)
        and value
        and key
        and all(isinstance(i, dict) and key in i for i in value)
    ):
        for item in value:
            element = (*path, "k:" + json.dumps({key: item[key]}, separators=(",", ":")))
            out[element] = MARK
            for child, sub in item.items():
                _walk(sub, (*element, f"f:{child}"), out, child)
    elif isinstance(value, list) and value and name in SET_LISTS:
        for item in value:
            out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = item
    else:
        out[path] = value


def encode(paths: set[Path]) -> Obj:
    """FieldsV1: a tree of path elements, "." marking a node owned itself."""
    root: Obj = {}
    ends = []
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
        ends.append(node)
    for node in ends:
        if node and "." not in node:  # owned itself, and parent of other owned paths
            node["."] = {}
    return root


def decode(tree: Any, path: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for element, sub in tree.items():
        if element == ".":
            out.add(path)
        elif isinstance(sub, dict) and sub:
            out |= decode(sub, (*path, element))
        else:
            out.add((*path, element))
    return out


Key = tuple[str, str, str, str | None]  # manager, operation, apiVersion, subresource


def owners(obj: Obj | None) -> dict[Key, tuple[set[Path], str]]:
    """The recorded field sets of an object, with each entry's time."""
    out: dict[Key, tuple[set[Path], str]] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, dict) or not entry.get("manager"):
            continue
        key = (
            str(entry["manager"]),
            str(entry.get("operation") or "Update"),
            str(entry.get("apiVersion") or ""),
            entry.get("subresource") or None,
        )
        out[key] = (decode(entry.get("fieldsV1")), str(entry.get("time") or _now()))
    return out


def _entries(sets: dict[Key, tuple[set[Path], str]]) -> list[Obj]:
    entries = []
    for (manager, operation, api_version, subresource), (paths, time) in sets.items():
        if not paths:
            continue
        entry: Obj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode(paths),
        }
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
    return entries


# -- the store's hook ----------------------------------------------------------------------


def track(kind: Kind, old: Obj | None, new: Obj) -> None:
    """Set `new`'s managedFields for the write the current request makes."""
    writer = _WRITER.get()
    meta = new.setdefault("metadata", {})
    if writer is None or writer.operation == "Apply":
        # a controller's own write (keeps the record), or an apply (computed it already)
        if "managedFields" not in meta and old is not None:
            recorded = (old.get("metadata") or {}).get("managedFields")
            if recorded:
                meta["managedFields"] = copy.deepcopy(recorded)
        return
    sub = writer.subresource
    before = fields(old, sub, kind.status)
    after = fields(new, sub, kind.status)
    changed = {p for p, v in after.items() if p not in before or (v is not MARK and before[p] != v)}
    sets = owners(old)
    mine: Key = (writer.manager, "Update", kind.api_version, sub)
    for key, (paths, time) in list(sets.items()):
        if key != mine:
            sets[key] = ((paths - changed) & after.keys(), time)
    paths, time = sets.get(mine, (set(), _now()))
    sets[mine] = ((paths | changed) & after.keys(), _now() if changed else time)
    meta["managedFields"] = _entries(sets)


# -- server-side apply ---------------------------------------------------------------------


def apply(kind: Kind, current: Obj | None, config: Obj, writer: Writer, force: bool) -> Obj:
    """The object an apply produces, its managedFields set; 409 on conflicts unless forced."""
    sub, status = writer.subresource, kind.status
    applied = fields(config, sub, status)
    present = fields(current, sub, status)
    sets = owners(current)
    mine: Key = (writer.manager, "Apply", kind.api_version, sub)
    conflicts: dict[Key, list[Path]] = {}
    for key, (paths, _) in sets.items():
        if key == mine:
            continue
        for path in sorted(paths & applied.keys()):
            if applied[path] is not MARK and present.get(path, MARK) != applied[path]:
                conflicts.setdefault(key, []).append(path)
    if conflicts and not force:
        raise _conflict(conflicts)
    for key, taken in conflicts.items():
        paths, time = sets[key]
        sets[key] = (paths - set(taken), time)
    before, _ = sets.get(mine, (set(), ""))
    others = set().union(*(paths for key, (paths, _) in sets.items() if key != mine))
    merged = strategic_merge(current or {}, config)
    for path in sorted(before - applied.keys(), key=len, reverse=True):
        if not any(p[: len(path)] == path for p in others):
            _remove(merged, path)
    sets[mine] = (set(applied), _now())
    after = fields(merged, sub, status)
    for key, (paths, time) in list(sets.items()):
        sets[key] = (paths & after.keys(), time)
    merged.setdefault("metadata", {})["managedFields"] = _entries(sets)
    return dict(merged)


def _remove(obj: Obj, path: Path) -> None:
    """Remove one path (a leaf, a keyed list item, a set member) and the empties it leaves."""
    trail: list[tuple[Any, Any]] = []
    node: Any = obj
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f" and isinstance(node, dict) and rest in node:
            trail.append((node, rest))
            node = node[rest]
        elif kind == "k" and isinstance(node, list):
            wanted = json.loads(rest)
            index = next(
                (
                    i
                    for i, item in enumerate(node)
                    if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())
                ),
                None,
            )
            if index is None:
                return
            trail.append((node, index))
            node = node[index]
        elif kind == "v" and isinstance(node, list) and json.loads(rest) in node:
            trail.append((node, node.index(json.loads(rest))))
            node = None
        else:
            return
    for container, at in reversed(trail):
        del container[at]
        if container or container is obj:
            break


def _field_path(path: Path) -> str:
    out = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind == "k":
            keys = ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(rest).items())
            out += f"[{keys}]"
        else:
            out += f"[={rest}]"
    return out


def _conflict(conflicts: dict[Key, list[Path]]) -> ApiError:
    """The 409 of structured-merge-diff: one line per manager, one cause per field."""
    parts, causes, count = [], [], 0
    for (manager, _, api_version, sub), paths in conflicts.items():
        where = f' with subresource "{sub}"' if sub else f" using {api_version}"
        count += len(paths)
        if len(paths) == 1:
            parts.append(f'conflict with "{manager}"{where}: {_field_path(paths[0])}')
        else:
            listed = "".join(f"\n- {_field_path(p)}" for p in paths)
            parts.append(f'conflicts with "{manager}"{where}:{listed}')
        causes += [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{manager}"{where}',
                "field": _field_path(p),
            }
            for p in paths
        ]
    plural = "s" if count > 1 else ""
    return ApiError(
        409,
        "Conflict",
        f"Apply failed with {count} conflict{plural}: " + "\n".join(parts),
        details={"causes": causes},
    )


def serve_apply(
    store: Any,
    kind: Kind,
    namespace: str | None,
    name: str,
    subresource: str | None,
    field_manager: str | None,
    force: bool,
    config: Any,
) -> tuple[int, Obj]:
    """A PATCH of type apply-patch+yaml: (code, object) as the API server answers it."""
    if not field_manager:
        raise ApiError(
            400,
            "BadRequest",
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
            "is required for apply patch",
        )
    if not isinstance(config, dict):
        raise ApiError(400, "BadRequest", "an apply configuration must be an object")
    meta = config.get("metadata") or {}
    if meta.get("name", name) != name:
        raise ApiError(
            400,
            "BadRequest",
            f"the name of the object ({meta.get('name')}) does not match the name on "
            f"the URL ({name})",
        )
    found = store.find(kind, namespace, name)
    current = found.obj if found is not None else None
    if current is None and subresource is not None:
        store.entry(kind, namespace, name)  # the 404
    writer = Writer(field_manager, "Apply", subresource)
    merged = apply(kind, current, config, writer, force)
    with writing(writer):
        if current is None:
            merged.setdefault("metadata", {})["name"] = name
            return 201, store.create(kind, merged, namespace)
        return 200, store.update(
            kind, merged, subresource=subresource, namespace=namespace, name=name
        )
