"""How the kubelet turns a container spec into a process on this machine.

An image is looked up in `ClusterConfig.images` (name without tag or digest -> the argv
of its entrypoint); `command` replaces the entrypoint and `args` are appended, with
`$(VAR)` references expanded as Kubernetes does. The environment comes from `envFrom`
and `env` (literal values, Secret and ConfigMap keys, the downward API). Volumes become
directories and files on the host, bind-mounted at the exact paths the pod spec names in
a private mount namespace (`unshare --mount --propagation private`), so the program sees
the paths a real pod would show; a mount target missing on the host is created there
(and removed by the kubelet when no pod uses it any more).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import os
import re
import shlex
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.kube.controllers.volumes import Obj, backing_path
from sim.kube.store import Store

PR_SET_PDEATHSIG = 1
#: Where every simulated kubelet on this machine notes the placeholders it made on the
#: host (mount targets that did not exist), so that any of them may remove one no pod
#: mounts any more, even one another cluster made.
PLACEHOLDERS = Path("/run/hoist-kube-placeholders")
_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_libc: Any = None


class ConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


class ImageError(Exception):
    """The image is not in the registry (ErrImagePull)."""


class MountError(Exception):
    """A volume cannot be set up yet (FailedMount)."""


def image_name(image: str) -> str:
    """`quay.io/hoist/populator:v1` and `...@sha256:..` -> `quay.io/hoist/populator`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def resolve_image(images: dict[str, list[str]], image: str) -> list[str]:
    for key in (image, image_name(image)):
        if key in images:
            return list(images[key])
    raise ImageError(
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f"{image_name(image)}: not found"
    )


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: unknown references stay, `$$` escapes."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, text)


def argv(entrypoint: list[str], container: Obj, env: dict[str, str]) -> list[str]:
    """Docker's rule: `command` replaces the entrypoint, `args` follow it."""
    command = container.get("command")
    base = [expand(str(a), env) for a in command] if command else list(entrypoint)
    return base + [expand(str(a), env) for a in container.get("args") or []]


# -- environment -------------------------------------------------------------------------


def _decode(data: Obj, key: str, secret: bool) -> str | None:
    if secret:
        value = (data.get("data") or {}).get(key)
        return base64.b64decode(value).decode(errors="replace") if value is not None else None
    value = (data.get("data") or {}).get(key)
    if value is None and key in (data.get("binaryData") or {}):
        return base64.b64decode(data["binaryData"][key]).decode(errors="replace")
    return None if value is None else str(value)


def _source(
    store: Store, kinds: dict[str, Any], namespace: str, secret: bool, name: str
) -> Obj | None:
    found = store.find(kinds["secrets" if secret else "configmaps"], namespace, name)
    return found.obj if found is not None else None


def field_value(pod: Obj, path: str) -> str:
    """The downward API's `fieldRef.fieldPath` for a pod."""
    meta, status = pod["metadata"], pod.get("status") or {}
    match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in values:
        raise ConfigError(f'unsupported fieldPath: "{path}"')
    return str(values[path] or "")


def environment(
    store: Store, kinds: dict[str, Any], pod: Obj, container: Obj, base: dict[str, str]
) -> dict[str, str]:
    """The container's environment; ConfigError names what is missing, as the kubelet does."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        secret = "secretRef" in source
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        obj = _source(store, kinds, namespace, secret, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(
                f'{"secret" if secret else "configmap"} "{ref.get("name")}" not found'
            )
        keys = set((obj.get("data") or {}).keys()) | set((obj.get("binaryData") or {}).keys())
        for key in sorted(keys):
            value = _decode(obj, key, secret)
            if value is not None:
                env[f"{source.get('prefix', '')}{key}"] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, _, resource = str(ref.get("resource", "")).partition(".")
            resources = (container.get("resources") or {}).get(kind) or {}
            env[name] = str(resources.get(resource, "0"))
        else:
            secret = "secretKeyRef" in source
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef") or {}
            what = "Secret" if secret else "ConfigMap"
            obj = _source(store, kinds, namespace, secret, ref.get("name", ""))
            value = _decode(obj, ref.get("key", ""), secret) if obj is not None else None
            if value is None:
                if ref.get("optional"):
                    continue
                if obj is None:
                    raise ConfigError(f'{what.lower()} "{ref.get("name")}" not found')
                raise ConfigError(
                    f"couldn't find key {ref.get('key')} in {what} {namespace}/{ref.get('name')}"
                )
            env[name] = value
    return env


# -- volumes -----------------------------------------------------------------------------


@dataclass
class Mount:
    source: Path
    target: str
    read_only: bool
    #: A file (block device, single file) rather than a directory.
    is_file: bool = False
    #: With the mounts below it (``mount --rbind``).
    recursive: bool = False


@dataclass
class PodVolumes:
    """Where each of a pod's volumes is on the host."""

    paths: dict[str, Path] = field(default_factory=dict)
    read_only: set[str] = field(default_factory=set)
    #: volumeMode of the pod's persistent volumes (the others are all Filesystem).
    modes: dict[str, str] = field(default_factory=dict)


