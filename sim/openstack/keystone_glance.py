"""Real Keystone (v3) and real Glance (v2) from PyPI, on free ports, over TLS, on SQLite.

Why real ones: the token dance, the service catalog, Glance's image states, checksums
(``os_hash_value``), ``Range`` downloads and error bodies are what the populator must get
right, and a fake would only agree with our own reading of them. They run under gunicorn from
``.venv-openstack`` (made by ``make setup`` from ``sim/openstack/requirements.txt``), because
they pin libraries Hoist's own venv must not share.

Traps handled here (see docs/openstack.md): oslo.config parses ``sys.argv`` (``wsgi_entry``
resets it); gunicorn needs ``--no-control-socket`` to run several masters side by side; the
keystonemiddleware token cache is off so a revoked token fails at once, as the token-expiry
fault needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pwd
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.devservices import _launch, _Proc, _stop, free_port
from sim.certs import ServerCert, client_context, issue

REPO = Path(__file__).resolve().parents[2]
REGION = "RegionOne"
ADMIN_USER = "admin"
SERVICE_PROJECT = "service"


def openstack_venv() -> Path:
    """``HOIST_OPENSTACK_VENV``, else ``.venv-openstack`` at the repository root."""
    venv = Path(os.environ.get("HOIST_OPENSTACK_VENV", REPO / ".venv-openstack"))
    if not (venv / "bin" / "keystone-manage").is_file():
        raise RuntimeError(
            f"Keystone/Glance venv not found at {venv}: run `make setup` (it installs "
            "sim/openstack/requirements.txt there) or set HOIST_OPENSTACK_VENV"
        )
    return venv


@dataclass
class KeystoneGlance:
    """Where the two real services answer, and the admin credentials to use them."""

    keystone_url: str  # https://127.0.0.1:<port>/v3 is below it
    glance_url: str
    admin_password: str
    ca_file: Path
    workdir: Path
    procs: list[_Proc] = field(default_factory=list, repr=False)

    @property
    def auth_url(self) -> str:
        return f"{self.keystone_url}/v3"

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=client_context(self.ca_file), timeout=30, **kw)

    async def admin_token(self) -> tuple[str, str]:
        """A project-scoped admin token and the admin project's id."""
        return await password_token(
            self.auth_url, ADMIN_USER, self.admin_password, ADMIN_USER, ca_file=self.ca_file
        )


async def password_token(
    auth_url: str, user: str, password: str, project: str, *, ca_file: Path
) -> tuple[str, str]:
    """Authenticate with a password; returns (token, project id)."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": "default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }
    }
    async with httpx.AsyncClient(verify=client_context(ca_file), timeout=30) as c:
        r = await c.post(f"{auth_url}/auth/tokens", json=body)
        r.raise_for_status()
        return r.headers["X-Subject-Token"], r.json()["token"]["project"]["id"]


def _keystone_conf(base: Path) -> str:
    return f"""[DEFAULT]
log_file = {base / "keystone-app.log"}
[database]
connection = sqlite:///{base / "keystone.db"}?timeout=60
[token]
provider = fernet
expiration = 7200
caching = false
cache_on_issue = false
[fernet_tokens]
key_repository = {base / "fernet-keys"}
[fernet_receipts]
key_repository = {base / "fernet-keys"}
[credential]
key_repository = {base / "credential-keys"}
[cache]
# Catalog, assignments and the like are cached per worker (as a real deployment does with
# memcached); tokens and revocations are not, so a revoked token fails at once everywhere.
enabled = true
backend = dogpile.cache.memory
[revoke]
caching = false
"""


def _glance_conf(
    base: Path, venv: Path, auth_url: str, password: str, ca: Path, hashing: str
) -> str:
    return f"""[DEFAULT]
