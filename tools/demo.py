"""``make demo``: a whole migration, oVirt and OpenStack into KubeVirt, through all four services.

One command: NATS and PostgreSQL (private servers from ``shared.devservices`` unless
``HOIST_NATS_URL`` / ``HOIST_DATABASE_URL`` are set), the oVirt and OpenStack simulators
holding the scenario's VMs, the simulated cluster, the four services and the populator
controller (``tools.stack``). Then, as a user would, through the ``hoist`` CLI: register
the providers (oVirt's certificate fingerprint shown and accepted), create the network and
storage maps and the plans, start every plan and watch the progress bars. At the end every
migrated disk is checked byte for byte (sha256 of the source's guest view vs the target
volume's backing file) and every VirtualMachine against its source's configuration;
``demo-report.json`` records it all.

Exit codes: 0 everything migrated and matches; 1 a migration failed or something does not
match (the report says what); 2 the scenario file is invalid (nothing was started); 130
interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from shared.devservices import (
    DevServices,
    create_database,
    dev_services,
    drop_database,
    until_interrupted,
)
from tools import demoreport as rep
from tools import demoscenario as dsc
from tools.democli import Hoist, register_and_plan
from tools.demoverify import expectations, verify_plans
from tools.stack import Stack, StackSpec

REPO = Path(__file__).resolve().parents[1]
WORKDIR = REPO / ".hoist-dev" / "demo"


def _banner(text: str) -> None:
    print(f"\n== {text} ", "=" * max(0, 76 - len(text)), sep="", flush=True)


async def run(args: argparse.Namespace) -> int:
    try:
        scenario = dsc.load(args.scenario)
    except dsc.ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    report = rep.Report(str(args.scenario), datetime.now(UTC).isoformat(timespec="seconds"))
    report.plans = [
        rep.PlanResult(p.name, p.source, scenario.namespace_of(p)) for p in scenario.plans
    ]
    if WORKDIR.exists():  # the previous run's volumes and logs: this run's only
        shutil.rmtree(WORKDIR)
    WORKDIR.mkdir(parents=True)
    mark = time.monotonic()
    try:
        async with dev_services() as ds, _of_this_run(ds) as (database_url, prefix):
            spec = StackSpec(
                workdir=WORKDIR,
                nats_url=ds.nats_url,
                database_url=database_url,
                prefix=prefix,
                token=os.environ.get("HOIST_AUTH_TOKENS", "").split(",")[0]
                or secrets.token_urlsafe(24),
                ovirt=scenario.ovirt.sim_dict() if scenario.ovirt else None,
                openstack=scenario.openstack,
                namespace=scenario.namespace,
                image=args.image or "",
                remote=scenario.needs_remote(),
            )
            _banner("starting NATS, PostgreSQL, the simulators, the cluster and Hoist")
            async with Stack(spec) as stack:
                report.phases["stack"] = time.monotonic() - mark
                _describe(stack, ds.nats is None, ds.postgres is None)
                code = await _migrate(stack, scenario, report, args)
                report.seconds = time.monotonic() - began
                rep.write(args.report, report)
                _banner("result")
                for line in rep.summary(report):
                    print(line)
                print(f"report: {args.report}")
                if args.keep:
                    print(f"\nlogs: {WORKDIR}")
                    for line in keep_lines(stack):
                        print(line)
                    await until_interrupted()
                return code
    except Exception as exc:  # the report says what broke, even when the stack did
        report.problems.append(f"{exc.__class__.__name__}: {exc}")
        report.seconds = time.monotonic() - began
        rep.write(args.report, report)
        print(f"\ndemo FAILED: {exc}\nlogs: {WORKDIR}\nreport: {args.report}", file=sys.stderr)
        return 1


@contextlib.asynccontextmanager
async def _of_this_run(ds: DevServices) -> AsyncIterator[tuple[str, str]]:
    """A database and a NATS prefix of this run's own: on servers of the user's
    (HOIST_DATABASE_URL, HOIST_NATS_URL) an earlier run's providers, plans and streams would
    otherwise meet this one's. Both are removed when the run ends; on the private servers
    the demo started they go with the servers."""
    prefix = f"demo{secrets.token_hex(4)}"
    url = ds.database_url
    if ds.postgres is None:
        url = await create_database(ds.database_url, "hoist_demo")
        print(f"PostgreSQL   database {make_url(url).database} for this run", flush=True)
    try:
        yield url, prefix
    finally:
        if ds.postgres is None:
            await drop_database(url)
        if ds.nats is None:
            await _delete_streams(ds.nats_url, prefix)


async def _delete_streams(nats_url: str, prefix: str) -> None:
    """The JetStream streams and KV buckets under ``prefix`` (``<PREFIX>_*``,
    ``KV_<prefix>-*``)."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith(f"{prefix.upper()}_") or name.startswith(f"KV_{prefix}-"):
                await js.delete_stream(name)
    finally:
        await nc.close()


