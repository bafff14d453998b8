"""The kubelet: pods run as real local processes with their volumes at the pod's paths.

The images are host programs (`busybox` is /bin/sh -c, `python` this interpreter), and
each check is on what a user of a real cluster would see (status, events, logs) or on the
bytes that land in a volume's backing directory or file.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.controllers import containers as ct
from sim.kube.controllers.kubelet import Kubelet
from sim.kube.store import Obj
from tests.conftest import eventually

IMAGES = {"busybox": ["/bin/sh", "-c"], "python": [sys.executable]}
#: Mount targets that exist nowhere on a host: the kubelet must create and remove them.
MOUNT = "/hoist-sim-test/data"
DEVICE = "/dev/hoist-sim-test-block"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    config = ClusterConfig(storage_root=tmp_path / "storage", images=IMAGES)
    sim = Cluster(config)
    await sim.start(serve_api=False)
    try:
        yield sim
    finally:
        await sim.stop()


def kubelet(cluster: Cluster) -> Kubelet:
    found = cluster.controllers["kubelet"]
    assert isinstance(found, Kubelet)
    return found


def shell(name: str, script: str, *, restart: str = "Never", **spec: Any) -> Obj:
    """A pod on node-1 whose one container runs a shell script."""
    container: Obj = {"name": "main", "image": "busybox", "args": [script]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node-1",
            "restartPolicy": restart,
            "containers": [container],
            **spec,
        },
    }


def create(cluster: Cluster, body: Obj, plural: str = "pods") -> Obj:
    return cluster.store.create(cluster.kind(plural), body, "default")


def get(cluster: Cluster, name: str) -> Obj | None:
    found = cluster.store.find(cluster.kind("pods"), "default", name)
    return found.obj if found is not None else None


def phase(cluster: Cluster, name: str) -> str | None:
    pod = get(cluster, name)
    return (pod.get("status") or {}).get("phase") if pod else None


def container_status(cluster: Cluster, name: str) -> Obj:
    pod = get(cluster, name)
    assert pod is not None
    statuses: list[Obj] = pod["status"].get("containerStatuses") or [{}]
    return statuses[0]


async def reaches(cluster: Cluster, name: str, wanted: str) -> Obj:
    await eventually(lambda: phase(cluster, name) == wanted, what=f"{name} {wanted}")
    pod = get(cluster, name)
    assert pod is not None
    return pod


def reasons(cluster: Cluster, name: str) -> list[str]:
    return [
        e.obj["reason"]
        for e in cluster.store.scan(cluster.kind("events"))
        if e.obj["involvedObject"]["name"] == name
    ]


def messages(cluster: Cluster, name: str, reason: str) -> list[str]:
    return [
        e.obj["message"]
        for e in cluster.store.scan(cluster.kind("events"))
        if e.obj["involvedObject"]["name"] == name and e.obj["reason"] == reason
    ]


def log(cluster: Cluster, name: str, previous: bool = False) -> str:
    path = kubelet(cluster).log_path("default", name, None, previous)
    return path.read_text() if path is not None else ""


def claim(name: str, mode: str = "Filesystem", size: str = "64Mi") -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "volumeMode": mode,
        },
    }


def backing(cluster: Cluster, claim_name: str) -> Path:
    pvc = cluster.store.get(cluster.kind("persistentvolumeclaims"), "default", claim_name)
    pv = cluster.store.get(cluster.kind("persistentvolumes"), None, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


# -- life cycle -------------------------------------------------------------------------


async def test_pod_runs_to_completion(cluster: Cluster) -> None:
    create(cluster, shell("hello", "echo hello from $HOSTNAME; echo oops >&2"))
    pod = await reaches(cluster, "hello", "Succeeded")
    status = pod["status"]
    (container,) = status["containerStatuses"]
    terminated = container["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["startedAt"]
    assert terminated["finishedAt"]
    assert container["restartCount"] == 0
    assert status["hostIP"] == cluster.config.host
    assert status["podIP"].startswith("127.42.")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "PodCompleted"
    assert log(cluster, "hello") == "hello from hello\noops\n"
    for reason in ("Pulled", "Created", "Started"):
        assert reason in reasons(cluster, "hello")


async def test_exit_code_fails_the_pod(cluster: Cluster) -> None:
    create(cluster, shell("broken", "echo disk not found > /dev/termination-log; exit 3"))
    body = shell("fallback", "echo first; echo the last words; exit 4")
    body["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    create(cluster, body)
    await reaches(cluster, "broken", "Failed")
    terminated = container_status(cluster, "broken")["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "disk not found\n"
    await reaches(cluster, "fallback", "Failed")
    fallback = container_status(cluster, "fallback")["state"]["terminated"]
    assert fallback["message"] == "first\nthe last words\n"


async def test_on_failure_restarts_with_backoff(cluster: Cluster) -> None:
    script = f"if [ -f {MOUNT}/once ]; then echo second; exit 0; fi; touch {MOUNT}/once; exit 1"
    body = shell(
        "flaky",
        f"echo first; {script}",
        restart="OnFailure",
        volumes=[{"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": MOUNT}]},
    )
    create(cluster, body)
    await reaches(cluster, "flaky", "Succeeded")
    status = container_status(cluster, "flaky")
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert log(cluster, "flaky", previous=True) == "first\n"
    assert log(cluster, "flaky") == "first\nsecond\n"
    assert "BackOff" in reasons(cluster, "flaky")
    assert not Path(MOUNT).exists()  # the mount target left the host with the pod


async def test_restart_always_keeps_running(cluster: Cluster) -> None:
    create(cluster, shell("looping", "echo run; exit 0", restart="Always"))
    await eventually(lambda: container_status(cluster, "looping").get("restartCount", 0) >= 1)
    assert phase(cluster, "looping") == "Running"


async def test_init_containers_run_first_in_order(cluster: Cluster) -> None:
    body = shell(
        "initialized",
        f"cat {MOUNT}/steps",
        volumes=[{"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": MOUNT}]},
    )
    mounts = [{"name": "scratch", "mountPath": MOUNT}]
    body["spec"]["initContainers"] = [
        {
            "name": f"step-{i}",
            "image": "busybox",
            "args": [f"echo {i} >> {MOUNT}/steps"],
            "volumeMounts": mounts,
        }
        for i in (1, 2)
    ]
    create(cluster, body)
    pod = await reaches(cluster, "initialized", "Succeeded")
    assert log(cluster, "initialized") == "1\n2\n"
    inits = pod["status"]["initContainerStatuses"]
    assert [i["state"]["terminated"]["exitCode"] for i in inits] == [0, 0]
    path = kubelet(cluster).log_path("default", "initialized", "step-2")
    assert path is not None


async def test_failing_init_container_fails_the_pod(cluster: Cluster) -> None:
    body = shell("never-initialized", "echo main ran")
    body["spec"]["initContainers"] = [{"name": "check", "image": "busybox", "args": ["exit 2"]}]
    create(cluster, body)
    pod = await reaches(cluster, "never-initialized", "Failed")
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 2
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == (
        "PodInitializing"
    )
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "False"


async def test_unknown_image_cannot_be_pulled(cluster: Cluster) -> None:
    body = shell("nowhere", "true", container={"image": "registry.example/nothing:v1"})
    create(cluster, body)
    await eventually(
        lambda: (
            (container_status(cluster, "nowhere").get("state") or {})
            .get("waiting", {})
            .get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
        )
    )
    assert phase(cluster, "nowhere") == "Pending"
    assert any("Failed to pull image" in m for m in messages(cluster, "nowhere", "Failed"))


# -- volumes ----------------------------------------------------------------------------


async def test_pod_writes_to_its_claim_at_the_mount_path(cluster: Cluster) -> None:
    create(cluster, claim("data"), "persistentvolumeclaims")
    body = shell(
        "writer",
        f"echo payload > {MOUNT}/disk.img && ls {MOUNT} && ! touch {MOUNT}-ro/x",
        volumes=[
            {"name": "disk", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "same", "persistentVolumeClaim": {"claimName": "data"}},
        ],
        container={
            "volumeMounts": [
                {"name": "disk", "mountPath": MOUNT},
                {"name": "same", "mountPath": f"{MOUNT}-ro", "readOnly": True},
            ]
        },
    )
    create(cluster, body)
    await reaches(cluster, "writer", "Succeeded")
    assert (backing(cluster, "data") / "disk.img").read_text() == "payload\n"
    assert "disk.img" in log(cluster, "writer")

    async def unmounted() -> bool:  # the kubelet sweeps the pod's mount points once it ended
        return not Path(MOUNT).exists() and not Path(MOUNT).parent.exists()

    await eventually(unmounted, within=10, what="the pod's mount points removed from the host")


async def test_pod_writes_to_a_block_device(cluster: Cluster) -> None:
    create(cluster, claim("raw", "Block"), "persistentvolumeclaims")
    script = (
        f"printf HOIST | dd of={DEVICE} bs=1 seek=4096 conv=notrunc 2>/dev/null && "
        f"stat -c %s {DEVICE}"
    )
    body = shell(
        "blocky",
        script,
        volumes=[{"name": "disk", "persistentVolumeClaim": {"claimName": "raw"}}],
        container={"volumeDevices": [{"name": "disk", "devicePath": DEVICE}]},
    )
    create(cluster, body)
    await reaches(cluster, "blocky", "Succeeded")
    data = backing(cluster, "raw").read_bytes()
    assert data[4096:4101] == b"HOIST"
    assert len(data) == 64 << 20
    assert log(cluster, "blocky") == f"{64 << 20}\n"
    assert not Path(DEVICE).exists()


async def test_pod_waits_for_its_claim_to_bind(cluster: Cluster) -> None:
    claim_body = claim("later")
    claim_body["spec"]["storageClassName"] = "standard-wffc"
    create(cluster, claim_body, "persistentvolumeclaims")
    body = shell(
        "patient",
        "true",
        volumes=[{"name": "disk", "persistentVolumeClaim": {"claimName": "later"}}],
        container={"volumeMounts": [{"name": "disk", "mountPath": MOUNT}]},
    )
    create(cluster, body)
    await eventually(lambda: bool(messages(cluster, "patient", "FailedMount")))
    assert "is not bound" in messages(cluster, "patient", "FailedMount")[0]
    assert phase(cluster, "patient") == "Pending"


async def test_block_claim_cannot_be_mounted_as_a_filesystem(cluster: Cluster) -> None:
    create(cluster, claim("raw-disk", "Block"), "persistentvolumeclaims")
    body = shell(
        "mismatched",
        "true",
        volumes=[{"name": "disk", "persistentVolumeClaim": {"claimName": "raw-disk"}}],
        container={"volumeMounts": [{"name": "disk", "mountPath": MOUNT}]},
    )
    create(cluster, body)
    wanted = "volume disk has volumeMode Block, but is specified in volumeMounts"
    await eventually(
        lambda: any(wanted in m for m in messages(cluster, "mismatched", "FailedMount"))
    )
    assert phase(cluster, "mismatched") == "Pending"


async def test_secret_and_config_map_volumes(cluster: Cluster) -> None:
    create(
        cluster, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t"}}, "secrets"
    )
    create(cluster, {"metadata": {"name": "settings"}, "data": {"a.conf": "x=1"}}, "configmaps")
    body = shell(
        "reader",
        "cat /hoist-sim-test/secret/password /hoist-sim-test/config/renamed; "
        "stat -c %a /hoist-sim-test/secret/password",
        volumes=[
            {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {
                "name": "c",
                "configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "renamed"}]},
            },
        ],
        container={
            "volumeMounts": [
                {"name": "s", "mountPath": "/hoist-sim-test/secret"},
                {"name": "c", "mountPath": "/hoist-sim-test/config"},
            ]
        },
    )
    create(cluster, body)
    await reaches(cluster, "reader", "Succeeded")
    assert log(cluster, "reader") == "s3cr3tx=1400\n"


# -- environment ------------------------------------------------------------------------


async def test_environment_from_secrets_and_the_downward_api(cluster: Cluster) -> None:
    env = [
        {"name": "GREETING", "value": "hi $(POD_NAME)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "engine", "key": "token"}},
        },
    ]
    body = shell(
        "envy",
        'echo "$POD_NAME $POD_IP $NODE $TOKEN $CREDS_user $GREETING"',
        container={"env": env, "envFrom": [{"secretRef": {"name": "engine"}, "prefix": "CREDS_"}]},
    )
    create(cluster, body)
    await eventually(
        lambda: (
            (container_status(cluster, "envy").get("state") or {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        )
    )
    assert phase(cluster, "envy") == "Pending"
    assert 'Error: secret "engine" not found' in messages(cluster, "envy", "Failed")
    secret = {
        "metadata": {"name": "engine"},
        "data": {
            "token": base64.b64encode(b"t0k3n").decode(),
            "user": base64.b64encode(b"admin").decode(),
        },
    }
    create(cluster, secret, "secrets")
    pod = await reaches(cluster, "envy", "Succeeded")
    ip = pod["status"]["podIP"]
    assert log(cluster, "envy") == f"envy {ip} node-1 t0k3n admin hi $(POD_NAME)\n"


async def test_command_and_args_follow_docker_rules(cluster: Cluster) -> None:
    body = shell(
        "commanded",
        "",
        container={
            "command": ["/bin/echo", "$(WHO)"],
            "args": ["and", "$$(WHO)"],
            "env": [{"name": "WHO", "value": "me"}],
        },
    )
    create(cluster, body)
    await reaches(cluster, "commanded", "Succeeded")
    assert log(cluster, "commanded") == "me and $(WHO)\n"


# -- networking -------------------------------------------------------------------------


async def test_pod_serves_http_on_its_own_ip(cluster: Cluster) -> None:
    body: Obj = {
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "node-2",
            "containers": [
                {
                    "name": "server",
                    "image": "python:3.11",
                    "args": ["-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }
    create(cluster, body)
    create(cluster, shell("other", "sleep 30"))
    pod = await reaches(cluster, "web", "Running")
    other = await reaches(cluster, "other", "Running")
    ip = pod["status"]["podIP"]
    assert ip != other["status"]["podIP"]

    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                reply = await client.get(f"http://{ip}:8080/")
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    await eventually(answers, what="the pod answers HTTP")
    conditions = {c["type"]: c["status"] for c in get(cluster, "web")["status"]["conditions"]}  # type: ignore[index]
    assert conditions["Ready"] == "True"


async def test_host_network_pod_has_the_node_address(cluster: Cluster) -> None:
    create(cluster, shell("hosted", "true", hostNetwork=True))
    pod = await reaches(cluster, "hosted", "Succeeded")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == cluster.config.host


# -- deletion and faults ----------------------------------------------------------------


def pid_of(cluster: Cluster, name: str) -> int:
    pod = get(cluster, name)
    assert pod is not None
    run = kubelet(cluster)._runs[pod["metadata"]["uid"]]
    process = run.containers["main"].process
    assert process is not None
    return process.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; and the process may be reaped between the two looks.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except (FileNotFoundError, ProcessLookupError):  # reaped mid-read: ENOENT or ESRCH
        return False
    return state != "Z"


def trapping(name: str, handler: str, ready: Path) -> Obj:
    """A pod whose shell traps SIGTERM with ``handler``, then touches ``ready``: "Running"
    only says the process started, and a SIGTERM before the trap is set would kill it
    outright (on a loaded machine that happens)."""
    loop = "while :; do sleep 0.05; done"
    return shell(name, f"trap '{handler}' TERM; touch {ready}; {loop}")


async def trapped(cluster: Cluster, name: str, ready: Path) -> int:
    await reaches(cluster, name, "Running")
    await eventually(ready.exists, what=f"{name}'s trap set")
    return pid_of(cluster, name)


async def test_graceful_delete_sends_sigterm_first(cluster: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "bye"
    create(cluster, trapping("polite", f"echo bye > {marker}; exit 0", tmp_path / "ready"))
    pid = await trapped(cluster, "polite", tmp_path / "ready")
    cluster.store.delete(cluster.kind("pods"), "default", "polite")
    pod = get(cluster, "polite")
    assert pod is not None
    assert pod["metadata"]["deletionTimestamp"]
    await eventually(lambda: get(cluster, "polite") is None, what="pod removed")
    assert marker.read_text() == "bye\n"
    assert not alive(pid)
    assert "Killing" in reasons(cluster, "polite")


async def test_deleting_a_terminating_pod_again_writes_nothing(cluster: Cluster) -> None:
    """The garbage collector deletes a pod whose owner is gone even when the pod is already
    terminating; that second delete must not write (it once made the collector see its own
    write, delete again, and spin forever without yielding)."""
    create(cluster, shell("lingering", "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.05; done"))
    await reaches(cluster, "lingering", "Running")
    pods = cluster.kind("pods")
    first = cluster.store.delete(pods, "default", "lingering")
    assert first["metadata"]["deletionTimestamp"]
    again = cluster.store.delete(pods, "default", "lingering", propagation="Background")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    await eventually(lambda: get(cluster, "lingering") is None, what="pod removed")


async def test_graceful_delete_kills_after_the_grace_period(
    cluster: Cluster, tmp_path: Path
) -> None:
    body = trapping("stubborn", "", tmp_path / "ready")
    body["spec"]["terminationGracePeriodSeconds"] = 1
    create(cluster, body)
    pid = await trapped(cluster, "stubborn", tmp_path / "ready")
    cluster.store.delete(cluster.kind("pods"), "default", "stubborn")
    await eventually(lambda: get(cluster, "stubborn") is None, what="pod removed")
    assert not alive(pid)


async def test_force_delete_kills_at_once(cluster: Cluster) -> None:
    create(cluster, shell("forced", "trap '' TERM; while :; do sleep 0.05; done"))
    await reaches(cluster, "forced", "Running")
    pid = pid_of(cluster, "forced")
    cluster.store.delete(cluster.kind("pods"), "default", "forced", grace_period=0)
    assert get(cluster, "forced") is None
    await eventually(lambda: not alive(pid), what="process killed")


async def test_kill_fault_restarts_or_fails_per_policy(cluster: Cluster) -> None:
    create(cluster, shell("phoenix", "sleep 30", restart="Always"))
    create(cluster, shell("mortal", "sleep 30", restart="Never"))
    await reaches(cluster, "phoenix", "Running")
    await reaches(cluster, "mortal", "Running")
    await kubelet(cluster).kill("default", "phoenix")
    await kubelet(cluster).kill("default", "mortal")
    terminated = (await reaches(cluster, "mortal", "Failed"))["status"]["containerStatuses"][0]
    assert terminated["state"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    await eventually(lambda: container_status(cluster, "phoenix")["restartCount"] == 1)
    await eventually(lambda: "running" in container_status(cluster, "phoenix")["state"])
    status = container_status(cluster, "phoenix")
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert phase(cluster, "phoenix") == "Running"


async def test_stopping_the_cluster_kills_every_process(tmp_path: Path) -> None:
    config = ClusterConfig(storage_root=tmp_path / "storage", images=IMAGES)
    sim = await Cluster(config).start(serve_api=False)
    create(sim, shell("lingering", "trap '' TERM; sleep 60"))
    await reaches(sim, "lingering", "Running")
    pid = pid_of(sim, "lingering")
    await sim.stop()
    assert not alive(pid)


async def test_placeholder_mounted_elsewhere_is_kept(tmp_path: Path) -> None:
    """Another cluster on this machine may still use a mount target this one made."""
    target = Path("/hoist-sim-test-held")
    ct.make_target(target, is_file=False)
    holder = await asyncio.create_subprocess_exec(
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        f"mount --bind {tmp_path} {target} && echo ready && exec sleep 30",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"ready\n"
        assert ct.mounted_anywhere({target, Path("/proc")}) == {target, Path("/proc")}
        ct.sweep(set(), {target})
        assert target.is_dir()
    finally:
        holder.kill()
        await holder.wait()
    ct.sweep(set(), {target})
    assert not target.exists()
    assert target not in ct.registered()


async def test_placeholder_left_by_another_cluster_is_swept(tmp_path: Path) -> None:
    """A container's script makes a target again if it vanished, and notes it too."""
    target = "/hoist-sim-test-remade/file"
    script = tmp_path / "setup.sh"
    source = tmp_path / "source"
    source.write_text("x")
    script.write_text(ct.mount_script([ct.Mount(source, target, True, True)], "/"))
    process = await asyncio.create_subprocess_exec(
        "unshare", "--mount", "--propagation", "private", "/bin/sh", str(script), "cat", target
    )
    assert await process.wait() == 0
    assert Path(target) in ct.registered()
    ct.sweep(set(), {Path(target)})
    assert not Path(target).exists()
    assert Path(target) not in ct.registered()
    Path(target).parent.rmdir()  # the script's mkdir -p parent is not noted
