"""``make bench``: run every benchmark under ``bench/`` with ``--json`` and print a table.

Each benchmark measures its own baseline (a peer tool, raw library) in the same run and
prints, as its last line, ``{"bench", "figures", "targets"}``. A benchmark that crashes or
prints no such line fails the run; a missed target is shown, not hidden.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def run(module: str) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--json"],
        capture_output=True,
        text=True,
        cwd=BENCH_DIR.parent,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        print(f"bench/{module}.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return None
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        print(f"bench/{module}.py printed no JSON result line")
        return None
    return result


def main() -> int:
    modules = sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_"))
    if len(sys.argv) > 1:
        modules = [m for m in modules if m in sys.argv[1:]]
    rows: list[tuple[str, str, str, str, str]] = []
    failed = False
    for module in modules:
        print(f"running bench/{module}.py ...", flush=True)
        result = run(module)
        if result is None:
            failed = True
            continue
        for figure, value in result["figures"].items():
            target = result["targets"].get(figure)
            rows.append(
                (
                    result["bench"],
                    figure,
                    str(value),
                    target["target"] if target else "",
                    ("yes" if target["met"] else "NO") if target else "",
                )
            )
    widths = [
        max(len(r[i]) for r in [*rows, ("bench", "figure", "value", "target", "met")])
        for i in range(5)
    ]
    header = ("bench", "figure", "value", "target", "met")
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
