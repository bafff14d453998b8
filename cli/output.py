"""Printing: tables for people, JSON for scripts, errors on stderr.

Rich decides by itself whether stdout is a terminal; piped, it writes plain text without
control codes, so logs of ``hoist ... | tee`` stay readable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.client import ApiError, Unreachable

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SEVERITY_STYLE = {
    "Critical": "bold red",
    "error": "red",
    "Warning": "yellow",
    "warning": "yellow",
    "Information": "cyan",
    "info": "cyan",
}
PHASE_STYLE = {
    "Ready": "green",
    "Succeeded": "green",
    "Completed": "green",
    "Running": "cyan",
    "Staging": "cyan",
    "Pending": "dim",
    "NotReady": "yellow",
    "Failed": "red",
    "ConnectionFailed": "red",
    "Canceled": "yellow",
}


def emit_json(doc: Any) -> None:
    """One JSON document on stdout, never wrapped or coloured (scripts parse it)."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_line(doc: Any) -> None:
    """One JSON document on one line (a stream of changes)."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def styled(value: Any, styles: dict[str, str] = PHASE_STYLE) -> Text:
    text = "" if value is None else str(value)
    return Text(text, style=styles.get(text, ""))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        t.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in row))
    out.print(t)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """``key: value`` lines, aligned."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        line = Text(f"{key + ':':<{width + 1}} ", style="bold")
        line.append(value if isinstance(value, Text) else Text("" if value is None else str(value)))
        out.print(line)


def size(n: float | int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def problems(items: Sequence[dict[str, Any]]) -> None:
    """A plan's or map's validation problems: errors red, warnings yellow."""
    if not items:
        out.print(Text("no problems", style="green"))
        return
    table(
        ("severity", "code", "path", "message"),
        (
            (
                styled(p.get("severity"), SEVERITY_STYLE),
                p.get("code"),
                p.get("path"),
                p.get("message"),
            )
            for p in items
        ),
        title="problems",
    )


def _loc(loc: Any) -> str:
    if isinstance(loc, list):
        return ".".join(str(x) for x in loc)
    return str(loc or "")


def describe_api_error(exc: ApiError) -> list[str]:
    """The lines that say what the API refused and why: FastAPI's ``detail`` as a string,
    a list of ``{loc, type, msg}`` (422, 409, 400), or ``{message, problems}`` (a start
    refused by validation)."""
    lines = [f"{exc.method} {exc.url} failed: HTTP {exc.status}"]
    body = exc.body
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        lines.append(f"  {detail}")
    elif isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict):
                where = _loc(item.get("loc"))
                kind = item.get("type", "")
                lines.append(f"  {where}: {item.get('msg', '')} ({kind})")
                cert = item.get("certificate")
                if isinstance(cert, dict):
                    lines.append(
                        f"    certificate: subject {cert.get('subject')}, SHA-256 "
                        f"{cert.get('sha256Fingerprint')}"
                    )
            else:
                lines.append(f"  {item}")
    elif isinstance(detail, dict):
        if detail.get("message"):
            lines.append(f"  {detail['message']}")
        for p in detail.get("problems") or []:
            lines.append(
                f"  {p.get('severity', '')} {p.get('code', '')} at {p.get('path', '')}: "
                f"{p.get('message', '')}"
            )
        if not detail.get("message") and not detail.get("problems"):
            lines.append(f"  {json.dumps(detail)}")
    if exc.hint:
        lines.append(f"  {exc.hint}")
    if exc.status == 401:
        lines.append(
            "  (give a token: --token, --token-file, HOIST_CLI_TOKEN or `token` in the config)"
        )
    return lines


def report_error(exc: Exception) -> None:
    if isinstance(exc, ApiError):
        for line in describe_api_error(exc):
            err.print(Text(line))
    elif isinstance(exc, Unreachable):
        err.print(Text(f"cannot reach {exc.url}: {exc.why}"))
    else:
        err.print(Text(str(exc)))
