"""``python -m services.converter --name VM --disk Filesystem --disk Block ...``: the
conversion pod's entrypoint (``shared.conversion.ConvertArgs``). Exit 0 when the guest was
converted (and written back), 1 when not, 2 for arguments it cannot read; the outcome is
in the termination log either way (``ConversionResult``)."""

from __future__ import annotations

import sys
from pathlib import Path

from services.converter.converting import run
from shared.conversion import SCRATCH, TERMINATION_LOG, ConvertArgs


def main(argv: list[str] | None = None) -> int:
    args = ConvertArgs.parse(sys.argv[1:] if argv is None else argv)
    result = run(args, scratch=Path(SCRATCH))
    try:
        Path(TERMINATION_LOG).write_text(result.to_json())
    except OSError as exc:  # outside a pod: the log says it too
        print(f"cannot write {TERMINATION_LOG}: {exc}", file=sys.stderr)
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
