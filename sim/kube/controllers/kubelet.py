"""The kubelet of every simulated node: pods run as local processes.

For each pod bound to one of the cluster's nodes it sets up the volumes (a claim must be
Bound: its volume's directory or sparse file is what the pod gets), gives the pod its own
IP in `pod_network`, and runs each container as a process in a private mount namespace
with the volumes bind-mounted at the paths of the pod spec. It reports what a real kubelet
reports: phases Pending -> Running -> Succeeded/Failed, container states with exit codes
and restart counts, the PodScheduled/Initialized/ContainersReady/Ready conditions, and
the Pulled/Created/Started/Killing/BackOff/Failed events. restartPolicy is honoured with
exponential backoff (1 s, 2 s, 4 s, ... up to 5 min, as the real one).

Deleting a pod is graceful through a store deletion gate: SIGTERM, then SIGKILL after
`terminationGracePeriodSeconds`, then the kubelet removes the pod (grace period 0).
Every process runs in its own process group with PR_SET_PDEATHSIG, so none outlives the
cluster, even when the test run dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sim.kube.controllers import containers as ct
from sim.kube.controllers import imageroots as ir
from sim.kube.controllers.podstatus import TERMINAL, ContainerRun, PodRun, apply_status
from sim.kube.controllers.queue import Item, QueueController
from sim.kube.controllers.volumes import Obj
from sim.kube.errors import ApiError
from sim.kube.kinds import Kind
from sim.kube.store import Change, now

if TYPE_CHECKING:
    from sim.kube.cluster import Cluster

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
#: A container that ran this long before exiting restarts without backoff history.
BACKOFF_RESET = 600.0
WATCHED = ("secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes")


class Kubelet(QueueController):
    name = "kubelet"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pods = cluster.kind("pods")
        self.kinds = {plural: cluster.kind(plural) for plural in (*WATCHED, "pods")}
        self.watched = {self.kinds[p].key for p in WATCHED}
        self.node_names = {node.name for node in cluster.config.nodes}
        self.root = Path(tempfile.mkdtemp(prefix="hoist-kubelet-"))
        self.network = ipaddress.ip_network(cluster.config.pod_network, strict=False)
        self._next_ip = 1
        self._ips: set[str] = set()
        self._runs: dict[str, PodRun] = {}
        #: Mount targets in use -> the pods (uids) using them.
        self._targets: dict[Path, set[str]] = {}
        ct.load_libc()
        self.store.deletion_gates.append(self._gate)

    # -- what the API server calls -------------------------------------------------------

    def log_path(
        self, namespace: str, pod: str, container: str | None, previous: bool = False
    ) -> Path | None:
        """The log file of a container's current (or previous) run; None if there is none.

        `container` may be None for a pod with exactly one container."""
        run = self._find(namespace, pod)
        if run is None:
            return None
        if container is None:
            if len(run.containers) != 1:
                return None
            container = next(iter(run.containers))
        found = run.containers.get(container) or run.init_containers.get(container)
        if found is None:
            return None
        restarts = found.restarts - 1 if previous else found.restarts
        if restarts < 0:
            return None
        path = self._log_file(run, container, restarts)
        return path if path.exists() else None

    async def kill(self, namespace: str, pod: str) -> None:
        """The fault "kill the pod's processes": SIGKILL; restartPolicy decides what next."""
        run = self._find(namespace, pod)
        if run is None:
            raise ApiError(404, "NotFound", f'pod "{pod}" has no running processes')
        waits = []
        for container in run.running():
            assert container.process is not None
            ct.signal_group(container.process.pid, signal.SIGKILL)
            waits.append(container.process.wait())
        await asyncio.gather(*waits)

    def _find(self, namespace: str, name: str) -> PodRun | None:
        found = self.store.find(self.pods, namespace, name)
        if found is None:
            return None
        return self._runs.get(found.obj["metadata"]["uid"])

    def _log_file(self, run: PodRun, container: str, restarts: int) -> Path:
        return run.directory / "logs" / container / f"{restarts}.log"

    # -- work items ----------------------------------------------------------------------

    def interest(self, kind: Kind, change: Change) -> Iterable[Item]:
        obj = change.entry.obj
        if kind.key == self.pods.key:
            if obj["spec"].get("nodeName") in self.node_names:
                yield ("pod", obj["metadata"]["namespace"], obj["metadata"]["name"])
        elif kind.key in self.watched:
            for run in self._runs.values():
                run.wake.set()

    def initial(self) -> Iterable[Item]:
        for entry in self.store.scan(self.pods):
            if entry.obj["spec"].get("nodeName") in self.node_names:
                meta = entry.obj["metadata"]
                yield ("pod", meta["namespace"], meta["name"])

    async def reconcile(self, item: Item) -> float | None:
        _, namespace, name = item
        entry = self.store.find(self.pods, namespace, name)
        current = entry.obj["metadata"]["uid"] if entry is not None else None
        for old in list(self._runs.values()):
            if old.namespace == namespace and old.name == name and old.uid != current:
                await self._stop(old)  # deleted outright (force, or grace period 0)
        if entry is None:
            return None
        pod = entry.obj
        existing = self._runs.get(current or "")
        if existing is not None:
            existing.wake.set()
            return None
        if (pod.get("status") or {}).get("phase", "Pending") != "Pending" or pod["metadata"].get(
            "deletionTimestamp"
        ):
            return None
        run = PodRun.of(pod, self.root / pod["metadata"]["uid"])
        run.directory.mkdir(parents=True, exist_ok=True)
        self._runs[run.uid] = run
        run.task = asyncio.create_task(self._run_pod(run), name=f"kubelet:{namespace}/{name}")
        return None

    # -- deletion ------------------------------------------------------------------------

    def _gate(self, kind: Kind, obj: Obj, grace_period: int | None) -> bool:
        if kind.key != self.pods.key:
            return False
        run = self._runs.get(obj["metadata"]["uid"])
        if run is None or run.terminated:
            return False
        if grace_period is not None and grace_period <= 0:
            for container in run.running():
                assert container.process is not None
                ct.signal_group(container.process.pid, signal.SIGKILL)
            return False
        if not run.running() and (obj.get("status") or {}).get("phase") in TERMINAL:
            return False
        if run.terminating is None:
            grace = grace_period
            if grace is None:
                grace = int(obj["spec"].get("terminationGracePeriodSeconds", 30))
            run.terminating = asyncio.get_running_loop().create_task(
                self._terminate(run, grace), name=f"kubelet-terminate:{run.name}"
            )
        return True

    async def _terminate(self, run: PodRun, grace: int) -> None:
        """Graceful deletion: SIGTERM, wait, SIGKILL, clean up, then remove the pod."""
        pod = self._pod(run)
        running = run.running()
        for container in running:
            assert container.process is not None
            if pod is not None:
                self._event(pod, "Normal", "Killing", f"Stopping container {container.name}")
            ct.signal_group(container.process.pid, signal.SIGTERM)
        waits = [c.process.wait() for c in running if c.process is not None]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=max(grace, 0)
            )
            if pending:
                for container in run.running():
                    assert container.process is not None
                    ct.signal_group(container.process.pid, signal.SIGKILL)
                await asyncio.gather(*pending, return_exceptions=True)
        await self._stop(run)
        with contextlib.suppress(ApiError):
            self.store.delete(
                self.pods, run.namespace, run.name, grace_period=0, preconditions={"uid": run.uid}
            )

    async def _stop(self, run: PodRun) -> None:
        """Kill what is left of a pod and release what it held (idempotent)."""
        run.terminated = True
        for container in run.running():
            assert container.process is not None
            ct.signal_group(container.process.pid, signal.SIGKILL)
        if run.task is not None and run.task is not asyncio.current_task():
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        for container in run.every():
            if container.process is not None and container.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    await container.process.wait()
        self._release(run)

    def _release(self, run: PodRun) -> None:
        if self._runs.pop(run.uid, None) is None:
            return
        self._unmount(run)
        archive = self.cluster.config.log_archive
        if archive is not None and (run.directory / "logs").is_dir():
            kept = archive / run.namespace / f"{run.name}-{run.uid}"
            shutil.copytree(run.directory / "logs", kept, dirs_exist_ok=True)
        shutil.rmtree(run.directory, ignore_errors=True)

    def _unmount(self, run: PodRun) -> None:
        """Give back the pod's IP and the mount targets only it still needed."""
        if run.ip != self.cluster.config.host:
            self._ips.discard(run.ip)
        freed: set[Path] = set()
        for target in run.targets:
            users = self._targets.get(target, set())
            users.discard(run.uid)
            if not users:
                self._targets.pop(target, None)
                freed.add(target)
        run.targets.clear()
        if freed:
            ct.sweep(set(self._targets), freed)

    async def shutdown(self) -> None:
        if self._gate in self.store.deletion_gates:
            self.store.deletion_gates.remove(self._gate)
        for run in list(self._runs.values()):
            await self._stop(run)
        self._targets.clear()
        ct.sweep(set())
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running a pod -------------------------------------------------------------------

    def _pod(self, run: PodRun) -> Obj | None:
        found = self.store.find(self.pods, run.namespace, run.name)
        if found is None or found.obj["metadata"]["uid"] != run.uid:
            return None
        return found.obj

    def _event(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        self.cluster.record(pod, event_type, reason, message, COMPONENT)

    def _allocate_ip(self) -> str:
        size = self.network.num_addresses
        for _ in range(size):
            offset = self._next_ip
            self._next_ip = self._next_ip + 1 if self._next_ip + 1 < size - 1 else 1
            ip = str(self.network.network_address + offset)
            if ip not in self._ips:
                self._ips.add(ip)
                return ip
        raise RuntimeError(f"the pod network {self.network} is full")

    async def _run_pod(self, run: PodRun) -> None:
        try:
            volumes = await self._mount_volumes(run)
            if volumes is None:
                return
            pod = self._pod(run)
            if pod is None:
                return
            if pod["spec"].get("hostNetwork"):
                run.ip = self.cluster.config.host  # the node's own address, not allocated
            else:
                run.ip = self._allocate_ip()
            self._write_status(run)
            for init in run.init_containers.values():
                await self._run_container(run, init, volumes)
                if not init.done or init.exit_code != 0:
                    break  # failed for good, or the pod is going away
            else:
                run.initialized = True
                for container in run.containers.values():
                    container.state = {"waiting": {"reason": "ContainerCreating"}}
                self._write_status(run)
                await asyncio.gather(
                    *(self._run_container(run, c, volumes) for c in run.containers.values())
                )
            if run.init_failed():
                self._write_status(run)
            if not run.terminated and run.terminating is None:
                self._unmount(run)  # finished: the pod keeps its logs, not its mounts
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet: pod %s/%s failed", run.namespace, run.name)

    async def _mount_volumes(self, run: PodRun) -> ct.PodVolumes | None:
        """Wait until every volume can be set up (claims bound, secrets there)."""
        first = True
        while not run.terminated:
            pod = self._pod(run)
            if pod is None:
                return None
            if first:
                self._write_status(run)
                first = False
            try:
                return ct.prepare_volumes(self.store, self.kinds, pod, run.directory)
            except ct.MountError as exc:
                message = str(exc)
                if not message.startswith("MountVolume"):
                    message = f"Unable to attach or mount volumes: {message}"
                if message not in run.said:
                    run.said.add(message)
                    self._event(pod, "Warning", "FailedMount", message)
            run.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.wake.wait(), 2.0)
        return None

    def _base_env(self, run: PodRun) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": "/root"}
        env["HOSTNAME"] = run.name
        server = getattr(self.cluster, "server", None)
        url = urlsplit(str(server.url)) if server is not None else None
        if url is not None and url.hostname and url.port:
            # What a pod finds the API server by (the `kubernetes` Service's env vars).
            env["KUBERNETES_SERVICE_HOST"] = url.hostname
            env["KUBERNETES_SERVICE_PORT"] = str(url.port)
        return env

    async def _run_container(
        self, run: PodRun, container: ContainerRun, volumes: ct.PodVolumes
    ) -> None:
        backoff = BACKOFF_FIRST
        policy = "Always"
        while not run.terminated and run.terminating is None:
            pod = self._pod(run)
            if pod is None:
                return
            policy = pod["spec"].get("restartPolicy", "Always")
            if container.init and policy == "Always":
                policy = "OnFailure"  # an init container that succeeded is never rerun
            try:
                problem = await self._start(run, container, pod, volumes)
            except (OSError, ValueError, KeyError) as exc:
                log.exception(
                    "kubelet: starting %s in %s/%s", container.name, run.namespace, run.name
                )
                problem = ("RunContainerError", f"failed to start container: {exc}")
            if problem is not None:
                reason, message = problem
                container.state = {"waiting": {"reason": reason, "message": message}}
                self._write_status(run)
                run.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wake.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            assert container.process is not None
            began = time.monotonic()
            code = await container.process.wait()
            if code < 0:
                code = 128 - code  # killed by a signal: 128 + its number
            container.exit_code = code
            running = container.state.get("running") or {}
            container.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": running.get("startedAt", now()),
                    "finishedAt": now(),
                    "containerID": container.container_id,
                }
            }
            message = self._termination_message(run, container, code)
            if message:
                container.state["terminated"]["message"] = message
            if run.terminated or run.terminating is not None:
                return
            again = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not again:
                container.done = True
                self._write_status(run)
                return
            if time.monotonic() - began > BACKOFF_RESET:
                backoff = BACKOFF_FIRST
            container.last_state = container.state
            container.restarts += 1
            container.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {int(backoff)}s restarting failed "
                    f"container={container.name} pod={run.name}_{run.namespace}({run.uid})",
                }
            }
            self._write_status(run)
            pod = self._pod(run)
            if pod is not None:
                self._event(
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {container.name} in pod "
                    f"{run.name}_{run.namespace}({run.uid})",
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _start(
        self, run: PodRun, container: ContainerRun, pod: Obj, volumes: ct.PodVolumes
    ) -> tuple[str, str] | None:
        """Start one run of a container; (waiting reason, message) when it cannot start."""
        spec = container.spec
        image = str(spec.get("image", ""))
        try:
            entrypoint = ct.resolve_image(self.cluster.config.images, image)
        except ct.ImageError as exc:
            reason = (
                "ImagePullBackOff" if "ErrImagePull" in str(container.state) else "ErrImagePull"
            )
            if reason == "ErrImagePull":
                self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {exc}')
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull")
            else:
                self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            return reason, f'Back-off pulling image "{image}": {exc}'
        root = ir.resolve(self.cluster.config.image_roots, image)
        try:
            base = self._base_env(run)
            if root is not None:
                base |= ir.environment(root, pod, spec)
            env = ct.environment(self.store, self.kinds, pod, spec, base)
        except ct.ConfigError as exc:
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            return "CreateContainerConfigError", str(exc)
        for port in spec.get("ports") or []:
            if ct.port_in_use(run.ip, int(port["containerPort"]), port.get("protocol", "TCP")):
                message = f"port {port['containerPort']} on {run.ip} is in use"
                self._event(pod, "Warning", "Failed", f"Error: {message}")
                return "RunContainerError", message
        command = ct.argv(entrypoint, spec, env)
        if not command:
            self._event(pod, "Warning", "Failed", "Error: no command specified")
            return "CreateContainerError", "no command specified"
        mounts = ct.container_mounts(spec, volumes)
        if os.geteuid() == 0:
            # The file the program may write why it ended into (terminationMessagePath).
            message_file = self._message_file(run, container)
            message_file.parent.mkdir(parents=True, exist_ok=True)
            message_file.write_bytes(b"")
            message_file.chmod(0o666)
            target = str(spec.get("terminationMessagePath") or "/dev/termination-log")
            mounts.append(ct.Mount(message_file, target, read_only=False, is_file=True))
        workdir = str(spec.get("workingDir") or (root.workdir if root is not None else "/"))
        if root is not None:  # inside the image's tree, whose targets are made before it
            uid, gid = ir.user(pod, spec, root)  # turns read-only
            group = ir.give_fs_group(pod, volumes)
            command = ir.command(
                root, uid, gid, [group] if group is not None else [], workdir, command
            )
            mounts, workdir = ir.rooted(mounts, root, ir.read_only(pod, spec)), "/"
        try:
            for mount in mounts:
                self._use_target(run, Path(mount.target), mount.is_file)
        except ct.MountError as exc:
            self._event(pod, "Warning", "Failed", f"Error: {exc}")
            return "CreateContainerError", str(exc)
        if mounts:
            script = run.directory / f"{container.name}.sh"
            script.write_text(ct.mount_script(mounts, workdir))
            command = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                str(script),
                *command,
            ]
        log_file = self._log_file(run, container.name, container.restarts)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._event(
            pod, "Normal", "Pulled", f'Container image "{image}" already present on machine'
        )
        self._event(pod, "Normal", "Created", f"Created container {container.name}")
        with log_file.open("ab") as output:
            try:
                container.process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    env=env,
                    cwd=workdir if not mounts and Path(workdir).is_dir() else None,
                    start_new_session=True,
                    preexec_fn=ct.die_with_parent,
                )
            except OSError as exc:
                message = f'failed to start container "{container.name}": {exc}'
                self._event(pod, "Warning", "Failed", f"Error: {message}")
                container.exit_code = 128
                return "RunContainerError", message
        container.container_id = f"sim://{uuid.uuid4().hex}"
        container.started = True
        container.state = {"running": {"startedAt": now()}}
        self._event(pod, "Normal", "Started", f"Started container {container.name}")
        self._write_status(run)
        return None

    def _message_file(self, run: PodRun, container: ContainerRun) -> Path:
        return run.directory / "termination" / f"{container.name}-{container.restarts}"

    def _termination_message(self, run: PodRun, container: ContainerRun, code: int) -> str:
        """What the program wrote to its termination-log (at most 4 KiB), or with
        FallbackToLogsOnError and a failure, the end of its log (80 lines, 2 KiB)."""
        path = self._message_file(run, container)
        message = path.read_bytes()[:4096] if path.exists() else b""
        policy = container.spec.get("terminationMessagePolicy", "File")
        if not message.strip() and code != 0 and policy == "FallbackToLogsOnError":
            log_file = self._log_file(run, container.name, container.restarts)
            if log_file.exists():
                lines = log_file.read_bytes().splitlines(keepends=True)[-80:]
                message = b"".join(lines)[-2048:]
        return message.decode(errors="replace")

    def _use_target(self, run: PodRun, target: Path, is_file: bool) -> None:
        if target in run.targets:
            return
        if target not in self._targets:
            ct.make_target(target, is_file)
        self._targets.setdefault(target, set()).add(run.uid)
        run.targets.add(target)

    # -- status --------------------------------------------------------------------------

    def _write_status(self, run: PodRun) -> None:
        host_ip = self.cluster.config.host

        def change(obj: Obj) -> None:
            if obj["metadata"]["uid"] != run.uid:
                raise ApiError(409, "Conflict", "the pod was replaced")
            apply_status(obj, run, host_ip)

        try:
            self.store.mutate(self.pods, run.namespace, run.name, change, subresource="status")
        except ApiError as exc:
            log.debug("kubelet: status of %s/%s: %s", run.namespace, run.name, exc)
