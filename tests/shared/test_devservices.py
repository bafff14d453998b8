"""Tests for shared.devservices against real nats-server and PostgreSQL processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import nats
import pytest

from shared import devservices as ds

ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _running(pid: int) -> bool:
    """Zombies count as gone: an orphan's reaper (PID 1 here) may not reap it."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _running_in_group(pgid: int) -> list[int]:
    """Live processes of a process group (a PostgreSQL server's postmaster and its backends)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [p for p in pids if (f := _stat(p)) and f[0] not in ("Z", "X") and int(f[2]) == pgid]


def _children(parent: int) -> list[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [p for p in pids if (f := _stat(p)) and f[0] not in ("Z", "X") and int(f[1]) == parent]


async def _wait_gone(pids: list[int], pgid: int | None = None) -> list[int]:
    """Poll for up to 10 s until none of ``pids`` (nor any of group ``pgid``) runs; return
    the ones still running then."""
    for _ in range(200):
        left = [p for p in pids if _running(p)] + (_running_in_group(pgid) if pgid else [])
        if not left:
            break
        await asyncio.sleep(0.05)
    return left


def _exists(path: Path) -> bool:
    return path.exists()


def _pids(services: ds.DevServices) -> list[int]:
    pids = [s.pid for s in (services.nats, services.postgres) if s is not None]
    assert None not in pids
    return [p for p in pids if p is not None]


def _temp_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(ds.TEMP_PREFIX)}


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp root of our own: other sessions on this machine may use hoist-dev-* dirs in /tmp
    too. Not pytest's tmp_path: user postgres could not get through its 0700 parent."""
    root = Path(tempfile.mkdtemp(prefix="hoist-test-"))
    root.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("TMPDIR", str(root))  # for the subprocesses
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOIST_NATS_URL", raising=False)
    monkeypatch.delenv("HOIST_DATABASE_URL", raising=False)


async def _jetstream_roundtrip(url: str, stream: str, publish: bool = True) -> int:
    """Publish one message (unless told not to) and pull-consume; return the stream's count."""
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
    try:
        js = nc.jetstream()
        if publish:
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            await js.publish(f"{stream}.one", b"hello")
        sub = await js.pull_subscribe(f"{stream}.>", durable="reader")
        msgs = await sub.fetch(1, timeout=5)
        assert [m.data for m in msgs] == [b"hello"]
        await msgs[0].ack()
        info = await js.stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


def test_free_port_is_bindable() -> None:
    port = ds.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_postgres_bindir() -> None:
    bindir = ds.find_postgres_bindir()
    assert (bindir / "initdb").is_file()
    assert (bindir / "postgres").is_file()


async def test_nats_start_use_stop() -> None:
    server = await ds.start_nats()
    pid = server.pid
    assert pid is not None
    try:
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert server.monitor_url == f"http://127.0.0.1:{server.monitor_port}"
        assert await _jetstream_roundtrip(server.url, "START") == 1
        assert any(server.store_dir.iterdir())
    finally:
        await ds.stop_nats(server)
    assert not _running(pid)
    assert server.pid is None
    assert not server.store_dir.parent.exists()  # start_nats made the dir, stop removes it


async def test_postgres_start_use_stop() -> None:
    server = await ds.start_postgres()
    pid = server.pid
    assert pid is not None
    try:
        assert server.url == f"postgresql+asyncpg://hoist@127.0.0.1:{server.port}/hoist"
        conn = await asyncpg.connect(server.url.replace("+asyncpg", ""))
        try:
            row = await conn.fetchrow(
                "SELECT current_user AS u, current_database() AS db, "
                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su"
            )
            assert (row["u"], row["db"], row["su"]) == ("hoist", "hoist", True)
        finally:
            await conn.close()
    finally:
        await ds.stop_postgres(server)
    assert not _running_in_group(pid)
    assert not server.data_dir.parent.exists()


