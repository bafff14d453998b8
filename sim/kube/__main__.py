"""Run a simulated cluster until interrupted: `python -m sim.kube --kubeconfig PATH`.

It writes a kubeconfig for kubectl and every client, prints one JSON line saying where the
cluster is (so scripts can wait for it), and stops cleanly on SIGINT or SIGTERM, killing
every pod process it started.

A YAML file (`--config`) may set any ClusterConfig field, e.g.:

    nodes: [{name: node-1, pods: 50}, {name: node-2}]
    images: {quay.io/hoist/ovirt-populator: [python, -m, services.populators.ovirt]}
    storage_capacity: {standard: 107374182400}
    disabled: [kubelet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.devservices import until_interrupted
from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig, NodeConfig


def build_config(args: argparse.Namespace) -> ClusterConfig:
    values: dict[str, Any] = {}
    if args.config:
        values = yaml.safe_load(Path(args.config).read_text()) or {}
    if "nodes" in values:
        values["nodes"] = [NodeConfig(**node) for node in values["nodes"]]
    elif args.nodes:
        values["nodes"] = [NodeConfig(f"node-{n + 1}") for n in range(args.nodes)]
    if "disabled" in values or args.disable:
        values["disabled"] = frozenset(values.get("disabled", [])) | frozenset(args.disable)
    if "storage_root" in values:
        values["storage_root"] = Path(values["storage_root"])
    for image in args.image:
        name, _, argv = image.partition("=")
        values.setdefault("images", {})[name] = argv.split()
    if args.port is not None:
        values["port"] = args.port
    if args.host:
        values["host"] = args.host
    if args.no_tls:
        values["tls"] = False
    if args.token:
        values["token"] = args.token
    return ClusterConfig(**values)


async def run(args: argparse.Namespace) -> None:
    cluster = Cluster(build_config(args))
    await cluster.start()
    kubeconfig = cluster.kubeconfig(Path(args.kubeconfig).resolve())
    print(json.dumps({"url": cluster.url, "kubeconfig": str(kubeconfig)}), flush=True)
    await until_interrupted()
    await cluster.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.kube", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", default="kubeconfig", help="where to write the kubeconfig")
    parser.add_argument("--config", help="YAML file with ClusterConfig fields")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    parser.add_argument("--nodes", type=int, help="number of simulated nodes")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        help="IMAGE=ARGV: what a container image runs (repeatable)",
    )
    parser.add_argument(
        "--disable", action="append", default=[], help="a controller to leave off (repeatable)"
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    parser.add_argument("--token", help="the admin bearer token (default: random)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
