"""What the stage tests' populator image runs: a stand-in for a stage pod, steered by files
in a control directory the test owns (the kubelet runs it as a local process, so it sees
the host's files besides its own mounts).

``python stagepod.py --control DIR <pod args>``: appends its args to ``DIR/runs.jsonl``,
then, for the checkpoint of its ``--checkpoint`` flag:

- ``<checkpoint>.hold`` exists: wait until the test removes it (the stage is "copying");
- ``<checkpoint>.fail`` holds a number above 0: count it down and exit 1 (a failed stage);
- else: append the checkpoint to ``stages.log`` on its volume and write the
  ``StageResult`` of ``<checkpoint>.result`` (``{"copied": n, "zeroed": m}``, default
  zeros) to its termination log, then exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The repository this file is in, not whichever one the interpreter's install points to.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.populator.stages import TERMINATION_LOG, StageArgs, StageResult

STAGES_LOG = "stages.log"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--volume-path", type=Path, required=True)
    StageArgs.add_arguments(parser)
    args, _ = parser.parse_known_args(argv)
    control: Path = args.control
    with (control / "runs.jsonl").open("a") as runs:
        runs.write(json.dumps(argv) + "\n")
    stage = StageArgs.parsed(args)
    if stage is None:
        print("stagepod: not a stage pod", file=sys.stderr)
        return 2
    hold = control / f"{stage.current}.hold"
    while hold.exists():
        time.sleep(0.05)
    fail = control / f"{stage.current}.fail"
    left = int(fail.read_text() or "0") if fail.exists() else 0
    if left > 0:
        fail.write_text(str(left - 1))
        print(f"stagepod: stage {stage.current} failed on purpose", file=sys.stderr)
        return 1
    with (args.volume_path / STAGES_LOG).open("a") as log:
        log.write(f"{stage.current}\n")
    result = control / f"{stage.current}.result"
    doc = json.loads(result.read_text()) if result.exists() else {"copied": 0, "zeroed": 0}
    Path(TERMINATION_LOG).write_text(StageResult(**doc).to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