async def test_restart_nats_keeps_stream(private_tmp: Path) -> None:
    server = await ds.start_nats(private_tmp / "nats")
    try:
        old_pid = server.pid
        assert await _jetstream_roundtrip(server.url, "KEEP") == 1
        nc = await nats.connect(server.url, allow_reconnect=False)
        await nc.jetstream().publish("KEEP.two", b"hello")
        await nc.close()
        assert await ds.restart_nats(server) is server
        assert server.pid not in (None, old_pid)
        nc = await nats.connect(server.url, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info("KEEP")
            assert info.state.messages == 2
        finally:
            await nc.close()
    finally:
        await ds.stop_nats(server)
    assert _exists(private_tmp / "nats")  # a workdir passed in is the caller's


@pytest.mark.parametrize("kill", [False, True])
async def test_restart_postgres_keeps_table(kill: bool) -> None:
    server = await ds.start_postgres()
    try:
        old_pid = server.pid
        assert old_pid is not None
        conn = await asyncpg.connect(server.dsn)
        # The server runs with synchronous_commit=off: a commit may still sit in the WAL
        # buffers of a SIGKILLed server. A test of crash recovery must ask for a flush.
        await conn.execute("SET synchronous_commit = on")
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
        assert await ds.restart_postgres(server, kill=kill) is server
        assert not _running_in_group(old_pid)
        assert server.pid not in (None, old_pid)
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()
    finally:
        await ds.stop_postgres(server)


async def test_dev_services_cleans_up(no_env: None) -> None:
    async with ds.dev_services() as services:
        assert services.nats is not None
        assert services.postgres is not None
        assert services.workdir is not None
        pids = _pids(services)
        assert await _jetstream_roundtrip(services.nats_url, "DEV") == 1
        conn = await asyncpg.connect(services.database_url.replace("+asyncpg", ""))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    assert not _exists(services.workdir)
    assert await _wait_gone(pids, pgid=pids[1]) == []


async def test_dev_services_cleans_up_on_cancel(no_env: None) -> None:
    started: asyncio.Future[ds.DevServices] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        async with ds.dev_services() as services:
            started.set_result(services)
            await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    services = await started
    assert services.nats is not None
    assert services.postgres is not None
    pids = _pids(services)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait_gone(pids, pgid=pids[1]) == []
    assert services.workdir is not None
    assert not _exists(services.workdir)


async def test_env_urls_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.delenv("HOIST_DATABASE_URL", raising=False)
    children = set(_children(os.getpid()))  # a session fixture's servers may be running
    async with ds.dev_services() as services:
        assert services.nats_url == "nats://127.0.0.1:1"
        assert services.nats is None
        assert services.postgres is not None
        new = set(_children(os.getpid())) - children
        assert [os.path.basename(os.readlink(f"/proc/{p}/exe")) for p in new] == ["postgres"]

    monkeypatch.setenv("HOIST_DATABASE_URL", "postgresql+asyncpg://x@127.0.0.1:1/x")
    before = _temp_dirs()
    async with ds.dev_services() as services:
        assert (services.nats, services.postgres, services.workdir) == (None, None, None)
        assert services.database_url == "postgresql+asyncpg://x@127.0.0.1:1/x"
        assert _temp_dirs() == before

    async with ds.dev_services(use_env=False) as services:  # env ignored: both started
        assert services.nats is not None
        assert services.postgres is not None


@pytest.mark.parametrize("kind", ["nats", "postgres"])
async def test_startup_error_shows_log_and_leaves_nothing(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(ds, "_free_ports", lambda n: [port] + [ds.free_port()] * (n - 1))
        monkeypatch.setattr(ds, "free_port", lambda: port)
        before, children = _temp_dirs(), set(_children(os.getpid()))
        start = ds.start_nats if kind == "nats" else ds.start_postgres
        with pytest.raises(RuntimeError, match=r"(?i)address already in use") as info:
            await start()
    assert "last lines of" in str(info.value)
    assert _temp_dirs() == before
    assert set(_children(os.getpid())) <= children


SCRIPT = """
import asyncio, json
from shared.devservices import start_nats, start_postgres

async def main():
    n = await start_nats()
    p = await start_postgres()
    dirs = [str(n.store_dir.parent), str(p.data_dir.parent)]
    print(json.dumps({"pids": [n.pid, p.pid], "dirs": dirs}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_servers_die_with_sigkilled_parent() -> None:
    script = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert script.stdout is not None
    started: dict[str, list[Any]] = {}
    try:
        async with asyncio.timeout(60):
            started = json.loads(await script.stdout.readline())
        nats_pid, pg_pid = started["pids"]
        assert _running(nats_pid)
        assert _running(pg_pid)
        script.kill()
        await script.wait()
        assert await _wait_gone([nats_pid, pg_pid], pgid=pg_pid) == []
        # Its directories outlive it, until the next start sweeps what dead owners left.
        left = [Path(d) for d in started["dirs"]]
        assert all(d.exists() for d in left)
        fresh = ds._make_tempdir()
        shutil.rmtree(fresh)
        assert not any(d.exists() for d in left)
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()
        for d in started.get("dirs", []):  # nobody was left to delete them
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_cli_prints_urls_and_cleans_up(
    sig: signal.Signals, private_tmp: Path, no_env: None
) -> None:
    env_file = private_tmp / "dev.env"
    before = _temp_dirs()
    argv = ["-m", "shared.devservices", "--env-file", str(env_file)]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert cli.stdout is not None
    try:
        async with asyncio.timeout(60):
            lines = [(await cli.stdout.readline()).decode().strip() for _ in range(2)]
        assert lines[0].startswith("HOIST_NATS_URL=nats://127.0.0.1:")
        assert lines[1].startswith("HOIST_DATABASE_URL=postgresql+asyncpg://hoist@127.0.0.1:")
        assert env_file.read_text().splitlines() == lines
        servers = _children(cli.pid)
        assert len(servers) == 2
        nats_url = lines[0].partition("=")[2]
        nc = await nats.connect(nats_url, allow_reconnect=False)
        await nc.close()
        cli.send_signal(sig)
        async with asyncio.timeout(60):
            assert await cli.wait() == 0
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
    assert await _wait_gone(servers) == []
    assert not env_file.exists()
    assert _temp_dirs() == before
