"""``python -m services.populators.ovirt``: the program the oVirt populator pod runs.

Arguments as Forklift's ovirt-populator (``--volume-path --secret-name --cr-name
--cr-namespace --owner-uid --pvc-size --engine-url --disk-id``), credentials from the env
(``user``, ``password``, ``cacert``, ``insecureSkipVerify``, ``fingerprint``). Serves
``ovirt_progress{ownerUID}`` on ``/metrics`` (TLS) while it copies. Exit 0 only when every
byte is written and synced; otherwise one line on stderr says why.

A warm copy's stage pod gets the stage flags too (``shared.populator.stages.StageArgs``:
``--backup-id --backup-mode --from-checkpoint --checkpoint [--fresh-volume]``); it copies
that stage only. On success every pod writes its ``StageResult`` to the termination log,
with the block checksum of the disk when it copied the whole disk.
"""

from __future__ import annotations

import logging
import sys
import time

from services.populators.common import args as common
from services.populators.common.failure import PopulatorFailure, run_main
from services.populators.common.metrics import Progress, serving
from services.populators.ovirt import stage as stages
from services.populators.ovirt.populate import populate
from shared import populator as contract
from shared.populator.stages import StageArgs

log = logging.getLogger("populator")
NAME = "ovirt-populator"


def main(argv: list[str] | None = None) -> int:
    # The flags are the contract's, the very table the controller builds the pod's args from.
    p = contract.PodArgs.parser(
        contract.Source.OVIRT, "Copies an oVirt disk through ovirt-imageio into a volume."
    )
    ns = p.parse_args(argv)
    stage = StageArgs.parsed(ns)

    async def run() -> None:
        creds = common.Credentials.from_env()
        progress = Progress(contract.OVIRT.percent_metric, ns.owner_uid)
        started = time.monotonic()
        async with serving(progress, ns.metrics_port):
            outcome = await populate(
                ns.engine_url, ns.disk_id, ns.volume_path, creds, progress, stage
            )
        seconds = time.monotonic() - started
        log.info(
            "copied %d bytes of data in %.2f s (%.0f MiB/s) via %s, %d readers, "
            "%d retries, O_DIRECT %s",
            outcome.data_bytes,
            seconds,
            outcome.data_bytes / max(seconds, 1e-6) / (1 << 20),
            outcome.url,
            outcome.readers,
            outcome.retries,
            "on" if outcome.direct else "off",
        )
        # The checksum goes with it: the controller puts it on the volume. A warm stage's
        # result is what the next stage starts from, so not writing it fails the pod; a cold
        # copy's is only its checksum, and the copy itself stands without it.
        try:
            stages.report(outcome.result)
        except PopulatorFailure as exc:
            if stage is not None:
                raise
            log.warning("%s; the copy stands, its checksum is not recorded", exc)

    return run_main(NAME, run)


if __name__ == "__main__":
    sys.exit(main())
