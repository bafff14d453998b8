"""A seeded chaos run: two plans over two sources, processes SIGKILLed while they run.

Private NATS and PostgreSQL (``synchronous_commit=on`` for Hoist's database: a commit the
services saw is on disk before PostgreSQL answers), the whole stack on them
(``tools.stack``): the oVirt engine and an OpenStack cloud, ``vms`` VMs split between them,
every one up, one small disk each (throttled, so copies overlap the kills). Some oVirt disks
never transfer (the engine's ``paused_system`` fault: their VMs fail), and some VMs of each
plan are canceled early. Both plans start at once.

The schedule comes from ``seed`` alone: each trigger fires once the share of VMs ended
passes its threshold (the first at the start), and SIGKILLs one component, or two at once;
every service and the controller are killed at least once, NATS once and PostgreSQL once.
A killed service or controller is started again as a Deployment's pod would be; NATS and
PostgreSQL restart on their data (``shared.devservices``).

What is counted once every VM has ended (``Result``): disks not byte-exact, objects left in
the target namespace, duplicated claims or VirtualMachines (and populator pods of one disk
running at once, sampled), source VMs in the wrong power state (off after a success, on
after a failure or cancel), messages dead-lettered, and 5xx answers but 503 (a dependency
down, which the services say so while NATS or PostgreSQL restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from kubernetes_asyncio import client

from shared import populator as contract
from shared.devservices import (
    DevServices,
    dev_services,
    plain_dsn,
    restart_nats,
    restart_postgres,
)
from tools.processes import SERVICES
from tools.stack import Stack, StackSpec
from tools.verifying import compare_disk

NAMESPACE = "migrated"
FINAL = ("Succeeded", "Failed", "Canceled")
COMPONENTS = (*SERVICES, "controller")
POPULATORS = tuple((contract.GROUP, contract.VERSION, kind.plural) for kind in contract.KINDS)


@dataclass
class Kill:
    at: float  # share of VMs ended
    victims: tuple[str, ...]


def schedule(seed: int, extra: int = 2) -> list[Kill]:
    """Every component once (NATS and PostgreSQL too), ``extra`` more, some two at once."""
    rng = random.Random(seed)
    singles = [*COMPONENTS, "nats", "postgresql"]
    for _ in range(extra):
        singles.append(rng.choice(COMPONENTS))
    rng.shuffle(singles)
    kills: list[tuple[str, ...]] = []
    while singles:
        first = singles.pop()
        pair = next((v for v in singles if v != first and rng.random() < 0.35), None)
        if pair is not None and {first, pair} & {"nats", "postgresql"} == set():
            singles.remove(pair)
            kills.append((first, pair))
        else:
            kills.append((first,))
    marks = sorted(rng.uniform(0.0, 0.5) for _ in kills)
    marks[0] = 0.0
    return [Kill(at, victims) for at, victims in zip(marks, kills, strict=True)]


@dataclass
class Result:
    seed: int
    vms: int
    kills: list[list[str]] = field(default_factory=list)
    #: Kills while VMs still ran (the rest came after the plans had ended).
    kills_in_flight: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    disks_checked: int = 0
    disks_mismatched: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    power_wrong: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # a VM in another phase than planned
    deadletters: int = 0
    api_5xx: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def log(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, seed: int, vms: int, workdir: Path, extra_kills: int) -> None:
        self.seed, self.vms, self.workdir = seed, vms, workdir
        self.rng = random.Random(seed)
        self.kills = schedule(seed, extra_kills)
        self.result = Result(seed, vms)
        self.stack: Stack
        self.servers: DevServices
        #: source name -> expected final phase
        self.expected: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # source name -> source id
        self.plans: dict[str, str] = {}  # kind -> plan id

    # -- set-up ------------------------------------------------------------------------------

    def _ovirt(self, names: list[str], failing: set[str]) -> dict[str, Any]:
        return {
            "networks": [{"name": "prod", "vlan": 100}],
            "vms": [
                {"name": n, "nics": [{"network": "prod"}],
                 "disks": [{"name": f"{n}-disk", "size": "4MiB", "allocated": 0.5,
                            "extent": "1MiB", "bootable": True}]}
                for n in names
            ],
            "faults": [
                {"kind": "bandwidth", "bytes_per_second": 512 << 10},
                *({"kind": "paused_system", "disk": f"{n}-disk"} for n in sorted(failing)),
            ],
        }  # fmt: skip

    async def api(self, name: str, method: str, path: str, **kw: Any) -> httpx.Response:
        """One call, retried while the service is down (it is being killed)."""
        svc = self.stack.services[name]
        deadline = time.monotonic() + 120
        while True:
            try:
                r = await svc.client.request(
                    method, f"/api/v1{path}", headers=svc.auth(), timeout=30, **kw
                )
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            if r.status_code >= 500 and r.status_code != 503:
                self.result.api_5xx.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
            if r.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                continue
            return r

    async def _ok(self, name: str, method: str, path: str, **kw: Any) -> Any:
        r = await self.api(name, method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{name}: {method} {path}: {r.status_code} {r.text[:1000]}")
        return r.json() if r.content else None

    async def _register(self) -> dict[str, str]:
        stack = self.stack
        assert stack.cloud is not None
        ovirt, given = stack.ovirt_credentials(), stack.cloud.credentials()
        ca = given.pop("cacert")
        bodies = {
            "ovirt": {"name": "engine", "type": "ovirt", "url": ovirt["url"],
                      "credentials": {"user": ovirt["user"], "password": ovirt["password"]},
                      "tls": {"fingerprint": ovirt["fingerprint"]}},
            "openstack": {"name": "cloud", "type": "openstack", "url": stack.cloud.auth_url,
                          "credentials": given, "tls": {"caCert": ca}},
            "cluster": {"name": "host", "type": "kubevirt"},
        }  # fmt: skip
        ids = {k: (await self._ok("inventory", "POST", "/providers", json=b))["id"]
               for k, b in bodies.items()}  # fmt: skip
        for pid in ids.values():
            deadline = time.monotonic() + 120
            while (await self._ok("inventory", "GET", f"/providers/{pid}"))["status"][
                "phase"
            ] != "Ready":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"provider {pid} not Ready")
                await asyncio.sleep(0.5)
        return ids

    async def _plan(self, kind: str, providers: dict[str, str], names: list[str]) -> str:
        network, storage = {
            "ovirt": ("prod", {"name": "data"}),
            "openstack": ("private", {"name": "standard"}),
        }[kind]
        common = {"sourceProvider": providers[kind], "targetProvider": providers["cluster"]}
        net = await self._ok(
            "planner",
            "POST",
            "/networkmaps",
            json={
                **common,
                "name": f"{kind}-net",
                "entries": [{"source": {"name": network}, "destination": {"type": "pod"}}],
            },
        )
        sto = await self._ok(
            "planner",
            "POST",
            "/storagemaps",
            json={
                **common,
                "name": f"{kind}-sto",
                "entries": [
                    {
                        "source": storage,
                        "destination": {"storageClass": "standard-wffc", "volumeMode": "Block"},
                    }
                ],
            },
        )
        plan = await self._ok("planner", "POST", "/plans", json={
            **common, "name": f"chaos-{kind}", "targetNamespace": NAMESPACE,
            "networkMap": net["id"], "storageMap": sto["id"],
            "vms": [{"name": n} for n in names],
            # VMs in waves: the plans last long enough for kills to land between steps.
            "limits": {"maxVmsInFlight": 3}})  # fmt: skip
        if plan["phase"] != "Ready":
            raise RuntimeError(f"plan {kind} not Ready: {plan['problems']}")
        return str(plan["id"])

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> Result:
        from sim.openstack import scenario as sc

        began = time.monotonic()
        half = self.vms // 2
        ovirt_names = [f"ov-{i:02d}" for i in range(half)]
        cloud_names = [f"os-{i:02d}" for i in range(self.vms - half)]
        failing = set(self.rng.sample(ovirt_names, max(1, half // 5)))
        rest = [n for n in ovirt_names if n not in failing]
        canceled = {*self.rng.sample(rest, 1), *self.rng.sample(cloud_names, max(1, half // 5))}
        for n in [*ovirt_names, *cloud_names]:
            self.expected[n] = (
                "Failed" if n in failing else "Canceled" if n in canceled else "Succeeded"
            )
        cloud = sc.Scenario(
            servers=[
                sc.Server(name=n, flavor="m1.small", networks=["private"], boot="volume",
                          root=sc.Disk(size_mib=4, data_mib=2))
                for n in cloud_names
            ]
        )  # fmt: skip
        # Its own temp dir: the postgres user must get through to it (a pytest tmp_path is 0700).
        async with dev_services(use_env=False) as servers:
            self.servers = servers
            conn = await asyncpg.connect(plain_dsn(servers.database_url))
            try:
                await conn.execute("ALTER DATABASE hoist SET synchronous_commit = on")
            finally:
                await conn.close()
            spec = StackSpec(
                workdir=self.workdir / "stack",
                nats_url=servers.nats_url,
                database_url=servers.database_url,
                token=f"chaos-token-{self.seed:08d}",
                ovirt=self._ovirt(ovirt_names, failing),
                openstack=cloud,
                prefix="chaos",
                namespace=NAMESPACE,
                env={"HOIST_ORCHESTRATOR_LEASE_SECONDS": "8"},
            )
            async with Stack(spec) as stack:
                self.stack = stack
                await self._migrate(ovirt_names, cloud_names, canceled)
                await self._check()
        self.result.wall_s = round(time.monotonic() - began, 1)
        log(f"result: {asdict(self.result)}")
        return self.result

    async def _migrate(self, ovirt: list[str], cloud: list[str], canceled: set[str]) -> None:
        stack = self.stack
        assert stack.engine is not None
        assert stack.cloud is not None
        for vm in stack.engine.inv.vms.values():
            self.ids[vm.name] = vm.id
        for server in stack.cloud.state.servers.values():
            self.ids[server.name] = server.id
        providers = await self._register()
        for kind, names in (("ovirt", ovirt), ("openstack", cloud)):
            self.plans[kind] = await self._plan(kind, providers, names)
        migrations = {}
        for kind, pid in self.plans.items():
            started = await self._ok("planner", "POST", f"/plans/{pid}/start")
            migrations[kind] = started["migration"]["id"]
        watcher = asyncio.create_task(self._watch_pods())
        pending = list(self.kills)
        asked: set[str] = set()
        deadline = time.monotonic() + 900
        try:
            while True:
                phases = await self._phases()
                ended = sum(1 for p in phases.values() if p in FINAL)
                # A VM is canceled once it runs (its source is off by then, or about to be).
                # Kills wait until the cancels were taken: a cancel in flight when the
                # orchestrator dies comes back only after its ack wait, by when a small
                # VM may have succeeded, which is right but not what this run checks.
                running = {n for n in canceled - asked if phases.get(n) == "Running"}
                for kind, pid in self.plans.items():
                    ids = [self.ids[n] for n in running if (n in ovirt) == (kind == "ovirt")]
                    if ids:
                        answer = await self._ok("planner", "POST", f"/plans/{pid}/cancel",
                                                json={"vms": ids, "reason": "chaos"})  # fmt: skip
                        log(f"cancel {sorted(running)}: {answer}")
                asked |= running
                settled = all(phases.get(n) in FINAL for n in canceled)
                while settled and pending and ended / self.vms >= pending[0].at:
                    await self._kill(pending.pop(0).victims, ended)
                if ended == self.vms and not pending:
                    break
                if ended == self.vms:  # the plans ended before the last kills: do them now
                    await self._kill(pending.pop(0).victims, ended)
                    continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the plans did not end: {phases}")
                await asyncio.sleep(0.5)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self.result.phases = dict(Counter(phases.values()))
        for name, phase in phases.items():
            if phase != self.expected[name]:
                self.result.unexpected.append(f"{name}: {phase}, not {self.expected[name]}")

    async def _phases(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pid in self.plans.values():
            r = await self.api("planner", "GET", f"/plans/{pid}/vms")
            if r.status_code == 200:
                out |= {v["name"]: v["phase"] for v in r.json()["items"]}
        return out

    async def _kill(self, victims: tuple[str, ...], ended: int) -> None:
        log(f"SIGKILL {', '.join(victims)} ({ended}/{self.vms} VMs ended)")
        self.result.kills.append(list(victims))
        if ended < self.vms:
            self.result.kills_in_flight += 1
        stack = self.stack
        for v in victims:
            if v in SERVICES:
                proc = stack.services[v].proc
            elif v == "controller":
                proc = stack.controller.proc
            else:
                continue
            assert proc is not None
            proc.kill()
            await proc.wait()
        for v in victims:
            if v == "nats":
                assert self.servers.nats is not None
                await restart_nats(self.servers.nats, kill=True)
            elif v == "postgresql":
                assert self.servers.postgres is not None
                await restart_postgres(self.servers.postgres, kill=True)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))  # a pod's restart is not instant
        for v in victims:
            if v in SERVICES:
                await stack.services[v].start()
                ready = await stack.services[v].wait_ready(120)
                if ready.get("http_status") != 200:
                    raise RuntimeError(f"{v} not ready after its restart: {ready}")
            elif v == "controller":
                await stack.controller.start(within=120)

    async def _watch_pods(self) -> None:
        """Samples the populator pods: two of one disk alive at once is a duplicate."""
        async with self.stack.kube() as kube:
            core = client.CoreV1Api(kube)
            while True:
                with contextlib.suppress(Exception):
                    pods = await core.list_namespaced_pod(
                        NAMESPACE, label_selector="app.kubernetes.io/component=populator"
                    )
                    live = Counter(
                        (p.metadata.labels or {}).get(contract.DISK)
                        for p in pods.items
                        if not p.metadata.deletion_timestamp
                        and p.status.phase in ("Pending", "Running")
                    )
                    for disk, n in live.items():
                        if n > 1 and f"populator pods of {disk}" not in self.result.duplicates:
                            self.result.duplicates.append(f"populator pods of {disk}")
                await asyncio.sleep(0.5)

    # -- the checks --------------------------------------------------------------------------

    async def _check(self) -> None:
        for name in SERVICES:
            r = await self.api(name, "GET", f"/{name}/deadletters")
            if r.status_code == 200:
                self.result.deadletters += len(r.json())
        await self._power()
        await self._disks()
        deadline = time.monotonic() + 90
        while True:  # cleanup runs after a VM's end: give it its time
            left, dups = await self._objects()
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        self.result.leftovers = left
        self.result.duplicates += dups

    async def _power(self) -> None:
        stack = self.stack
        assert stack.engine is not None
        assert stack.cloud is not None
        for name, phase in self.expected.items():
            sid = self.ids[name]
            if name.startswith("ov-"):
                on = stack.engine.inv.vms[sid].status == "up"
            else:
                on = stack.cloud.state.servers[sid].status == "ACTIVE"
            if on != (phase != "Succeeded"):
                self.result.power_wrong.append(f"{name} ({phase}): {'on' if on else 'off'}")

    async def _claims(self) -> list[Any]:
        async with self.stack.kube() as kube:
            found = await client.CoreV1Api(kube).list_namespaced_persistent_volume_claim(NAMESPACE)
        return list(found.items)

    async def _disks(self) -> None:
        stack = self.stack
        assert stack.engine is not None
        assert stack.cloud is not None
        claims = [c for c in await self._claims() if (c.metadata.labels or {}).get(contract.DISK)]
        by_disk = {
            (c.metadata.labels[contract.VM], c.metadata.labels[contract.DISK]): c for c in claims
        }
        for name, phase in self.expected.items():
            if phase != "Succeeded":
                continue
            sid = self.ids[name]
            if name.startswith("ov-"):
                vm = stack.engine.inv.vms[sid]
                sources = [
                    (a.disk_id, await stack.engine.image_path(a.disk_id),
                     stack.engine.inv.disks[a.disk_id].provisioned_size)
                    for a in vm.disk_attachments
                ]  # fmt: skip
            else:
                server = stack.cloud.state.servers[sid]
                sources = [
                    (v, Path(stack.cloud.state.volumes[v].path),
                     Path(stack.cloud.state.volumes[v].path).stat().st_size)
                    for v in server.volume_ids
                ]  # fmt: skip
            for disk_id, path, size in sources:
                self.result.disks_checked += 1
                claim = by_disk.get((sid, disk_id))
                if claim is None:
                    self.result.disks_mismatched.append(f"{name}/{disk_id}: no claim")
                    continue
                copy = await stack.volume_file(NAMESPACE, claim.metadata.name)
                same = await asyncio.to_thread(
                    compare_disk, path, "raw", copy, size, qemu_compare=False
                )
                if not same.match:
                    self.result.disks_mismatched.append(f"{name}/{disk_id}")

    async def _objects(self) -> tuple[list[str], list[str]]:
        """What is left that should not be, and what exists twice."""
        left: list[str] = []
        succeeded = {self.ids[n] for n, p in self.expected.items() if p == "Succeeded"}
        async with self.stack.kube() as kube:
            core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
            left += [f"pod {p.metadata.name}" for p in
                     (await core.list_namespaced_pod(NAMESPACE)).items]  # fmt: skip
            secrets = await core.list_namespaced_secret(NAMESPACE, label_selector=contract.VM)
            left += [f"secret {s.metadata.name}" for s in secrets.items]
            for group, version, plural in POPULATORS:
                found = await custom.list_namespaced_custom_object(
                    group, version, NAMESPACE, plural
                )
                left += [f"{plural} {o['metadata']['name']}" for o in found["items"]]
            vms = await custom.list_namespaced_custom_object(
                "kubevirt.io", "v1", NAMESPACE, "virtualmachines"
            )
        vm_of = Counter((o["metadata"].get("labels") or {}).get(contract.VM)
                        for o in vms["items"])  # fmt: skip
        claims = await self._claims()
        disk_of = Counter(
            ((c.metadata.labels or {}).get(contract.VM), (c.metadata.labels or {}).get(
                contract.DISK)) for c in claims
        )  # fmt: skip
        for c in claims:
            if (c.metadata.labels or {}).get(contract.VM) not in succeeded:
                left.append(f"claim {c.metadata.name}")
        for o in vms["items"]:
            if (o["metadata"].get("labels") or {}).get(contract.VM) not in succeeded:
                left.append(f"virtualmachine {o['metadata']['name']}")
        dups = [f"virtualmachines of {v}" for v, n in vm_of.items() if n > 1]
        dups += [f"claims of {d}" for d, n in disk_of.items() if n > 1]
        return left, dups


async def run(seed: int, vms: int, workdir: Path, extra_kills: int = 2) -> Result:
    return await Run(seed, vms, workdir, extra_kills).run()
