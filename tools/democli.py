"""The demo's user: it drives Hoist only through the ``hoist`` CLI, as a person would.

Each command is printed before it runs (``$ hoist ...``); passwords go through
``--password-env`` so no secret is ever on a command line or in the output. What the
cluster needs before the maps can name it (the target namespaces, the Multus
NetworkAttachmentDefinitions the network maps point at) is created through the Kubernetes
API, as a cluster admin would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from tools import demoscenario as dsc
from tools.stack import HOOK_IMAGE, Stack

TARGET_PROVIDER = "host"  # the cluster Hoist runs in
REMOTE_PROVIDER = "remote"  # a second cluster (a plan's ``target: remote``)
OVIRT_PROVIDER = "ovirt"
OPENSTACK_PROVIDER = "openstack"
OVIRT_PASSWORD_ENV = "HOIST_DEMO_OVIRT_PASSWORD"  # noqa: S105 - the name of a variable
OPENSTACK_PASSWORD_ENV = "HOIST_DEMO_OPENSTACK_PASSWORD"  # noqa: S105
REMOTE_TOKEN_ENV = "HOIST_DEMO_REMOTE_TOKEN"  # noqa: S105


class CliError(Exception):
    pass


class Hoist:
    """Runs ``python -m cli`` with the stack's URLs and token in its environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = {**os.environ, **env}
        self.cwd = cwd

    def _show(self, args: tuple[str, ...]) -> None:
        print(f"$ hoist {shlex.join(args)}", flush=True)

    async def run(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        """Run to its end; its output is shown; a non-zero exit raises ``CliError``."""
        self._show(args)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            *args,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), timeout
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CliError(f"hoist {shlex.join(args)}: no answer within {timeout:.0f} s") from None
        text = out.decode(errors="replace")
        for line in text.rstrip().splitlines():
            print(f"  {line}")
        if proc.returncode != 0:
            raise CliError(f"hoist {shlex.join(args)} exited with {proc.returncode}")
        return text

    async def watch(self, plan: str, timeout: float) -> bool:
        """``hoist watch PLAN`` on the terminal (its progress bars) until the plan ends.
        False when it outlives ``timeout``; its own exit code (non-zero: some VM did not
        succeed) is left to the verification, which says which and why."""
        args = ("watch", plan, "--timeout", f"{max(1.0, timeout):.0f}")
        self._show(args)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args, env=self.env, cwd=self.cwd
        )
        try:
            await asyncio.wait_for(proc.wait(), max(1.0, timeout) + 30)  # a hang guard
            return True
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            return False


async def prepare_cluster(stack: Stack, scenario: dsc.Scenario) -> None:
    """The plans' namespaces, the NetworkAttachmentDefinitions their maps name, and the
    static volumes (local directories of the simulated cluster) the scenario lists."""
    if scenario.needs_remote():
        await _namespaces_and_networks(stack, scenario, "remote")
    async with stack.kube() as api:
        core = client.CoreV1Api(api)
        root = stack.spec.workdir / "static-volumes"
        for volume in scenario.volumes:
            (root / volume.name).mkdir(parents=True, exist_ok=True)
            where = f" on {volume.node}" if volume.node else ""
            print(
                f"PersistentVolume {volume.name} ({volume.storage_class!r}, {volume.size}{where})"
            )
            await _create(core.create_persistent_volume(volume.manifest(root)))
    await _namespaces_and_networks(stack, scenario, "local")


async def _namespaces_and_networks(stack: Stack, scenario: dsc.Scenario, target: str) -> None:
    """What the plans into one target cluster need there: their namespaces and the
    NetworkAttachmentDefinitions their maps name."""
    async with stack.kube(remote=target == "remote") as api:
        core = client.CoreV1Api(api)
        for ns in sorted(scenario.namespaces(target)):
            await _create(core.create_namespace({"metadata": {"name": ns}}))
        custom = client.CustomObjectsApi(api)
        plans = [p for p in scenario.plans if p.target == target]
        nads = sorted({nad for p in plans for nad in p.multus()})
        for ns, name in nads:
            print(f"NetworkAttachmentDefinition {ns}/{name} (bridge)")
            config = (
                f'{{"cniVersion": "0.3.1", "name": "{name}", "type": "bridge", '
                f'"bridge": "br-{name}"}}'
            )
            body: dict[str, Any] = {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"config": config},
            }
            await _create(
                custom.create_namespaced_custom_object(
                    "k8s.cni.cncf.io", "v1", ns, "network-attachment-definitions", body
                )
            )


async def _create(call: Any) -> None:
    try:
        await call
    except client.ApiException as exc:
        if exc.status != 409:  # it exists already: what we wanted
            raise


