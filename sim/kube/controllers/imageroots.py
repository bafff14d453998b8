"""Containers of an image whose root filesystem is on this machine (``ImageRoot``).

Such a container is what a container runtime would make of the image: the program runs
chrooted into the image's tree, with the image's environment and working directory, as
the user the pod's securityContext names (else the image's USER), with the volumes
bind-mounted at their paths inside the tree, and /dev, /proc, /sys, /etc/hosts and
/etc/resolv.conf from the node, as a runtime provides them. readOnlyRootFilesystem makes
the tree read-only (a recursive bind of it onto itself, read-only, in the container's
private mount namespace), so a program that writes where its pod gives it no volume fails
as it would in a cluster. Group ownership of the pod's volumes goes to ``fsGroup``, as the
kubelet gives it, so a non-root program can write them. The network is the node's (each
pod has its own loopback address, as all pods here do).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from sim.kube.config import ImageRoot
from sim.kube.controllers.containers import Mount, PodVolumes, image_name
from sim.kube.controllers.volumes import Obj

#: What a runtime gives every container from the node, target path -> is a file.
_NODE_PATHS = {"/dev": False, "/proc": False, "/sys": False, "/etc/hosts": True}
_RESOLV = "/etc/resolv.conf"


def resolve(roots: dict[str, ImageRoot], image: str) -> ImageRoot | None:
    for key in (image, image_name(image)):
        if key in roots:
            return roots[key]
    return None


def _inside(root: ImageRoot, target: str) -> str:
    return str(root.path / target.lstrip("/"))


def rooted(mounts: list[Mount], root: ImageRoot, read_only: bool = False) -> list[Mount]:
    """The node's paths first, then the pod's mounts, every target inside the image's tree;
    ``read_only`` (readOnlyRootFilesystem): last, the tree with all of those bound onto
    itself, read-only, so only the volumes mounted on it can be written. Last, because a
    target another pod's end removed in between is made again by the mount script, which a
    read-only tree would refuse."""
    node = [Mount(Path(p), _inside(root, p), False, f) for p, f in _NODE_PATHS.items()]
    if Path(_RESOLV).exists():
        node.append(Mount(Path(_RESOLV), _inside(root, _RESOLV), True, True))
    tree = [Mount(root.path, str(root.path), True, recursive=True)] if read_only else []
    pod = [Mount(m.source, _inside(root, m.target), m.read_only, m.is_file) for m in mounts]
    return node + pod + tree


def _security(pod: Obj, container: Obj) -> dict[str, object]:
    return {
        **(pod["spec"].get("securityContext") or {}),
        **(container.get("securityContext") or {}),
    }


def environment(root: ImageRoot, pod: Obj, container: Obj) -> dict[str, str]:
    """The image's ENV, and HOME as a runtime sets it: the user's home in the image's
    /etc/passwd, else /."""
    uid = user(pod, container, root)[0]
    home = "/"
    try:
        for line in (root.path / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 5 and fields[2] == str(uid):
                home = fields[5]
                break
    except OSError:
        pass
    return {"HOME": home, **root.env}


def read_only(pod: Obj, container: Obj) -> bool:
    return bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))


def user(pod: Obj, container: Obj, root: ImageRoot) -> tuple[int, int]:
    """(uid, gid) the program runs as: the container's, then the pod's securityContext,
    then the image's USER (a runtime's order)."""
    image_uid, _, image_gid = root.user.partition(":")
    security = _security(pod, container)
    uid = int(str(security.get("runAsUser", image_uid or 0)))
    gid = int(str(security.get("runAsGroup", image_gid or (uid if image_uid else 0))))
    return uid, gid


def give_fs_group(pod: Obj, volumes: PodVolumes) -> int | None:
    """The kubelet's fsGroup: each persistent volume (directory or block file) and
    emptyDir belongs to that group, group-writable; the program runs with it as a
    supplementary group."""
    group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    if group is None:
        return None
    for name, path in volumes.paths.items():
        if name in volumes.read_only or not path.exists():
            continue
        os.chown(path, -1, int(group))
        mode = path.stat().st_mode
        os.chmod(path, mode | 0o060 | (0o2000 if path.is_dir() else 0))
    return int(group)


def command(
    root: ImageRoot, uid: int, gid: int, groups: list[int], workdir: str, argv: list[str]
) -> list[str]:
    """chroot as the user, then the working directory inside (chroot leaves it at /)."""
    spec = f"--userspec={uid}:{gid}"
    extra = [f"--groups={','.join(str(g) for g in groups)}"] if groups else []
    inner = f'cd {shlex.quote(workdir)} && exec "$@"'
    return ["chroot", spec, *extra, str(root.path), "/bin/sh", "-c", inner, "sh", *argv]
