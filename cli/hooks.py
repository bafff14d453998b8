"""``hoist hooks``: the images (and Ansible playbooks) plans run as Jobs around a VM's
migration, before its source is powered off (``--pre-hook``) or after its VirtualMachine
exists (``--post-hook``; see ``hoist plans create``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from cli.client import Api, seg
from cli.output import emit_json, fields, out, table
from cli.runner import json_mode, output_option, run, show

_DURATION = re.compile(r"^(\d+)([smh]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


def seconds(text: str) -> int:
    """``90``, ``90s``, ``10m`` or ``2h`` as seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: seconds, or a number with s, m or h (10m)")
    return int(match.group(1)) * _UNIT[match.group(2)]


def show_hook(h: dict[str, Any]) -> None:
    book = h.get("playbook")
    fields(
        [
            ("name", h["name"]),
            ("id", h["id"]),
            ("image", h["image"]),
            ("playbook", f"{len(book.splitlines())} lines" if book else "-"),
            ("service account", h.get("serviceAccount") or "(the namespace's default)"),
            ("deadline", f"{h['deadlineSeconds']} s"),
            ("retries", h["retries"]),
            ("plans", ", ".join(h.get("plans") or []) or "-"),
            ("description", h.get("description") or "-"),
        ]
    )


@click.group()
def hooks() -> None:
    """Hooks: a Job a plan runs before a VM's source is powered off, or after its
    VirtualMachine is created."""


@hooks.command("create")
@click.argument("name")
@click.option("--image", required=True, help="The image the hook's Job runs.")
@click.option(
    "--playbook",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An Ansible playbook (the image is then a runner, e.g. quay.io/konveyor/hook-runner).",
)
@click.option(
    "--deadline", metavar="DURATION", help="All tries together (90s, 10m, 1h; default 10m)."
)
@click.option("--retries", type=click.IntRange(0, 10), help="Failed pods tried again (default 0).")
@click.option("--service-account", help="The Job's service account in the target namespace.")
@click.option("--description")
@output_option
def create(
    name: str,
    image: str,
    playbook: Path | None,
    deadline: str | None,
    retries: int | None,
    service_account: str | None,
    description: str | None,
) -> None:
    """Create a hook."""
    body: dict[str, Any] = {"name": name, "image": image}
    if playbook is not None:
        body["playbook"] = playbook.read_text()
    if deadline is not None:
        body["deadlineSeconds"] = seconds(deadline)
    if retries is not None:
        body["retries"] = retries
    if service_account:
        body["serviceAccount"] = service_account
    if description:
        body["description"] = description

    async def work(api: Api) -> None:
        h = await api.post("planner", "/api/v1/hooks", body)
        if json_mode():
            emit_json(h)
        else:
            out.print(f"hook {h['name']} created")
            show_hook(h)

    run(work)


@hooks.command("list")
@output_option
def list_() -> None:
    """Hooks, their image and the plans using them."""

    async def work(api: Api) -> None:
        items = (await api.get("planner", "/api/v1/hooks"))["items"]
        if json_mode():
            emit_json({"items": items})
            return
        rows = [
            (
                h["name"],
                h["image"],
                "yes" if h.get("playbook") else "-",
                f"{h['deadlineSeconds']} s",
                h["retries"],
                ", ".join(h.get("plans") or []) or "-",
            )
            for h in items
        ]
        table(("name", "image", "playbook", "deadline", "retries", "plans"), rows)

    run(work)


@hooks.command("get")
@click.argument("ref")
@click.option("--playbook", "print_playbook", is_flag=True, help="Print the playbook only.")
@output_option
def get(ref: str, print_playbook: bool) -> None:
    """A hook (by name or id)."""

    async def work(api: Api) -> None:
        h = await api.get("planner", f"/api/v1/hooks/{seg(ref)}")
        if print_playbook and not json_mode():
            out.print(h.get("playbook") or "", markup=False, end="")
            return
        show(h, lambda: show_hook(h))

    run(work)


@hooks.command("delete")
@click.argument("ref")
@output_option
def delete(ref: str) -> None:
    """Delete a hook no plan uses."""

    async def work(api: Api) -> None:
        await api.delete("planner", f"/api/v1/hooks/{seg(ref)}")
        show({"deleted": ref}, lambda: out.print(f"hook {ref} deleted"))

    run(work)
