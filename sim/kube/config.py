"""How a simulated cluster is shaped: nodes, storage, images, controllers, faults.

One dataclass, filled from keyword arguments in tests and from a YAML file or flags for
`python -m sim.kube`; the defaults give a small but complete cluster that starts in well
under a second.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The provisioner name of the simulator's dynamic storage (directories and sparse files).
HOSTPATH_PROVISIONER = "sim.hoist.io/hostpath"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def default_storage_classes() -> list[dict[str, Any]]:
    return [
        {
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": HOSTPATH_PROVISIONER,
            "volumeBindingMode": "Immediate",
            "reclaimPolicy": "Delete",
            "allowVolumeExpansion": True,
        },
        {
            "metadata": {"name": "standard-wffc"},
            "provisioner": HOSTPATH_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
        {
            "metadata": {"name": "local-static"},
            "provisioner": NO_PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        },
    ]


@dataclass(frozen=True)
class NodeConfig:
    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    #: Bytes the node's local storage may provision (None: unbounded).
    storage_capacity: int | None = None


@dataclass(frozen=True)
class ImageRoot:
    """An image whose root filesystem is on this machine (``buildah mount`` of a container
    of it): the kubelet runs its containers chrooted into that tree, with the image's
    environment, working directory and user where the pod spec names none, rather than as
    processes of this machine's own filesystem. The tree is the container's writable
    layer, as a real container's root is."""

    path: Path
    #: The image's ENV (PATH first of all: the host's means nothing inside).
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    #: The image's USER, "uid" or "uid:gid" (numeric); empty: root.
    user: str = ""
    #: The image's ENTRYPOINT and CMD (what ``ClusterConfig.images`` should name for it).
    entrypoint: list[str] = field(default_factory=list)


@dataclass
class ClusterConfig:
    """Everything that differs between one simulated cluster and another."""

    nodes: list[NodeConfig] = field(
        default_factory=lambda: [NodeConfig("node-1"), NodeConfig("node-2")]
    )
    storage_classes: list[dict[str, Any]] = field(default_factory=default_storage_classes)
    #: Namespaces that exist from the start besides default, kube-system and kube-public
    #: (``hoist``: where a Helm install would have put Hoist and its provider Secrets).
    namespaces: tuple[str, ...] = ("hoist",)
    #: Where volumes live (a directory per Filesystem PV, a sparse file per Block PV).
    storage_root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hoist-kube-")))
    #: Bytes each StorageClass may provision in total (name -> bytes); absent: unbounded.
    #: Published as CSIStorageCapacity objects in kube-system, as the CSI
    #: external-provisioner does with capacity tracking on.
    storage_capacity: dict[str, int] = field(default_factory=dict)
    #: image (without tag) -> argv that stands for the image's entrypoint.
    images: dict[str, list[str]] = field(default_factory=dict)
    #: image (without tag) -> its root filesystem on this machine; the argv in ``images``
    #: is then the image's ENTRYPOINT, run inside that root.
    image_roots: dict[str, ImageRoot] = field(default_factory=dict)
    #: Controllers to leave off: "gc", "namespaces", "provisioner", "binder", "scheduler",
    #: "kubelet".
    disabled: frozenset[str] = frozenset()
    kube_version: str = "1.30"
    #: Serve KubeVirt's ``kubevirt.io/v1`` (False: a cluster KubeVirt is not installed on,
    #: whose VirtualMachine paths answer 404 as a real one's do).
    kubevirt: bool = True
    #: Refuse unknown fields (kubectl's default `--validate=strict`), rather than drop them.
    strict_fields: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = True
    #: The admin token; a random one when empty.
    token: str = ""
    #: Extra tokens: token -> allowed verbs (e.g. {"viewer": ["get", "list", "watch"]}).
    tokens: dict[str, list[str]] = field(default_factory=dict)
    #: Changes kept for watch resumption; older resourceVersions get 410 Gone.
    history: int = 100_000
    bookmark_seconds: float = 5.0
    #: The /8 network pod IPs come from; each pod gets its own address in it.
    pod_network: str = "127.42.0.0/16"
    #: Where the kubelet keeps each container's logs once its pod is gone
    #: (``<namespace>/<pod>-<uid>/<container>/<restarts>.log``), as a node's log shipper
    #: would; None: they go with the pod.
    log_archive: Path | None = None

    def __post_init__(self) -> None:
        if not self.token:
            self.token = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=32))
