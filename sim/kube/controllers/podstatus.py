"""What the kubelet knows about a pod it runs, and the pod status it reports from that.

The status follows the kubelet's rules: the pod is Pending until it is initialized (init
containers done) and every container has started once; Succeeded or Failed once every
container has exited for good (Failed if any exited non-zero, or an init container failed
for good); Running otherwise. Ready and ContainersReady hold while every container runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from sim.kube.controllers.containers import image_name
from sim.kube.controllers.volumes import Obj
from sim.kube.store import now

TERMINAL = ("Succeeded", "Failed")


@dataclass
class ContainerRun:
    spec: Obj
    init: bool = False
    restarts: int = 0
    process: asyncio.subprocess.Process | None = None
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    container_id: str = ""
    started: bool = False
    #: Exited for good (the restart policy says no more runs).
    done: bool = False
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> Obj:
        image = str(self.spec.get("image", ""))
        running = "running" in self.state
        status: Obj = {
            "name": self.name,
            "image": image,
            "imageID": f"sim://{image_name(image)}",
            "ready": running if not self.init else self.done and self.exit_code == 0,
            "started": running,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    node: str
    directory: Path
    containers: dict[str, ContainerRun]
    init_containers: dict[str, ContainerRun] = field(default_factory=dict)
    ip: str = ""
    initialized: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    terminating: asyncio.Task[None] | None = None
    #: Termination is over: the deletion gate lets the deletion through.
    terminated: bool = False
    #: Mount targets this pod uses (see Kubelet._targets).
    targets: set[Path] = field(default_factory=set)
    #: Events already told (FailedMount), so a waiting pod is not told again and again.
    said: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, pod: Obj, directory: Path) -> PodRun:
        meta, spec = pod["metadata"], pod["spec"]
        init = {c["name"]: ContainerRun(c, init=True) for c in spec.get("initContainers") or []}
        main = {c["name"]: ContainerRun(c) for c in spec["containers"]}
        if init:
            for container in (*init.values(), *main.values()):
                container.state = {"waiting": {"reason": "PodInitializing"}}
        return cls(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            node=spec["nodeName"],
            directory=directory,
            containers=main,
            init_containers=init,
        )

    def every(self) -> list[ContainerRun]:
        return [*self.init_containers.values(), *self.containers.values()]

    def running(self) -> list[ContainerRun]:
        return [c for c in self.every() if c.process and c.process.returncode is None]

    def init_failed(self) -> bool:
        return any(c.done and c.exit_code != 0 for c in self.init_containers.values())

    def phase(self) -> str:
        if self.init_failed():
            return "Failed"
        states = list(self.containers.values())
        if states and all(c.done for c in states):
            return "Succeeded" if all(c.exit_code == 0 for c in states) else "Failed"
        if self.initialized and all(c.started for c in states):
            return "Running"
        return "Pending"


def _condition(kind: str, value: bool, old: list[Obj], reason: str | None = None) -> Obj:
    wanted = "True" if value else "False"
    previous = next((c for c in old if c.get("type") == kind), None)
    stamp = now()
    if previous is not None and previous.get("status") == wanted:
        stamp = previous.get("lastTransitionTime") or stamp
    result: Obj = {
        "type": kind,
        "status": wanted,
        "lastProbeTime": None,
        "lastTransitionTime": stamp,
    }
    if reason and not value:
        result["reason"] = reason
    return result


def apply_status(obj: Obj, run: PodRun, host_ip: str) -> None:
    """Write what the kubelet knows into a pod object's status."""
    phase = run.phase()
    ready = phase == "Running" and all("running" in c.state for c in run.containers.values())
    status = obj.setdefault("status", {})
    old = status.get("conditions") or []
    why = "PodCompleted" if phase in TERMINAL else "ContainersNotReady"
    status["conditions"] = [
        _condition("PodReadyToStartContainers", bool(run.ip), old),
        _condition("Initialized", run.initialized, old, "ContainersNotInitialized"),
        _condition("Ready", ready, old, why),
        _condition("ContainersReady", ready, old, why),
        _condition("PodScheduled", True, old),
    ]
    status["phase"] = phase
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if run.ip:
        status["podIP"] = run.ip
        status["podIPs"] = [{"ip": run.ip}]
    status.setdefault("startTime", now())
    if run.init_containers:
        status["initContainerStatuses"] = [c.status() for c in run.init_containers.values()]
    status["containerStatuses"] = [c.status() for c in run.containers.values()]