log_file = {base / "glance-app.log"}
hashing_algorithm = {hashing}
enabled_backends = fs:file
show_image_direct_url = false
show_multiple_locations = false
image_size_cap = 1099511627776
[database]
connection = sqlite:///{base / "glance.db"}?timeout=60
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {base / "images"}
[os_glance_staging_store]
filesystem_store_datadir = {base / "staging"}
[os_glance_tasks_store]
filesystem_store_datadir = {base / "tasks"}
[paste_deploy]
flavor = keystone
config_file = {venv / "etc" / "glance" / "glance-api-paste.ini"}
[keystone_authtoken]
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = {SERVICE_PROJECT}
username = glance
password = {password}
cafile = {ca}
token_cache_time = -1
[oslo_policy]
enforce_new_defaults = false
enforce_scope = false
"""


async def _run(argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """A one-shot admin command (``keystone-manage``...), its output appended to ``log``."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=out, env={**os.environ, **(env or {})}
        )
        try:
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed with exit code {code}:\n{tail}")


async def _answers(url: str, ca: Path) -> bool:
    try:
        async with httpx.AsyncClient(verify=client_context(ca), timeout=2) as c:
            return (await c.get(url)).status_code < 500
    except httpx.HTTPError:
        return False


def _gunicorn(
    venv: Path, app: str, port: int, certs: ServerCert, env: dict[str, str], log: Path
) -> _Proc:
    """gunicorn with threads (long streams must not hit the worker timeout) and TLS."""
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), str(venv / "bin" / "gunicorn")]
    argv += ["--no-control-socket", "--pythonpath", str(Path(__file__).parent)]
    argv += ["-b", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread", "--threads", "4"]
    # Idle connections are kept longer than httpx's 5 s keepalive_expiry: the client, never
    # the server, closes them, so a request is never sent on a socket closing under it (a
    # ReadError the simulator's image proxy would pass on as a 500).
    argv += ["--timeout", "900", "--graceful-timeout", "5", "--keep-alive", "30"]
    argv += ["--certfile", str(certs.cert_file), "--keyfile", str(certs.key_file)]
    argv += [f"wsgi_entry:{app}()"]
    ready = functools.partial(_answers, f"https://127.0.0.1:{port}/", certs.ca_file)
    # SIGINT is gunicorn's quick shutdown (SIGTERM waits for in-flight requests).
    return _Proc(app, argv, log, signal.SIGINT, ready)


async def _keystone_setup(venv: Path, base: Path, url: str, password: str) -> Path:
    conf = base / "keystone.conf"
    conf.write_text(_keystone_conf(base))
    manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf)]
    log = base / "keystone-manage.log"
    user = pwd.getpwuid(os.getuid())
    group_args = ["--keystone-user", user.pw_name, "--keystone-group", str(user.pw_gid)]
    await _run([*manage, "db_sync"], log)
    await _run([*manage, "fernet_setup", *group_args], log)
    await _run([*manage, "credential_setup", *group_args], log)
    boot = ["bootstrap", "--bootstrap-password", password, "--bootstrap-username", ADMIN_USER]
    boot += ["--bootstrap-project-name", ADMIN_USER, "--bootstrap-role-name", "admin"]
    boot += ["--bootstrap-region-id", REGION, "--bootstrap-service-name", "keystone"]
    for iface in ("admin", "internal", "public"):
        boot += [f"--bootstrap-{iface}-url", url]
    await _run([*manage, *boot], log)
    return conf


async def _glance_setup(venv: Path, base: Path, conf_text: str) -> None:
    for d in ("images", "staging", "tasks"):
        (base / d).mkdir(exist_ok=True)
    (base / "glance-api.conf").write_text(conf_text)
    manage = [str(venv / "bin" / "glance-manage"), "--config-dir", str(base)]
    await _run([*manage, "db_sync"], base / "glance-manage.log")


async def _admin_api(kg: KeystoneGlance) -> tuple[httpx.AsyncClient, str]:
    token, project_id = await kg.admin_token()
    client = kg.client(base_url=kg.auth_url, headers={"X-Auth-Token": token})
    return client, project_id