def _write_keys(directory: Path, obj: Obj | None, secret: bool, source: Obj) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if obj is None:
        return
    mode = int(source.get("defaultMode", 0o644))
    keys = set((obj.get("data") or {}).keys()) | set((obj.get("binaryData") or {}).keys())
    wanted = source.get("items") or [{"key": k, "path": k} for k in sorted(keys)]
    for item in wanted:
        key = item["key"]
        if secret:
            raw = (obj.get("data") or {}).get(key)
            content = base64.b64decode(raw) if raw is not None else None
        elif key in (obj.get("data") or {}):
            content = str(obj["data"][key]).encode()
        elif key in (obj.get("binaryData") or {}):
            content = base64.b64decode(obj["binaryData"][key])
        else:
            content = None
        if content is None:
            if source.get("optional"):
                continue
            what = "Secret" if secret else "configmap"
            raise MountError(f"configured key {key} not found in {what} {obj['metadata']['name']}")
        target = directory / item.get("path", key)
        if directory.resolve() not in target.resolve().parents:
            raise MountError(f"invalid path {item.get('path')!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(int(item.get("mode", mode)))


def prepare_volumes(store: Store, kinds: dict[str, Any], pod: Obj, pod_dir: Path) -> PodVolumes:
    """Set up every volume of the pod; MountError says which one is not ready and why."""
    namespace = pod["metadata"]["namespace"]
    result = PodVolumes()
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        local = pod_dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            claim_name = volume["persistentVolumeClaim"].get("claimName", "")
            found = store.find(kinds["persistentvolumeclaims"], namespace, claim_name)
            if found is None:
                raise MountError(f'persistentvolumeclaim "{claim_name}" not found')
            claim = found.obj
            volume_name = claim["spec"].get("volumeName")
            if (claim.get("status") or {}).get("phase") != "Bound" or not volume_name:
                raise MountError(
                    f"unmounted volumes=[{name}], unattached volumes=[{name}]: "
                    f'persistentvolumeclaim "{claim_name}" is not bound'
                )
            pv = store.find(kinds["persistentvolumes"], None, volume_name)
            path = backing_path(pv.obj) if pv is not None else None
            if pv is None or path is None:
                raise MountError(f'volume "{volume_name}" has no data on this node')
            if not path.exists():
                raise MountError(
                    f'MountVolume.NewMounter initialization failed for volume "{volume_name}" '
                    f': path "{path}" does not exist'
                )
            result.paths[name] = path
            result.modes[name] = pv.obj["spec"].get("volumeMode", "Filesystem")
            if volume["persistentVolumeClaim"].get("readOnly"):
                result.read_only.add(name)
        elif "secret" in volume or "configMap" in volume:
            secret = "secret" in volume
            source = volume["secret" if secret else "configMap"]
            ref = source.get("secretName" if secret else "name", "")
            obj = _source(store, kinds, namespace, secret, ref)
            if obj is None and not source.get("optional"):
                kind = "secret" if secret else "configmap"
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{name}" : {kind} "{ref}" not found'
                )
            _write_keys(local, obj, secret, source)
            result.paths[name] = local
            result.read_only.add(name)
        elif "emptyDir" in volume:
            local.mkdir(parents=True, exist_ok=True)
            local.chmod(0o777)
            result.paths[name] = local
        elif "hostPath" in volume:
            host = Path(volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not host.exists():
                host.parent.mkdir(parents=True, exist_ok=True)
                host.touch()
            if not host.exists():
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{name}" : hostPath type check '
                    f"failed: {host} does not exist"
                )
            result.paths[name] = host
        else:
            raise MountError(f'volume "{name}": this simulator does not support its type')
    _check_modes(pod, result)
    return result


def _check_modes(pod: Obj, volumes: PodVolumes) -> None:
    """A Block volume only as a device, anything else only as a mount (the kubelet's rule)."""
    spec = pod["spec"]
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        for where, wanted in (("volumeMounts", "Filesystem"), ("volumeDevices", "Block")):
            for use in container.get(where) or []:
                mode = volumes.modes.get(use["name"], "Filesystem")
                if mode != wanted:
                    raise MountError(
                        f"volume {use['name']} has volumeMode {mode}, but is specified in {where}"
                    )


