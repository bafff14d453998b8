"""``python -m sim.openstack [SCENARIO.yaml]``: run a simulated OpenStack cloud until Ctrl-C.

Prints what a client needs (``OS_AUTH_URL``, the scenario user's credentials, the CA bundle
path) as ``KEY=value`` lines. Faults can be switched on while it runs with
``POST <sim>/sim/faults`` (a JSON object of ``Faults`` fields, any valid token).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from shared.devservices import until_interrupted
from sim.openstack import scenario as sc
from sim.openstack.cloud import openstack_cloud


async def _run(scenario: sc.Scenario, image_proxy: bool) -> None:
    async with openstack_cloud(scenario, image_proxy=image_proxy) as cloud:
        print(f"OS_AUTH_URL={cloud.auth_url}")
        print(f"OS_USERNAME={scenario.user}")
        print(f"OS_PASSWORD={scenario.password}")
        print(f"OS_PROJECT_NAME={scenario.project}")
        print("OS_USER_DOMAIN_ID=default\nOS_PROJECT_DOMAIN_ID=default")
        print(f"OS_CACERT={cloud.ca_file}")
        print(f"HOIST_SIM_URL={cloud.sim_url}", flush=True)
        print("cloud is up; Ctrl-C stops it", file=sys.stderr, flush=True)
        await until_interrupted()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("scenario", nargs="?", type=Path, help="YAML scenario (default: empty)")
    p.add_argument("--no-image-proxy", action="store_true", help="catalog names Glance itself")
    ns = p.parse_args(argv)
    scenario = sc.load(ns.scenario) if ns.scenario else sc.Scenario()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(scenario, not ns.no_image_proxy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
