"""``python -m services.populators <ovirt|openstack> [flags]``: the image's populator entrypoint.

One Hoist image serves every populator; the first argument picks which one runs, so a
populator pod names its kind in ``args`` and keeps the image's entrypoint. Only the chosen
populator is imported: a pod's start-up pays for nothing else.
"""

from __future__ import annotations

import importlib
import sys

KINDS = {
    "ovirt": "services.populators.ovirt.__main__",
    "openstack": "services.populators.openstack.__main__",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in KINDS:
        print(f"usage: hoist-populator {{{','.join(KINDS)}}} [flags]", file=sys.stderr)
        return 2
    module = importlib.import_module(KINDS[args[0]])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
