"""A stand-in for the conversion image in orchestrator tests (``pipelines.images``): takes
the real ``ConvertArgs``, checks every volume is where the contract puts it, prints a few
log lines and ends with a ``ConversionResult`` in its termination log, after ``--name``'s
wish: a name with ``convfail`` fails as virt-v2v would, ``convslow`` takes 4 s (time to
kill the orchestrator meanwhile), ``convkill`` dies without a result. The real program
and a real conversion are tested in ``tests/converter``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from shared.conversion import TERMINATION_LOG, ConversionResult, ConvertArgs, Reason


def main() -> int:
    args = ConvertArgs.parse(sys.argv[1:])
    print(f"fake converter: {args.name}, disks {[m.value for m in args.disks]}", flush=True)
    missing = [p for p in args.images() if not Path(p).exists()]
    if "convslow" in args.name:
        time.sleep(4)
    if "convkill" in args.name:
        os.kill(os.getpid(), 9)
    if missing:
        result = ConversionResult(False, Reason.VOLUME_MISSING, f"no volume at {missing}")
    elif "convfail" in args.name:
        print("virt-v2v-in-place: error: inspection could not detect the source guest", flush=True)
        result = ConversionResult(
            False, Reason.CONVERSION_FAILED, "inspection could not detect the source guest"
        )
    else:
        result = ConversionResult(True, message="converted debian 12", os={"distro": "debian"})
    print(f"fake converter: {'ok' if result.succeeded else 'failed'}", flush=True)
    Path(TERMINATION_LOG).write_text(result.to_json())
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
