"""Run a Hoist service as a real process (``python -m services.<name>``), as a pod would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from shared.devservices import free_port
from tests.conftest import TOKEN, eventually


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.env = {
            **os.environ,
            "HOIST_HTTP_PORT": str(self.port),
            "HOIST_AUTH_TOKENS": TOKEN,
            "HOIST_LOG_FORMAT": "json",
            "HOIST_HTTP_SHUTDOWN_GRACE_SECONDS": "5",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10)

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{self.name}", env=self.env, stdout=log, stderr=log
        )
        log.close()
        await eventually(self._answers, what=f"{self.name} /healthz", within=30)

    async def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.logs()}")
        try:
            return (await self.client.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def readyz(self) -> dict[str, object]:
        r = await self.client.get("/readyz")
        body: dict[str, object] = r.json()
        body["http_status"] = r.status_code
        return body

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    async def terminate(self) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc and self.proc.returncode is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.logs()}") from None
        finally:
            await self.client.aclose()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