async def register_and_plan(hoist: Hoist, stack: Stack, scenario: dsc.Scenario) -> None:
    await prepare_cluster(stack, scenario)
    await hoist.run("providers", "add", TARGET_PROVIDER, "--type", "kubevirt", "--wait")
    if scenario.needs_remote():
        await _add_remote(hoist, stack)
    sources = {p.source for p in scenario.plans}
    if "ovirt" in sources:
        await _add_ovirt(hoist, stack)
    if "openstack" in sources:
        await _add_openstack(hoist, stack)
    for plan in scenario.plans:
        await _maps_and_plan(hoist, scenario, plan)


async def _add_ovirt(hoist: Hoist, stack: Stack) -> None:
    """Without ``--fingerprint`` the CLI shows the engine certificate's fingerprint and asks;
    ``--yes`` accepts it, as a user who compared it with the engine's would."""
    if stack.engine is None:
        raise CliError("the plans migrate from oVirt, but the stack runs no engine")
    login = stack.ovirt_credentials()
    hoist.env[OVIRT_PASSWORD_ENV] = login["password"]
    await hoist.run(
        "providers", "add", OVIRT_PROVIDER, "--type", "ovirt",
        "--url", login["url"], "--user", login["user"],
        "--password-env", OVIRT_PASSWORD_ENV, "--yes", "--wait",
    )  # fmt: skip


async def _add_openstack(hoist: Hoist, stack: Stack) -> None:
    cloud = stack.cloud
    if cloud is None:
        raise CliError("the plans migrate from OpenStack, but the stack runs no cloud")
    creds = cloud.credentials()
    hoist.env[OPENSTACK_PASSWORD_ENV] = creds["password"]
    await hoist.run(
        "providers", "add", OPENSTACK_PROVIDER, "--type", "openstack",
        "--url", cloud.auth_url, "--user", creds["username"],
        "--password-env", OPENSTACK_PASSWORD_ENV, "--project", creds["projectName"],
        "--domain", creds["domainName"], "--region", creds["regionName"],
        "--ca-file", str(cloud.ca_file), "--wait",
    )  # fmt: skip


async def _add_remote(hoist: Hoist, stack: Stack) -> None:
    """The second cluster as its administrator hands it over: its API server's URL and CA,
    and a token of the least-privilege identity ``python -m tools.remoterbac`` makes there
    (``tools/stack.py`` applied it)."""
    creds = stack.remote_credentials()
    ca_file = stack.spec.workdir / "remote-ca.pem"
    ca_file.write_text(creds["cacert"])
    hoist.env[REMOTE_TOKEN_ENV] = creds["token"]
    await hoist.run(
        "providers", "add", REMOTE_PROVIDER, "--type", "kubevirt", "--url", creds["url"],
        "--password-env", REMOTE_TOKEN_ENV, "--ca-file", str(ca_file), "--wait",
    )  # fmt: skip


def _target(plan: dsc.PlanSpec) -> str:
    return REMOTE_PROVIDER if plan.target == "remote" else TARGET_PROVIDER


def _provider(source: str) -> str:
    return OVIRT_PROVIDER if source == "ovirt" else OPENSTACK_PROVIDER


async def _maps_and_plan(hoist: Hoist, scenario: dsc.Scenario, plan: dsc.PlanSpec) -> None:
    source = _provider(plan.source)
    net_args = [f"--entry={src}={target}" for src, target in plan.networks.items()]
    await hoist.run(
        "maps", "create", "network", f"{plan.name}-network",
        "--source", source, "--target", _target(plan), *net_args,
    )  # fmt: skip
    storage_args = [f"--entry={src}={st.cli()}" for src, st in plan.storage.items()]
    await hoist.run(
        "maps", "create", "storage", f"{plan.name}-storage",
        "--source", source, "--target", _target(plan), *storage_args,
    )  # fmt: skip
    vm_args = [f"--vm={vm}" for vm in plan.vms]
    hook_args: list[str] = []
    for wanted, step in ((plan.pre_hook, "pre"), (plan.post_hook, "post")):
        if wanted:
            name = f"{plan.name}-{step}"
            await hoist.run("hooks", "create", name, "--image", HOOK_IMAGE, "--deadline", "2m")
            hook_args.append(f"--{step}-hook={name}")
    await hoist.run(
        "plans", "create", plan.name, "--source", source, "--target", _target(plan),
        "--namespace", scenario.namespace_of(plan),
        "--network-map", f"{plan.name}-network", "--storage-map", f"{plan.name}-storage",
        *vm_args, "--target-power-state", plan.target_power_state,
        *(["--convert-guest"] if plan.convert_guest else []), *hook_args,
    )  # fmt: skip
