"""``python -m services.populators.openstack``: the program the OpenStack populator pod runs.

Arguments as Forklift's openstack-populator (``--volume-path --secret-name --cr-name
--cr-namespace --owner-uid --pvc-size --endpoint --image-id``), plus ``--image-wait``;
credentials from the env under the Secret's keys (see ``identity``). Serves
``openstack_populator_progress{ownerUID}`` and byte counters on ``/metrics`` (TLS) while it
copies. Exit 0 only when every byte is written, verified and synced; otherwise exit 1 (2 for
bad arguments or env) with one line on stderr that says why.
"""

from __future__ import annotations

import logging
import sys
import time

from services.populators.common.failure import run_main
from services.populators.common.metrics import Progress, serving
from services.populators.openstack.identity import OpenStackCredentials
from services.populators.openstack.populate import populate
from shared import populator as contract

log = logging.getLogger("populator")
NAME = "openstack-populator"
METRIC = contract.OPENSTACK.percent_metric


def main(argv: list[str] | None = None) -> int:
    # The flags are the contract's, the very table the controller builds the pod's args
    # from; --image-wait is the populator's own (the controller never passes it).
    p = contract.PodArgs.parser(contract.Source.OPENSTACK, "Copies a Glance image into a volume.")
    p.add_argument(
        "--image-wait",
        type=float,
        default=600.0,
        help="seconds to wait for an image still queued/saving before failing",
    )
    ns = p.parse_args(argv)

    async def run() -> None:
        creds = OpenStackCredentials.from_env()
        progress = Progress(METRIC, ns.owner_uid)
        started = time.monotonic()
        async with serving(progress, ns.metrics_port):
            out = await populate(
                ns.endpoint, ns.image_id, ns.volume_path, creds, progress, ns.image_wait,
                ns.pvc_size,
            )  # fmt: skip
        seconds = time.monotonic() - started
        log.info(
            "copied image %s: %d bytes (%d of data) in %.2f s (%.0f MiB/s) from %s, %s verified, "
            "%d resumes, %d retries, %d re-authentications, qcow2 converted: %s, O_DIRECT %s",
            ns.image_id,
            out.size,
            out.data_bytes,
            seconds,
            out.size / max(seconds, 1e-6) / (1 << 20),
            out.image_url,
            out.algo,
            out.resumes,
            out.retries,
            out.reauths,
            "yes" if out.converted else "no",
            "on" if out.direct else "off",
        )

    return run_main(NAME, run)


if __name__ == "__main__":
    sys.exit(main())
