"""The command line every benchmark shares: ``--json`` and the result printed as tools/bench.py
reads it (figures as a table, then the result object as the last line)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    p.add_argument("--json", action="store_true", help="print the result object last")
    return p


def emit(result: dict[str, Any], as_json: bool) -> int:
    for key, value in result["figures"].items():
        print(f"{key:>22}: {value}")
    if as_json:
        print(json.dumps(result))
    return 0


def target(value: float, op: str, bound: float) -> dict[str, Any]:
    """One entry of ``targets``: ``op`` is ">=", "<=", ">", "<" or "==" (a bound that must
    be reached exactly, such as a limit)."""
    met = {
        ">=": value >= bound,
        "<=": value <= bound,
        ">": value > bound,
        "<": value < bound,
        "==": value == bound,
    }[op]
    return {"value": value, "target": f"{op} {bound}", "met": met}
