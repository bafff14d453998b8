"""``hoist maps``: network and storage maps, from flags (``--entry SRC=DEST``) or from a
YAML/JSON file holding the API's body (flags override the file)."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from cli.bodies import body_options, merged
from cli.client import Api, seg
from cli.names import Names, lookup
from cli.output import emit_json, fields, out, problems, table
from cli.runner import json_mode, output_option, run, show

KINDS = ("network", "storage")
VOLUME_MODES = ("Filesystem", "Block")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")


def _source(text: str) -> dict[str, str]:
    if text.startswith("id:"):
        return {"id": text[3:]}
    return {"name": text}


def _split(spec: str) -> tuple[str, str]:
    src, sep, dest = spec.rpartition("=")
    if not sep or not src or not dest:
        raise click.BadParameter(f"{spec!r}: expected SRC=DEST", param_hint="--entry")
    return src, dest


def network_entry(spec: str) -> dict[str, Any]:
    """``SRC=pod``, ``SRC=ignored``, ``SRC=multus:NAME`` or ``SRC=multus:NS/NAME``."""
    src, dest = _split(spec)
    destination: dict[str, str]
    if dest in ("pod", "ignored"):
        destination = {"type": dest}
    elif dest.startswith("multus:") and dest[7:]:
        ns, _, nad = dest[7:].rpartition("/")
        if not nad or (ns == "" and "/" in dest[7:]):
            raise click.BadParameter(
                f"{spec!r}: multus:NAME or multus:NS/NAME", param_hint="--entry"
            )
        destination = {"type": "multus", "name": nad} | ({"namespace": ns} if ns else {})
    else:
        raise click.BadParameter(
            f"{spec!r}: the destination is pod, ignored, multus:NAME or multus:NS/NAME",
            param_hint="--entry",
        )
    return {"source": _source(src), "destination": destination}


def storage_entry(spec: str) -> dict[str, Any]:
    """``SRC=CLASS[:VOLUMEMODE[:ACCESSMODE]]``; SRC ``glance``, ``id:<id>`` or a name."""
    src, dest = _split(spec)
    parts = dest.split(":")
    if len(parts) > 3 or not parts[0]:
        raise click.BadParameter(
            f"{spec!r}: expected SRC=CLASS[:VOLUMEMODE[:ACCESSMODE]]", param_hint="--entry"
        )
    destination: dict[str, str] = {"storageClass": parts[0]}
    if len(parts) > 1 and parts[1]:
        if parts[1] not in VOLUME_MODES:
            raise click.BadParameter(
                f"{spec!r}: volume mode {parts[1]!r} is not one of {', '.join(VOLUME_MODES)}",
                param_hint="--entry",
            )
        destination["volumeMode"] = parts[1]
    if len(parts) > 2 and parts[2]:
        if parts[2] not in ACCESS_MODES:
            raise click.BadParameter(
                f"{spec!r}: access mode {parts[2]!r} is not one of {', '.join(ACCESS_MODES)}",
                param_hint="--entry",
            )
        destination["accessMode"] = parts[2]
    source = {"type": "glance"} if src == "glance" else _source(src)
    return {"source": source, "destination": destination}


def map_body(
    kind: str,
    name: str | None,
    file: str | None,
    source: str | None,
    target: str | None,
    entries: tuple[str, ...],
    description: str | None,
) -> dict[str, Any]:
    parse = network_entry if kind == "network" else storage_entry
    flags: dict[str, Any] = {
        "name": name,
        "sourceProvider": source,
        "targetProvider": target,
        "description": description,
        "entries": [parse(e) for e in entries] or None,
    }
    required = [("name", "NAME"), ("sourceProvider", "--source"),
                ("targetProvider", "--target"), ("entries", "--entry")]  # fmt: skip
    return merged(file, flags, required)


def _destination(kind: str, d: dict[str, Any]) -> str:
    if kind == "network":
        if d.get("type") == "multus":
            return f"multus:{d['namespace'] + '/' if d.get('namespace') else ''}{d.get('name')}"
        return str(d.get("type"))
    modes = [d.get("volumeMode"), d.get("accessMode")]
    return ":".join([d.get("storageClass", ""), *(m or "" for m in modes)]).rstrip(":")


def _source_text(s: dict[str, Any]) -> str:
    if s.get("type"):
        return str(s["type"])
    return f"id:{s['id']}" if s.get("id") else str(s.get("name"))


def show_map(kind: str, m: dict[str, Any], names: Names | None = None) -> None:
    names = names or Names()
    fields(
        [
            ("name", m["name"]),
            ("id", m["id"]),
            ("kind", f"{kind} map"),
            ("source", names.of(m.get("sourceProvider"))),
            ("target", names.of(m.get("targetProvider"))),
        ]
    )
    table(
        ("source", "destination"),
        ((_source_text(e["source"]), _destination(kind, e["destination"])) for e in m["entries"]),
        title="entries",
    )
    problems(m.get("problems") or [])


@click.group()
def maps() -> None:
    """Network and storage maps."""


@maps.group("create")
def create() -> None:
    """Create a network or storage map."""


def _create_command(kind: str) -> None:
    example = "prod=pod" if kind == "network" else "data=standard:Block:ReadWriteOnce"

    @create.command(kind, help=f"Create a {kind} map (--entry {example}, repeatable).")
    @click.argument("name", required=False)
    @body_options
    @click.option("--entry", "entries", multiple=True, metavar="SPEC", help="SRC=DEST, repeatable.")
    @click.option("--description")
    @output_option
    def command(
        name: str | None,
        file: str | None,
        source: str | None,
        target: str | None,
        entries: tuple[str, ...],
        description: str | None,
    ) -> None:
        body = map_body(kind, name, file, source, target, entries, description)

        async def work(api: Api) -> None:
            m = await api.post("planner", f"/api/v1/{kind}maps", body)
            if json_mode():
                emit_json(m)
            else:
                out.print(f"{kind} map {m['name']} created")
                show_map(kind, m, await lookup(api))

        run(work)


for _kind in KINDS:
    _create_command(_kind)


@maps.command("list")
@click.argument("kind", type=click.Choice(KINDS), required=False)
@output_option
def list_(kind: str | None) -> None:
    """Network and storage maps (or one kind)."""

    async def work(api: Api) -> None:
        kinds = [kind] if kind else list(KINDS)
        found = {k: (await api.get("planner", f"/api/v1/{k}maps"))["items"] for k in kinds}
        if json_mode():
            emit_json(found[kind] if kind else found)
            return
        names = await lookup(api)
        rows = [
            (
                k,
                m["name"],
                names.of(m.get("sourceProvider")),
                names.of(m.get("targetProvider")),
                len(m["entries"]),
                Text(
                    str(len(m.get("problems") or [])), style="yellow" if m.get("problems") else ""
                ),
            )
            for k in kinds
            for m in found[k]
        ]
        table(("kind", "name", "source", "target", "entries", "problems"), rows)

    run(work)


@maps.command("get")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("ref")
@output_option
def get(kind: str, ref: str) -> None:
    """A map, its entries and problems."""

    async def work(api: Api) -> None:
        m = await api.get("planner", f"/api/v1/{kind}maps/{seg(ref)}")
        names = Names() if json_mode() else await lookup(api)
        show(m, lambda: show_map(kind, m, names))

    run(work)


@maps.command("delete")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("ref")
@output_option
def delete(kind: str, ref: str) -> None:
    """Delete a map no plan uses."""

    async def work(api: Api) -> None:
        await api.delete("planner", f"/api/v1/{kind}maps/{seg(ref)}")
        show({"deleted": ref, "kind": kind}, lambda: out.print(f"{kind} map {ref} deleted"))

    run(work)
