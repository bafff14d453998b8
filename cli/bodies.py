"""Request bodies from ``-f FILE`` (the API's body as YAML or JSON) with flags over it: the
options ``create`` commands share and the merge, so a file and flags mean the same thing in
every command."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

F = TypeVar("F", bound=Callable[..., Any])


def load_body(path: str) -> dict[str, Any]:
    """An API body from a YAML (or JSON, which is YAML) file, or ``-`` for stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        data = yaml.safe_load(text)
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="-f") from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path} is not YAML or JSON: {exc}", param_hint="-f") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping (the API's body)", param_hint="-f")
    return data


def body_options(f: F) -> F:
    """``-f FILE``, ``--source`` and ``--target``: what every create command takes."""
    for option in reversed(
        [
            click.option(
                "-f",
                "--file",
                "file",
                type=click.Path(dir_okay=False, allow_dash=True),
                help="The API body as YAML or JSON; flags override it.",
            ),
            click.option("--source", help="Source provider (name or id)."),
            click.option("--target", help="Target provider (name or id)."),
        ]
    ):
        f = option(f)
    return f


def merged(
    file: str | None, flags: dict[str, Any], required: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """The file's body with every flag given (not None) over it; a usage error naming the
    flags of required keys neither gave."""
    body = load_body(file) if file else {}
    body.update({k: v for k, v in flags.items() if v is not None})
    missing = [flag for key, flag in required if not body.get(key)]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (give them, or -f FILE with them)")
    return body
