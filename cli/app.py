"""``hoist``: the root command, its global options, and how every command runs.

Each command is a coroutine over one ``httpx.AsyncClient`` run by ``asyncio.run``. Expected
failures (an API's refusal, an unreachable URL, a TLS failure, a user saying no) are
printed on stderr with exit code 1; usage errors are click's (exit 2). Never a traceback
for those.
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
from cli.output import report_error

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar=None, help="Base URL of Hoist's APIs [env HOIST_CLI_URL].")
@click.option("--token", help="Bearer token [env HOIST_CLI_TOKEN].")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from a file.")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="YAML config [env HOIST_CLI_CONFIG; default ~/.config/hoist/config.yaml].",
)
@click.option("--ca-file", type=click.Path(dir_okay=False), help="CA bundle the APIs' TLS uses.")
@click.option(
    "--insecure-skip-verify", is_flag=True, help="Do not verify the APIs' TLS certificates."
)
@click.option("-v", "--verbose", is_flag=True, help="More detail (per disk in status).")
@output_option
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    token_file: str | None,
    config: str | None,
    ca_file: str | None,
    insecure_skip_verify: bool,
    verbose: bool,
) -> None:
    """Migrate oVirt and OpenStack VMs into KubeVirt with Hoist."""
    st = ctx.ensure_object(State)
    st.flags = Flags(url, token, token_file, config, ca_file, insecure_skip_verify)
    st.verbose = verbose


def _register() -> None:
    # Imported here: the command modules import this one for ``run`` and ``state``.
    from cli import maps, plans, providers, watching

    cli.add_command(providers.providers)
    cli.add_command(maps.maps)
    cli.add_command(plans.plans)
    cli.add_command(watching.watch)


_register()


def main() -> None:
    cli(prog_name="hoist")
