"""``python -m sim.ovirt [scenario.yaml | --vms N]``: run a simulated engine until Ctrl-C.

Prints the API URL, the CA file, the server certificate's SHA-256 fingerprint (what a
provider Secret pins) and the users, so ovirtsdk4, curl or the populator can be pointed at it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from shared.devservices import until_interrupted
from sim.ovirt import scenario
from sim.ovirt.engine import Engine


async def serve(args: argparse.Namespace, workdir: Path) -> None:
    if args.scenario:
        inventory, faults = scenario.load(args.scenario)
    else:
        inventory, faults = scenario.generate(args.vms), []
    async with Engine(inventory, faults, workdir) as engine:
        if args.churn:
            engine.start_churn(args.churn)
        print(f"api:         {engine.api_url}")
        print(f"ca file:     {engine.cert.ca_file}")
        print(f"fingerprint: {engine.cert.fingerprint}")
        print(
            f"imageio:     {engine.imageio.url} (proxy {engine.proxy.url if engine.proxy else '-'})"
        )
        for user, password in inventory.users.items():
            print(f"user:        {user} / {password}")
        print(f"inventory:   {len(inventory.vms)} VMs, {len(inventory.disks)} disks", flush=True)
        await until_interrupted()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", nargs="?", type=Path, help="a scenario YAML file")
    parser.add_argument("--vms", type=int, default=100, help="generated VMs without a file")
    parser.add_argument("--churn", type=float, default=0, help="inventory changes per second")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hoist-sim-ovirt-") as tmp,
        contextlib.suppress(KeyboardInterrupt),
    ):
        asyncio.run(serve(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
