"""Where the APIs are and how to reach them: flags, then environment, then a YAML file.

One base URL serves every API behind the Helm chart's Ingress; ``make demo`` runs each
service on its own port, so each service's URL may override the base. Nothing here is
resolved before a command runs, so ``--help`` works without any configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from shared.populator.trust import FlagError, parse_flag

DEFAULT_CONFIG = Path("~/.config/hoist/config.yaml")
SERVICES = ("inventory", "planner", "orchestrator", "progress")
FILE_KEYS = {
    "url",
    "token",
    "inventoryUrl",
    "plannerUrl",
    "orchestratorUrl",
    "progressUrl",
    "caFile",
    "insecureSkipVerify",
}


@dataclass(frozen=True)
class Flags:
    """The global options as given on the command line (None: not given)."""

    url: str | None = None
    token: str | None = None
    token_file: str | None = None
    config: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Settings:
    urls: dict[str, str]
    token: str | None
    verify: str | bool  # a CA file, True (system store) or False (explicitly insecure)

    def url(self, service: str) -> str:
        url = self.urls.get(service)
        if not url:
            env = f"HOIST_CLI_{service.upper()}_URL"
            raise click.UsageError(
                f"no URL for the {service} API: give --url, HOIST_CLI_URL or {env}, "
                f"or `url` / `{service}Url` in the config file"
            )
        return url


def _read_file(flags: Flags) -> dict[str, Any]:
    given = flags.config or os.environ.get("HOIST_CLI_CONFIG")
    path = Path(given).expanduser() if given else DEFAULT_CONFIG.expanduser()
    if not path.exists():
        if given:
            raise click.UsageError(f"config file {path} does not exist")
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.UsageError(f"cannot read config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"config file {path}: expected a mapping of keys")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise click.UsageError(
            f"config file {path}: unknown keys {unknown}; known: {sorted(FILE_KEYS)}"
        )
    return data


def _token(flags: Flags, file: dict[str, Any]) -> str | None:
    if flags.token:
        return flags.token
    if flags.token_file:
        try:
            return Path(flags.token_file).expanduser().read_text().strip() or None
        except OSError as exc:
            raise click.UsageError(f"cannot read --token-file: {exc.strerror}") from None
    env = os.environ.get("HOIST_CLI_TOKEN")
    if env:
        return env
    value = file.get("token")
    return str(value) if value else None


def resolve(flags: Flags) -> Settings:
    """Flag > environment > file, key by key."""
    file = _read_file(flags)
    base = flags.url or os.environ.get("HOIST_CLI_URL") or file.get("url") or ""
    urls: dict[str, str] = {}
    for service in SERVICES:
        own = os.environ.get(f"HOIST_CLI_{service.upper()}_URL") or file.get(f"{service}Url")
        # A --url flag is the most specific thing the user said for this command.
        chosen = flags.url or own or base
        if chosen:
            urls[service] = str(chosen).rstrip("/")
    ca_file = flags.ca_file or os.environ.get("HOIST_CLI_CA_FILE") or file.get("caFile")
    try:
        insecure = flags.insecure_skip_verify or parse_flag(file.get("insecureSkipVerify"))
    except FlagError as exc:
        raise click.UsageError(f"the config file's {exc}") from None
    if ca_file and insecure:
        raise click.UsageError("--ca-file and --insecure-skip-verify exclude each other")
    verify: str | bool = True
    if ca_file:
        path = Path(str(ca_file)).expanduser()
        if not path.is_file():
            raise click.UsageError(f"CA file {path} does not exist")
        verify = str(path)
    elif insecure:
        verify = False
    return Settings(urls, _token(flags, file), verify)
