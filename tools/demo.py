"""``make demo``: bring up NATS, PostgreSQL and the four services, and show their health.

NATS and PostgreSQL are private servers started for the run (``shared.devservices``) unless
``HOIST_NATS_URL`` / ``HOIST_DATABASE_URL`` are set. Each service runs as its own process,
exactly as in a pod. The demo exits non-zero when any service fails to become ready;
``--keep`` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from shared.devservices import DevServices, dev_services, free_port

SERVICES = ("inventory", "planner", "orchestrator", "progress")


class Service:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        self.env = {**env, "HOIST_HTTP_PORT": str(self.port)}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{self.name}", env=self.env, stdout=out, stderr=out
            )

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


async def wait_ready(client: httpx.AsyncClient, svc: Service, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    last: dict[str, Any] = {"status": "no answer"}
    while time.monotonic() < deadline:
        if svc.proc is not None and svc.proc.returncode is not None:
            return {"status": f"exited with {svc.proc.returncode}"}
        with contextlib.suppress(httpx.TransportError):
            r = await client.get(f"{svc.url}/readyz")
            last = r.json()
            if r.status_code == 200:
                return last
        await asyncio.sleep(0.2)
    return last


async def run(keep: bool, timeout: float) -> int:
    token = os.environ.get("HOIST_AUTH_TOKENS", "").split(",")[0] or secrets.token_urlsafe(24)
    log_dir = Path(".hoist-dev/logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    async with dev_services() as ds:
        print(f"NATS        {ds.nats_url}{'' if ds.nats else '  (from HOIST_NATS_URL)'}")
        print(
            f"PostgreSQL  {_redact(ds.database_url)}"
            f"{'' if ds.postgres else '  (from HOIST_DATABASE_URL)'}"
        )
        services = [Service(n, _env(ds, token), log_dir) for n in SERVICES]
        try:
            await asyncio.gather(*(s.start() for s in services))
            async with httpx.AsyncClient(timeout=5) as client:
                ready = await asyncio.gather(*(wait_ready(client, s, timeout) for s in services))
                print()
                print(f"{'service':<13}{'url':<25}{'ready':<7}{'checks':<40}subscriptions")
                healthy = True
                for svc, state in zip(services, ready, strict=True):
                    ok = state.get("status") == "ready"
                    healthy &= ok
                    checks = state.get("checks") or {"status": state.get("status")}
                    subs = await _subscriptions(client, svc, token) if ok else "-"
                    line = " ".join(f"{k}={v}" for k, v in checks.items())
                    print(f"{svc.name:<13}{svc.url:<25}{'yes' if ok else 'NO':<7}{line:<40}{subs}")
            print()
            if not healthy:
                print(f"some services are not ready; their logs are in {log_dir}/")
                return 1
            print("all four services are healthy.")
            if keep:
                print(f"API token: {token}\nlogs: {log_dir}/\nCtrl-C stops everything.")
                await _until_interrupted()
            return 0
        finally:
            codes = await asyncio.gather(*(s.stop() for s in services))
            print(
                "stopped:", ", ".join(f"{s.name}={c}" for s, c in zip(services, codes, strict=True))
            )


def _env(ds: DevServices, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOIST_NATS_URL": ds.nats_url,
        "HOIST_DATABASE_URL": ds.database_url,
        "HOIST_AUTH_TOKENS": token,
    }


async def _subscriptions(client: httpx.AsyncClient, svc: Service, token: str) -> str:
    r = await client.get(
        f"{svc.url}/api/v1/{svc.name}/status", headers={"Authorization": f"Bearer {token}"}
    )
    subs = r.json().get("subscriptions", []) if r.status_code == 200 else []
    return ", ".join(s["name"] for s in subs) or "(publishes only)"


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to become ready")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.keep, args.timeout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
