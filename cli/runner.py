"""How every command runs: its options' state, ``-o/--output``, and ``run``, which drives a
command's coroutine with ``asyncio.run`` over one ``httpx.AsyncClient`` and turns expected
failures (an API's refusal, an unreachable URL, a TLS failure, a user saying no) into a
message on stderr and exit code 1. Usage errors stay click's (exit 2).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from cli.client import Api, ApiError, Unreachable, connect
from cli.config import Flags, resolve
from cli.output import emit_json, report_error

F = TypeVar("F", bound=Callable[..., Any])
OUTPUTS = ("table", "json")


class Failure(Exception):
    """A command could not do what was asked, for a reason the message says (exit 1)."""


@dataclass
class State:
    flags: Flags = field(default_factory=Flags)
    output: str = "table"
    verbose: bool = False


def state() -> State:
    ctx = click.get_current_context()
    found = ctx.find_object(State)
    if found is None:  # a command invoked on its own (tests of a sub-group)
        found = ctx.ensure_object(State)
    return found


def json_mode() -> bool:
    return state().output == "json"


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).output = value


def output_option(f: F) -> F:
    """``-o/--output`` on a command as well as on the root: the nearest one given wins."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default=None,
        expose_value=False,
        callback=_set_output,
        help="table (default) or json.",
    )(f)


def run(work: Callable[[Api], Awaitable[int | None]]) -> None:
    """Run one command's coroutine; translate expected failures into exit codes."""
    settings = resolve(state().flags)

    async def main() -> int | None:
        async with connect(settings) as api:
            return await work(api)

    try:
        code = asyncio.run(main())
    except (ApiError, Unreachable, Failure) as exc:
        report_error(exc)
        raise click.exceptions.Exit(1) from None
    except ssl.SSLError as exc:  # a CA file that is not a PEM bundle
        report_error(Failure(f"cannot use the CA file {settings.verify}: {exc.reason or exc}"))
        raise click.exceptions.Exit(1) from None
    if code:
        raise click.exceptions.Exit(code)


def show(doc: Any, render: Callable[[], None]) -> None:
    """``doc`` as JSON in json mode, else what ``render`` prints for people."""
    if json_mode():
        emit_json(doc)
    else:
        render()