def keep_lines(stack: Stack) -> list[str]:
    """What a user needs to go on with a stack ``--keep`` left running: the console's URL,
    and the CLI's settings, token included (the services accept only this run's token; an
    export without it is answered 401). The console serves every API on its one URL."""
    return [
        "the stack keeps running; Ctrl-C stops everything.",
        f"web console  {stack.console.url}/ui/  (sign in with the token below)",
        'the hoist CLI (and curl -H "Authorization: Bearer $HOIST_CLI_TOKEN" $HOIST_CLI_URL/...):',
        f"  export HOIST_CLI_URL={stack.console.url}",
        f"  export HOIST_CLI_TOKEN={stack.spec.token}",
        f"  export KUBECONFIG={stack.kubeconfig.resolve()}",
    ]


def _describe(stack: Stack, external_nats: bool, external_db: bool) -> None:
    print(f"Kubernetes   {stack.cluster.url}  (simulated; kubeconfig {stack.kubeconfig})")
    if stack.engine is not None:
        inv = stack.engine.inv
        print(f"oVirt        {stack.engine.api_url}  ({len(inv.vms)} VMs, {len(inv.disks)} disks)")
    if stack.cloud is not None:
        st = stack.cloud.state
        print(
            f"OpenStack    {stack.cloud.auth_url}  ({len(st.servers)} servers, "
            f"{len(st.volumes)} volumes)"
        )
    print(f"NATS         {stack.spec.nats_url}{'  (HOIST_NATS_URL)' if external_nats else ''}")
    print(f"PostgreSQL   {'HOIST_DATABASE_URL' if external_db else 'private server'}")
    for name, svc in stack.services.items():
        print(f"{name:<13}{svc.url}")
    print(f"{'console':<13}{stack.console.url}/ui/  (every API on one URL)")


async def _migrate(
    stack: Stack, scenario: dsc.Scenario, report: rep.Report, args: argparse.Namespace
) -> int:
    hoist = Hoist(stack.cli_env(), REPO)
    mark = time.monotonic()
    _banner("registering providers, creating maps and plans (hoist CLI)")
    await register_and_plan(hoist, stack, scenario)
    report.phases["providers and plans"] = time.monotonic() - mark

    expected = expectations(stack, scenario)
    mark = time.monotonic()
    _banner("starting every plan")
    for plan in scenario.plans:
        await hoist.run("plans", "start", plan.name)
    deadline = time.monotonic() + args.timeout
    for plan in scenario.plans:
        _banner(f"hoist watch {plan.name}")
        if not await hoist.watch(plan.name, deadline - time.monotonic()):
            report.problems.append(f"plan {plan.name}: hoist watch hung and was stopped")
    report.phases["migration"] = time.monotonic() - mark

    mark = time.monotonic()
    _banner("verifying every disk (sha256) and VM configuration")
    await verify_plans(stack, scenario, report, expected)
    report.phases["verification"] = time.monotonic() - mark
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--scenario", type=Path, default=dsc.DEFAULT_PATH, help="scenario YAML (docs/demo.md)"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("demo-report.json"), help="where the report goes"
    )
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument(
        "--image",
        help="run populator pods in this built image (make image; docs/image.md), not on "
        "this machine's Python",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds the migrations may take in all"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
