"""The CLI's config file reads ``insecureSkipVerify`` as every other Hoist process does."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from cli.config import Flags, resolve


def _settings(tmp_path: Path, value: str) -> bool | str:
    config = tmp_path / "config.yaml"
    config.write_text(f"url: https://hoist.example\ninsecureSkipVerify: {value}\n")
    return resolve(Flags(config=str(config))).verify


@pytest.mark.parametrize(
    ("value", "verify"),
    [('"yes"', False), ("yes", False), ('"1"', False), ("true", False), ('"on"', False),
     ('"no"', True), ("false", True), ('""', True)],
)  # fmt: skip
def test_the_config_file_flag_reads_alike(tmp_path: Path, value: str, verify: bool) -> None:
    assert _settings(tmp_path, value) is verify


def test_the_config_file_flag_refuses_maybe(tmp_path: Path) -> None:
    with pytest.raises(click.UsageError, match=r"`insecureSkipVerify`: 'maybe' is not true"):
        _settings(tmp_path, "maybe")