def container_mounts(container: Obj, volumes: PodVolumes) -> list[Mount]:
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        source = volumes.paths[mount["name"]]
        if mount.get("subPath"):
            source = source / mount["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        read_only = bool(mount.get("readOnly")) or mount["name"] in volumes.read_only
        mounts.append(Mount(source, mount["mountPath"], read_only, source.is_file()))
    for device in container.get("volumeDevices") or []:
        source = volumes.paths[device["name"]]
        mounts.append(Mount(source, device["devicePath"], False, True))
    return mounts


def mount_script(mounts: list[Mount], workdir: str) -> str:
    """The shell that runs inside the new mount namespace, then becomes the program."""
    lines = ["set -e"]
    for mount in mounts:
        source, target = shlex.quote(str(mount.source)), shlex.quote(mount.target)
        # Normally there already (make_target); made again if another cluster on this
        # machine removed a placeholder it had made between then and now.
        note = f"mkdir -p {PLACEHOLDERS}; printf %s {target} > {_note(Path(mount.target))}"
        if mount.is_file:
            parent = shlex.quote(str(Path(mount.target).parent))
            lines.append(f"[ -e {target} ] || {{ mkdir -p {parent}; : > {target}; {note}; }}")
        else:
            lines.append(f"[ -e {target} ] || {{ mkdir -p {target}; {note}; }}")
        lines.append(f"mount {'--rbind' if mount.recursive else '--bind'} {source} {target}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append(f"cd {shlex.quote(workdir)}")
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"


def _note(path: Path) -> Path:
    return PLACEHOLDERS / hashlib.sha256(str(path).encode()).hexdigest()[:32]


def register(paths: list[Path]) -> None:
    """Note placeholders made on the host where every kubelet on this machine looks."""
    if paths:
        PLACEHOLDERS.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in paths:
        _note(path).write_text(str(path))


def registered() -> dict[Path, Path]:
    """Placeholder -> its note, for all the simulated clusters on this machine."""
    result: dict[Path, Path] = {}
    try:
        notes = list(PLACEHOLDERS.iterdir())
    except FileNotFoundError:
        return result
    for note in notes:
        with contextlib.suppress(OSError):
            result[Path(note.read_text())] = note
    return result


def make_target(path: Path, is_file: bool) -> list[Path]:
    """Create a missing mount target on the host; returns what was created, outermost first."""
    created: list[Path] = []
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    for part in missing:
        if part == path and is_file:
            part.touch()
        else:
            part.mkdir()
        created.append(part)
    register(created)
    if path.exists() and path.is_dir() == is_file:
        raise MountError(
            f"mount target {path} exists as a {'directory' if path.is_dir() else 'file'}"
        )
    return created


def sweep(in_use: set[Path], freed: set[Path] | None = None) -> None:
    """Remove placeholders no pod mounts any more, innermost first.

    Placeholders of every simulated cluster on this machine are candidates (one may
    have made what another still uses, or left one behind in a race), but only empty
    directories and empty files are ever removed, never while mounted in any mount
    namespace, and never one of `in_use`. With `freed`, only those and their parents
    are looked at (a pod ending must not cost a look at every other pod's mounts)."""
    notes = registered()
    candidates = set(notes) - in_use
    if freed is not None:
        wanted = freed | {parent for path in freed for parent in path.parents}
        candidates &= wanted
    if not candidates:
        return
    busy = mounted_anywhere(candidates)
    for part in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if part in busy:
            continue
        try:
            if part.is_dir() and not part.is_symlink():
                part.rmdir()
            elif part.is_file() and part.stat().st_size == 0:
                part.unlink()
            # Anything else now holds someone's data: not a placeholder any more.
        except FileNotFoundError:
            pass
        except OSError:
            continue  # not empty: a parent of a target still in use
        notes[part].unlink(missing_ok=True)


def mounted_anywhere(paths: set[Path]) -> set[Path]:
    """Which of these paths are mount points in any mount namespace on this machine."""
    wanted = {str(p) for p in paths}
    found: set[Path] = set()
    namespaces: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            namespace = os.readlink(proc / "ns" / "mnt")
            if namespace in namespaces:
                continue
            namespaces.add(namespace)
            table = (proc / "mountinfo").read_text()
        except OSError:
            continue  # gone, or not ours to read
        for line in table.splitlines():
            fields = line.split(" ")
            if len(fields) > 4:
                point = fields[4].replace("\\040", " ").replace("\\011", "\t")
                if point in wanted:
                    found.add(Path(point))
    return found


# -- processes ---------------------------------------------------------------------------


def die_with_parent() -> None:
    """In the child before exec: its own process group, and SIGKILL if we die."""
    global _libc
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def load_libc() -> None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:  # pragma: no cover - every Linux has a libc
            _libc = None


def port_in_use(ip: str, port: int, protocol: str = "TCP") -> bool:
    kind = socket.SOCK_DGRAM if protocol == "UDP" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return True
    return False


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
