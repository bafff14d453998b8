"""Generate the documentation tables that must never drift from the code.

``python -m tools.docgen`` rewrites the blocks between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` in README.md and docs/*.md; ``--check`` only reports stale blocks (the
test suite runs it, so a changed event or setting without its docs fails CI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared import catalog
from shared.catalog import Delivery
from shared.settings import HoistSettings

ROOT = Path(__file__).resolve().parent.parent
FILES = (ROOT / "README.md", ROOT / "docs" / "architecture.md", ROOT / "docs" / "events.md")


def catalog_table() -> str:
    rows = [
        "| subject (`hoist.` + …) | type | producer | consumers | payload | delivery |",
        "|---|---|---|---|---|---|",
    ]
    for e in catalog.EVENTS:
        if e.delivery is Delivery.STREAM:
            assert e.stream is not None
            delivery = (
                f"JetStream `{e.stream.name}`: stored, de-duplicated by id, "
                "at least once with retries, then dead letter"
            )
        else:
            delivery = "core NATS: at most once, latest value wins"
        consumers = ", ".join(e.consumers) or "integrators"
        rows.append(
            f"| `{e.subject}` | `{e.ce_type}` | {e.producer} | {consumers} | "
            f"[`{e.payload.__name__}`](events.md#{e.payload.__name__.lower()}) | {delivery} |"
        )
    return "\n".join(rows)


def streams_table() -> str:
    rows = ["| stream (`HOIST_` + …) | subjects | retention | holds |", "|---|---|---|---|"]
    for s in catalog.STREAMS:
        age = f"{s.max_age.days} days" if s.max_age else "`HOIST_NATS_STREAM_MAX_AGE_DAYS`"
        subjects = ", ".join(f"`{x}`" for x in s.subjects)
        rows.append(f"| `{s.name}` | {subjects} | {age} | {s.description} |")
    return "\n".join(rows)


def payloads_reference() -> str:
    out: list[str] = []
    seen: set[str] = set()
    for e in catalog.EVENTS:
        model = e.payload
        if model.__name__ in seen:
            continue
        seen.add(model.__name__)
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"#### {model.__name__}", "", f"`{e.ce_type}`. {doc}".rstrip(), ""]
        out += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            out.append(
                f"| `{name}` | {_type(field.annotation)} | {'yes' if field.is_required() else 'no'}"
                f" | {(field.description or '').replace('|', '/')} |"
            )
        out.append("")
    return "\n".join(out).rstrip()


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for group, gfield in HoistSettings.model_fields.items():
        model = gfield.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            shown = _default(default)
            rows.append(
                f"| `HOIST_{group.upper()}_{name.upper()}` | {shown} | "
                f"{(field.description or '').replace('|', '/')} |"
            )
    return "\n".join(rows)


def _default(value: Any) -> str:
    if value is None or value == []:
        return "—"
    if hasattr(value, "get_secret_value"):
        return f"`{value.get_secret_value()}`"
    if isinstance(value, list):
        return "`" + ",".join(str(v) for v in value) + "`"
    return f"`{value}`"


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    text = (
        re.sub(r"\b(typing|shared\.payloads|datetime)\.", "", str(annotation))
        if ("[" in str(annotation) or "|" in str(annotation))
        else text
    )
    return "`" + text.replace("|", "or").replace("<class '", "").replace("'>", "") + "`"


BLOCKS = {
    "catalog": catalog_table,
    "streams": streams_table,
    "payloads": payloads_reference,
    "settings": settings_table,
}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(
            rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", flags=re.DOTALL
        )
        body = make().replace("\\", "\\\\")
        text = pattern.sub(rf"\g<1>{body}\n\g<2>", text)
    return text


def stale() -> list[Path]:
    return [f for f in FILES if f.exists() and render(f.read_text()) != f.read_text()]


def main() -> int:
    if "--check" in sys.argv:
        bad = stale()
        for f in bad:
            print(f"{f.relative_to(ROOT)} is stale: run `python -m tools.docgen`")
        return 1 if bad else 0
    for f in FILES:
        if f.exists():
            f.write_text(render(f.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