async def create_user(
    kg: KeystoneGlance, name: str, password: str, project: str, role: str = "member"
) -> str:
    """A user with ``role`` on ``project`` (created if missing); returns the project id."""
    client, _ = await _admin_api(kg)
    async with client:
        r = await client.get("/projects", params={"name": project})
        found = r.raise_for_status().json()["projects"]
        if found:
            project_id = found[0]["id"]
        else:
            r = await client.post("/projects", json={"project": {"name": project}})
            project_id = r.raise_for_status().json()["project"]["id"]
        body = {"user": {"name": name, "password": password, "default_project_id": project_id}}
        user_id = (await client.post("/users", json=body)).raise_for_status().json()["user"]["id"]
        roles = (await client.get("/roles", params={"name": role})).raise_for_status().json()
        if roles["roles"]:
            role_id = roles["roles"][0]["id"]
        else:
            r = await client.post("/roles", json={"role": {"name": role}})
            role_id = r.raise_for_status().json()["role"]["id"]
        path = f"/projects/{project_id}/users/{user_id}/roles/{role_id}"
        (await client.put(path)).raise_for_status()
    return str(project_id)


async def register_service(kg: KeystoneGlance, kind: str, name: str, url: str) -> None:
    """Put a service and its public/internal/admin endpoints into Keystone's catalog."""
    client, _ = await _admin_api(kg)
    async with client:
        r = await client.post("/services", json={"service": {"type": kind, "name": name}})
        service_id = r.raise_for_status().json()["service"]["id"]
        for iface in ("public", "internal", "admin"):
            ep = {"service_id": service_id, "interface": iface, "url": url, "region_id": REGION}
            (await client.post("/endpoints", json={"endpoint": ep})).raise_for_status()


@contextlib.asynccontextmanager
async def keystone_glance(
    workdir: Path, certs: ServerCert, *, image_url: str | None = None, hashing: str = "sha512"
) -> AsyncIterator[KeystoneGlance]:
    """Set up and run Keystone, then Glance; stop both on exit.

    ``image_url`` is what the catalog names as the image service (default: Glance itself; the
    simulator passes its fault-injecting proxy). ``hashing`` is Glance's
    ``hashing_algorithm`` (the ``os_hash_algo`` of new images).
    """
    venv = openstack_venv()
    base = workdir / "openstack"
    # Apart: glance-manage --config-dir reads every *.conf in its directory.
    kbase, gbase = base / "keystone", base / "glance"
    kbase.mkdir(parents=True, exist_ok=True)
    gbase.mkdir(parents=True, exist_ok=True)
    kport, gport = free_port(), free_port()
    kurl, gurl = f"https://127.0.0.1:{kport}", f"https://127.0.0.1:{gport}"
    admin_pw, glance_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    kg = KeystoneGlance(kurl, gurl, admin_pw, certs.ca_file, base)
    glance_conf = _glance_conf(gbase, venv, f"{kurl}/v3", glance_pw, certs.ca_file, hashing)
    try:
        kconf, _ = await asyncio.gather(
            _keystone_setup(venv, kbase, kurl, admin_pw), _glance_setup(venv, gbase, glance_conf)
        )
        keystone = _gunicorn(
            venv,
            "keystone",
            kport,
            certs,
            {"OS_KEYSTONE_CONFIG_FILES": str(kconf)},
            kbase / "keystone.log",
        )
        kg.procs.append(keystone)
        await _launch(keystone)
        await create_user(kg, "glance", glance_pw, SERVICE_PROJECT, role="admin")
        await register_service(kg, "image", "glance", image_url or gurl)
        glance = _gunicorn(
            venv, "glance", gport, certs, {"OS_GLANCE_CONFIG_DIR": str(gbase)}, gbase / "glance.log"
        )
        kg.procs.append(glance)
        await _launch(glance)
        yield kg
    finally:
        for proc in reversed(kg.procs):
            await _stop(proc)


if __name__ == "__main__":  # a smoke run: python -m sim.openstack.keystone_glance DIR
    import tempfile

    async def _smoke(d: Path) -> None:
        async with keystone_glance(d, issue(d / "tls")) as kg:
            print(kg, await kg.admin_token())

    asyncio.run(_smoke(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())))
