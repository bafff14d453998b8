"""``python -m tools.remoterbac [--name N] [--namespace NS]``: what a remote target
cluster's admin applies before registering it with Hoist, as a YAML stream.

Hoist's CRDs and VolumePopulators, and an identity for Hoist with exactly
``shared.remotetarget.cluster_role_rules()`` (no right to define APIs). Apply it with the
admin's own credentials, then give Hoist a token of that ServiceAccount::

    python -m tools.remoterbac | kubectl --context remote apply -f -
    kubectl --context remote -n hoist-remote create token hoist-remote --duration 720h

With the default names it is ``charts/remote-target.yaml`` (``tools.chartgen`` keeps it).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from shared import remotetarget


def render(
    name: str = remotetarget.DEFAULT_NAME, namespace: str = remotetarget.DEFAULT_NAMESPACE
) -> str:
    return yaml.safe_dump_all(remotetarget.manifest(name, namespace), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.remoterbac", description=__doc__)
    parser.add_argument("--name", default=remotetarget.DEFAULT_NAME)
    parser.add_argument("--namespace", default=remotetarget.DEFAULT_NAMESPACE)
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.name, args.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
