"""The Hoist image, built on this machine from the Containerfile (``tools/containerimage.py``:
once per content, cached; ``make test`` builds it first) and exercised inside.

With ``buildah run --isolation chroot`` (podman cannot run containers on these machines),
without a network: every console script answers ``--help``, the entrypoint dispatches to
the populators, the image's user is 107:107, every distribution in it is the pinned one,
and it holds no compiler, test suite or simulator. buildah cannot make a container's root
read-only, so the oVirt populator's copy runs the way the simulated kubelet runs populator
pods from the image (``sim/kube/controllers/imageroots.py``): chrooted into the image's
root bound read-only onto itself, as uid 107, its volume bind-mounted, copying from the
oVirt simulator running on the host. A pod run by the simulated kubelet checks that way
itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig, ImageRoot
from sim.kube.controllers import imageroots as ir
from sim.kube.controllers.containers import Mount, mount_script
from sim.ovirt.engine import Engine
from tests.populators.ovirt.conftest import assert_same_image, creds_env, populator_args
from tests.sim.kube.test_kubelet import backing, claim, create, get, log, reaches, shell
from tests.sim.ovirt.fixtures import engine as engine  # the fixture, per module
from tests.sim.ovirt.fixtures import new_disk
from tools import containerimage as ci

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(ci.missing_tools()),
    reason="building the image needs root and buildah (tools/system-deps.sh installs it)",
)
UID = 107
SCRIPTS = tomllib.loads((ci.ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.fixture(scope="module")
def image() -> ci.Built:
    return ci.ensure()


@pytest.fixture(scope="module")
def container(image: ci.Built) -> Iterator[str]:
    name = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", image.ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    yield name
    subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def inside(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """One command in the image as its config says (user, env, working directory), with no
    network at all (a network namespace of its own, no interface up): nothing the image
    runs may fetch anything to start."""
    return subprocess.run(
        ["unshare", "--net", "buildah", "run", "--isolation", "chroot", container, "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_console_script_answers_help(container: str) -> None:
    for script in SCRIPTS:
        done = inside(container, script, "--help")
        assert done.returncode == 0, f"{script}: {done.stderr[-2000:]}"
        # argparse's and click's usage line, or (the controller) its documentation
        said = done.stdout.lower()
        assert "usage:" in said or f"``{script}``" in said, f"{script}: {done.stdout}"


def test_the_entrypoint_dispatches_to_each_populator(image: ci.Built, container: str) -> None:
    config = json.loads(
        subprocess.run(
            ["buildah", "inspect", "--type", "image", image.ref],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["OCIv1"]["config"]
    entrypoint = config["Entrypoint"]
    assert entrypoint == ["/opt/hoist/bin/python", "-m", "services.populators"]
    bare = inside(container, *entrypoint)
    assert bare.returncode == 2
    assert "usage: hoist-populator {ovirt,openstack,pvcinit}" in bare.stderr
    for kind, own_flag in (("ovirt", "--engine-url"), ("openstack", "--image-id")):
        done = inside(container, *entrypoint, kind, "--help")
        assert done.returncode == 0, done.stderr
        assert "--volume-path" in done.stdout
        assert own_flag in done.stdout
    pvcinit = inside(container, *entrypoint, "pvcinit")
    assert (pvcinit.returncode, pvcinit.stdout.strip()) == (0, "pvcinit: the claims are bound")


def test_runs_as_107_with_pinned_distributions_and_no_build_tools(container: str) -> None:
    ids = inside(container, "id", "-u")
    assert ids.stdout.strip() == str(UID), ids.stderr
    assert inside(container, "id", "-g").stdout.strip() == str(UID)
    assert inside(container, "qemu-img", "--version").returncode == 0  # OpenStack populator
    survey = inside(
        container,
        "python",
        "-c",
        "import importlib.metadata as m, json, shutil, sysconfig\n"
        "print(json.dumps({'dists': {d.metadata['Name'].lower().replace('_', '-'): d.version"
        " for d in m.distributions()}, 'site': sysconfig.get_paths()['purelib'],"
        " 'tools': [t for t in ('gcc', 'cc', 'make', 'pip') if shutil.which(t)]}))",
    )
    assert survey.returncode == 0, survey.stderr
    found = json.loads(survey.stdout)
    assert found["tools"] == []
    pins = {}
    for line in ci.CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    dists = {k.replace(".", "-"): v for k, v in found["dists"].items()}
    assert dists.pop("hoist") == "0.1.0"
    assert {name: dists[name] for name in dists} == {name: pins.get(name) for name in dists}
    assert "pip" not in dists
    listing = inside(container, "sh", "-c", f"ls {found['site']}; ls -d {found['site']}/*/tests")
    packages = set(listing.stdout.split())
    assert {"services", "shared", "cli"} <= packages
    assert not {"sim", "tests", "tools", "bench"} & packages  # no simulators, no tests
    assert not [p for p in packages if p.endswith("/tests")]


def _in_image(root: ImageRoot, tmp: Path, argv: list[str], mounts: list[Mount]) -> list[str]:
    """The simulated kubelet's way to run a pod of the image: a private mount namespace,
    the root read-only (readOnlyRootFilesystem), chroot as uid 107."""
    rooted = ir.rooted(mounts, root, read_only=True)
    for mount in rooted:  # the kubelet makes missing targets before the root turns read-only
        target = Path(mount.target)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch() if mount.is_file else target.mkdir()
    script = tmp / "mounts.sh"
    script.write_text(mount_script(rooted, "/"))
    inner = ir.command(root, UID, UID, [], root.workdir, argv)
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", str(script), *inner]


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_ovirt_populator_copies_a_disk_from_the_host_simulator_byte_exact(
    image: ci.Built, engine: Engine, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, UID, UID)  # as the kubelet's fsGroup would leave it for uid 107
    disk = new_disk(engine, format="cow", layout="scattered", extent="1MiB")
    with ci.mounted(image.ref) as root:
        env = root.env | creds_env(engine)
        mounts = [Mount(volume, "/data", read_only=False)]
        probe = (
            "import errno\n"
            "for path in ('/opt/hoist/x', '/tmp/x', '/x'):\n"
            "    try:\n"
            "        open(path, 'w')\n"
            "    except OSError as exc:\n"
            "        assert exc.errno == errno.EROFS, (path, exc)\n"
            "    else:\n"
            "        raise SystemExit(f'{path} is writable')\n"
            "import os; print(os.getuid(), os.getgid())\n"
        )
        code, out = await _run(_in_image(root, tmp_path, ["python", "-c", probe], mounts), env)
        assert (code, out.strip()) == (0, f"{UID} {UID}"), out
        argv = [*root.entrypoint, "ovirt", *populator_args(engine, disk, "/data")]
        code, out = await _run(_in_image(root, tmp_path, argv, mounts), env)
    assert code == 0, out[-3000:]
    copy = volume / "disk.img"
    assert copy.stat().st_uid == UID
    await assert_same_image(engine, disk, copy)
    assert engine.inv.disks[disk.id].status == "ok"


def test_the_build_is_reported_and_under_the_size_target(image: ci.Built) -> None:
    manifest = json.loads(
        (ci.cache_root() / image.ref.rsplit(":", 1)[1] / "manifest.json").read_text()
    )
    assert manifest["ref"] == image.ref
    assert image.size < 350 * 10**6, image.describe()
    assert shutil.which("buildah")


async def test_the_simulated_kubelet_runs_a_pod_in_the_image(
    image: ci.Built, tmp_path: Path
) -> None:
    """What ``make demo IMAGE=...`` relies on: a pod of the image runs in the image's root
    (its Python, not this machine's), as the pod's user with its fsGroup, the root
    read-only, its claim writable at the pod's path."""
    probe = (
        "import json, os, sys\n"
        "try:\n"
        "    open('/opt/hoist/x', 'w')\n"
        "    writable = True\n"
        "except OSError:\n"
        "    writable = False\n"
        "with open('/data/probe.json', 'w') as f:\n"
        "    json.dump({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),"
        " 'python': sys.executable, 'rootWritable': writable,"
        " 'checkout': os.path.exists('/work'), 'home': os.environ['HOME']}, f)\n"
    )
    with ci.mounted(image.ref) as root:
        config = ClusterConfig(
            storage_root=tmp_path / "storage",
            images={"registry.example/hoist": root.entrypoint},
            image_roots={"registry.example/hoist": root},
        )
        cluster = Cluster(config)
        await cluster.start(serve_api=False)
        try:
            create(cluster, claim("data"), "persistentvolumeclaims")
            body = shell(
                "in-image",
                "",
                securityContext={"runAsUser": UID, "runAsGroup": UID, "fsGroup": 2000},
                volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                container={
                    "image": "registry.example/hoist:dev",
                    "command": ["python", "-c", probe],
                    "args": [],
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
            )
            create(cluster, body)
            try:
                await reaches(cluster, "in-image", "Succeeded")
            except AssertionError as exc:
                status = (get(cluster, "in-image") or {}).get("status")
                raise AssertionError(f"{exc}: {status}\n{log(cluster, 'in-image')}") from None
            found = json.loads((backing(cluster, "data") / "probe.json").read_text())
        finally:
            await cluster.stop()
    assert found == {
        "uid": UID,
        "gid": UID,
        "groups": [2000],
        "python": "/opt/hoist/bin/python",
        "rootWritable": False,
        "checkout": False,  # this machine's files are not there
        "home": "/nonexistent",  # the image's user's, as a runtime sets it
    }
