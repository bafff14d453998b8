"""``hoist``: the root command and its global options.

Each command is a coroutine over one ``httpx.AsyncClient`` run by ``asyncio.run``
(``cli.runner``). Expected failures are printed on stderr with exit code 1; usage errors
are click's (exit 2). Never a traceback for those.
"""

from __future__ import annotations

import click

from cli import hooks, maps, plans, providers, watching
from cli.config import Flags
from cli.runner import State, output_option


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


cli.add_command(providers.providers)
cli.add_command(maps.maps)
cli.add_command(hooks.hooks)
cli.add_command(plans.plans)
cli.add_command(watching.watch)


def main() -> None:
    cli(prog_name="hoist")
