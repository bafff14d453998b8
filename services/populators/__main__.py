"""``python -m services.populators <ovirt|openstack> [flags]``: the image's populator entrypoint.

One Hoist image serves every populator; the first argument picks which one runs, so a
populator pod names its kind in ``args`` and keeps the image's entrypoint. Only the chosen
populator is imported: a pod's start-up pays for nothing else. The chosen one copies the
source disk into the prime claim, serving its progress page; when the pod ends, the
controller hands the volume over to the user's claim.

Next: services/controller/ending.py
"""

from __future__ import annotations

import importlib
import sys

from shared import populator as contract

KINDS: dict[contract.Source, str] = {
    contract.Source.OVIRT: "services.populators.ovirt.__main__",
    contract.Source.OPENSTACK: "services.populators.openstack.__main__",
}
"""The module each source's populator runs, by the first pod argument: the controller
builds that argument from the same ``contract.Source`` (``PodArgs.argv``)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == [contract.PVCINIT]:
        # The consumer pod of claims that bind on first consumer: being scheduled was its
        # whole job (the claims are bound once it runs).
        print(f"{contract.PVCINIT}: the claims are bound")
        return 0
    choices = ",".join([*KINDS, contract.PVCINIT])
    usage = f"usage: hoist-populator {{{choices}}} [flags]"
    if args[:1] in (["-h"], ["--help"]):
        print(f"{usage}\n\n`hoist-populator KIND --help`: the flags of that populator.")
        return 0
    if not args or args[0] not in KINDS:
        print(usage, file=sys.stderr)
        return 2
    module = importlib.import_module(KINDS[contract.Source(args[0])])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    sys.exit(main())
