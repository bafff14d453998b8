"""``python -m sim.openstack.generate --servers 5000 > big.yaml``: a big scenario for scale work.

Inventory collectors and planners must cope with thousands of servers, volumes and ports;
copying is not the point there, so generated disks hold no data (holes only, created in
microseconds) unless ``--data-mib`` asks for some. The mix is seeded: the same arguments
give the same cloud.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

import yaml

FLAVORS = [
    {"name": "m1.small", "vcpus": 1, "ram_mib": 2048, "disk_gib": 20},
    {"name": "m1.medium", "vcpus": 2, "ram_mib": 4096, "disk_gib": 40},
    {"name": "m1.large", "vcpus": 4, "ram_mib": 8192, "disk_gib": 80},
    {"name": "m1.xlarge", "vcpus": 8, "ram_mib": 16384, "disk_gib": 160},
]
VOLUME_TYPES = ["standard", "ssd", "archive"]


def generate(servers: int, networks: int, seed: int, data_mib: int) -> dict[str, Any]:
    rng = random.Random(seed)
    nets = [{"name": f"net-{i}", "cidr": f"10.{i % 256}.0.0/16"} for i in range(networks)]
    out: list[dict[str, Any]] = []
    for i in range(servers):
        boot = "volume" if rng.random() < 0.3 else "image"
        volumes = [
            {"size_mib": rng.choice([16, 32, 64]), "data_mib": data_mib,
             "type": rng.choice(VOLUME_TYPES)}
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))
        ]  # fmt: skip
        out.append(
            {
                "name": f"vm-{i:05d}",
                "flavor": rng.choice(FLAVORS)["name"],
                "boot": boot,
                "root": {"size_mib": rng.choice([32, 64]), "data_mib": data_mib},
                "volumes": volumes,
                "networks": rng.sample([n["name"] for n in nets], k=min(len(nets), 1 + (i % 2))),
                "status": "SHUTOFF" if rng.random() < 0.2 else "ACTIVE",
            }
        )
    return {
        "flavors": FLAVORS,
        "networks": nets,
        "volume_types": VOLUME_TYPES,
        "servers": out,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--networks", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-mib", type=int, default=0, help="data per disk (default: none)")
    ns = p.parse_args(argv)
    yaml.safe_dump(generate(ns.servers, ns.networks, ns.seed, ns.data_mib), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
