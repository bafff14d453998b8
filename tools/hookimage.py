"""A small hook image: the entrypoint of a hook container built from this repository.

It reads what Hoist mounts for a hook (``shared.hooks``: ``/tmp/hook/plan.yml``,
``vm.yml``, ``playbook.yml``), checks the documents are there and well formed, and logs
what a hook author sees of the VM (source id, name, status and addresses as the inventory
knew them, the target namespace and name, the plan and migration), so the hook's log in
``hoist plans logs`` shows exactly what a real hook would have had to work with. Then it
does what its arguments say, which is how the demo and the tests give it the behaviours of
real hooks (one that works, one that fails, one that hangs):

    python -m tools.hookimage [--exit CODE] [--sleep SECONDS] [--dir /tmp/hook]

In the simulated cluster an image name maps to this command (``ClusterConfig.images``),
for instance ``registry.example/hoist/hook-fail`` to ``python -m tools.hookimage --exit 3``.
A playbook hook's arguments (``ansible-runner run ... -p playbook.yml``) are run as given
when ``ansible-runner`` is installed; this image has no Ansible, so it says so and fails
(use an Ansible runner image, such as ``quay.io/konveyor/hook-runner``, for playbooks).

Stdlib and PyYAML only, like a hook image would be.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shared import hooks


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def describe(folder: Path) -> list[str]:
    """What the hook knows, as log lines; ``ValueError`` when a document is missing."""
    missing = [n for n in (hooks.PLAN_FILE, hooks.VM_FILE) if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} in {folder}")
    plan = _load(folder / hooks.PLAN_FILE)
    vm = _load(folder / hooks.VM_FILE)
    source = vm.get("vm") or {}
    target = vm.get("target") or {}
    data = source.get("data") or {}
    status = source.get("status") or data.get("status") or data.get("powerState") or "unknown"
    addresses = [ip for nic in data.get("nics") or [] for ip in nic.get("ips") or []]
    lines = [
        f"hook {vm.get('hook')} at {vm.get('step')} of plan {plan['plan']['name']} "
        f"(migration {plan['migration']['id']}, {plan['migration']['type']})",
        f"source VM {source.get('name')} ({source.get('id')}), status {status}, "
        f"addresses {addresses}",
        f"target VM {target.get('namespace')}/{target.get('name')}, power "
        f"{target.get('powerState')}, disks {[d.get('pvc') for d in target.get('disks') or []]}",
    ]
    book = folder / hooks.PLAYBOOK_FILE
    if book.is_file():
        plays = yaml.safe_load(book.read_text()) or []
        lines.append(f"playbook with {len(plays)} play(s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookimage", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=hooks.MOUNT, type=Path)
    parser.add_argument("--exit", type=int, default=0, dest="code")
    parser.add_argument("--sleep", type=float, default=0.0)
    args, rest = parser.parse_known_args(argv)
    try:
        for line in describe(args.dir):
            print(line, flush=True)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"hook: cannot read what Hoist mounted: {exc}", file=sys.stderr, flush=True)
        return 2
    if rest:
        if shutil.which(rest[0]) is None:
            print(f"hook: {rest[0]} is not installed in this image", file=sys.stderr, flush=True)
            return 127
        os.execvp(rest[0], rest)  # noqa: S606 (the container's own command, as an entrypoint)
    if args.sleep:
        print(f"hook: working for {args.sleep:g} s", flush=True)
        time.sleep(args.sleep)
    if args.code:
        print(f"hook: failing with exit code {args.code}", file=sys.stderr, flush=True)
    else:
        print("hook: done", flush=True)
    return int(args.code)


if __name__ == "__main__":
    sys.exit(main())
