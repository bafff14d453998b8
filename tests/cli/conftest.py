"""The ``hoist`` CLI as a subprocess (``python -m cli`` from this checkout) against the real
inventory and planner processes of the planner tests: the small simulated oVirt engine
(ten VMs, one with a locked disk), the simulated cluster, real NATS and PostgreSQL.

Each test module gets its own set (module-scoped fixtures, as in tests/planner).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.inventory.conftest import inventory, kube
from tests.planner.conftest import engine, kube_sim, planner, providers
from tools.processes import ServiceProcess

__all__ = ["engine", "inventory", "kube", "kube_sim", "planner", "providers"]

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD = 120.0  # seconds; a CLI call that takes longer is stuck, not slow


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no user config (HOME elsewhere), no inherited HOIST_CLI_*, and a
    wide terminal so tables are not wrapped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOIST_CLI_")}
    env.update({"HOME": str(home), "COLUMNS": "250", "PYTHONUNBUFFERED": "1", **extra})
    return env


async def run_cli(
    args: Sequence[str], env: dict[str, str], stdin: str | None = None, guard: float = HANG_GUARD
) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate((stdin or "").encode()), timeout=guard)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class Hoist:
    """``hoist`` pointed at this module's services, one URL per service as ``make demo``
    runs them."""

    def __init__(self, inventory: ServiceProcess, planner: ServiceProcess, home: Path) -> None:
        self.env = cli_env(
            home,
            HOIST_CLI_INVENTORY_URL=inventory.url,
            HOIST_CLI_PLANNER_URL=planner.url,
            HOIST_CLI_TOKEN=TOKEN,
        )

    async def __call__(self, *args: str, stdin: str | None = None) -> Result:
        return await run_cli(args, self.env, stdin)

    async def ok(self, *args: str, stdin: str | None = None) -> Result:
        r = await self(*args, stdin=stdin)
        assert r.code == 0, r
        return r


@pytest.fixture(scope="module")
def hoist(
    inventory: ServiceProcess, planner: ServiceProcess, tmp_path_factory: pytest.TempPathFactory
) -> Hoist:
    return Hoist(inventory, planner, tmp_path_factory.mktemp("home"))
