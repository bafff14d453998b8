"""Run a Hoist service as a real process (``python -m services.<name>``), as a pod would.

Used by ``make demo`` and by the tests, so both exercise the same entry point, settings from
the environment, and SIGTERM drain that a Kubernetes deployment relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from shared.devservices import free_port

SERVICES = ("inventory", "planner", "orchestrator", "progress")


class ServiceProcess:
    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, token: str | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.token = token or env.get("HOIST_AUTH_TOKENS", "").split(",")[0]
        self.env = {**os.environ, **env, "HOIST_HTTP_PORT": str(self.port)}
        if token:
            self.env["HOIST_AUTH_TOKENS"] = token
        self.proc: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10)

    @property
    def exited(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def start(self) -> None:
        """Launch; returns at once (``/healthz`` answers within a second or two)."""
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{self.name}", env=self.env, stdout=log, stderr=log
            )

    async def healthy(self) -> bool:
        """``/healthz`` answers; raises if the process died (no point waiting then)."""
        if self.exited is not None:
            raise RuntimeError(f"{self.name} exited with {self.exited}:\n{self.logs()[-4000:]}")
        with contextlib.suppress(httpx.TransportError):
            return (await self.client.get("/healthz")).status_code == 200
        return False

    async def ready(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return (await self.client.get("/readyz")).status_code == 200
        return False

    async def readyz(self) -> dict[str, Any]:
        """The readiness answer, with its HTTP status under ``http_status``."""
        try:
            r = await self.client.get("/readyz")
        except httpx.TransportError as exc:
            return {"status": f"no answer ({exc.__class__.__name__})", "http_status": None}
        body: dict[str, Any] = r.json()
        body["http_status"] = r.status_code
        return body

    async def wait_ready(self, within: float) -> dict[str, Any]:
        """Poll ``/readyz`` until 200 or ``within`` seconds; returns the last answer."""
        deadline = time.monotonic() + within
        last: dict[str, Any] = {"status": "no answer"}
        while time.monotonic() < deadline:
            if self.exited is not None:
                return {"status": f"exited with {self.exited}"}
            last = await self.readyz()
            if last.get("http_status") == 200:
                return last
            await asyncio.sleep(0.2)
        return last

    async def terminate(self, grace: float = 30) -> int | None:
        """SIGTERM, as Kubernetes sends it; SIGKILL after ``grace``. Returns the exit code."""
        try:
            if self.proc is None or self.proc.returncode is not None:
                return self.exited
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise RuntimeError(f"{self.name} ignored SIGTERM:\n{self.logs()[-4000:]}") from None
        finally:
            await self.client.aclose()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ControllerProcess:
    """``python -m services.controller`` (the populator controller) with the
    orchestrator's environment, its health port chosen free."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "HOIST_ORCHESTRATOR_CONTROLLER_PORT": str(self.port)}
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"controller-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 60) -> None:
        """Launch and wait until ``/readyz`` answers 200 (CRDs registered, watches up)."""
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.controller",
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the controller exited:\n{self.logs()[-4000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the controller was not ready within {within} s:\n{self.logs()[-4000:]}"
                    )
                await asyncio.sleep(0.2)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, grace: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode
