"""An openstacksdk connection from a provider Secret: TLS as the Secret says, Keystone v3
discovery, authentication, the catalog check, and every failure mapped to a ``Reason``.

Everything here blocks (keystoneauth and requests): callers run each function through
their ``Calls`` (``shared.sources.blocking``), never on the event loop.

TLS, per ``TrustOptions``:

- ``cacert``: written to a private file, given to requests as its only CA bundle
  (``verify=<file>``), so the public CAs are not trusted besides it;
- ``fingerprint`` (pin): ``check_tls`` verified the pin before; then every connection
  requests opens (Keystone, Nova, Glance, ... wherever the catalog points) must present
  exactly that certificate: urllib3's ``assert_fingerprint`` compares the SHA-256 of the
  peer's leaf after the handshake, which proved the server holds that certificate's key.
  Chain, host name and validity dates are not checked (the pin replaces them, as the user
  confirmed this certificate); with ``cacert`` as well, the chain is verified too.
  A catalog endpoint on a host with another certificate fails with a fingerprint mismatch:
  pin a CA bundle for such clouds instead;
- ``insecureSkipVerify``: no verification at all, only when the user set it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

import requests
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from requests.adapters import HTTPAdapter

from shared.openstack_auth import APP_CREDENTIAL, PASSWORD, OpenStackCredentials
from shared.sources.problems import ConnectionProblem, Reason
from shared.tls import TrustOptions

# The catalog types a migration needs, and the names each may go by.
NEEDED_SERVICES: dict[str, tuple[str, ...]] = {
    "compute": ("compute",),
    "volume": ("block-storage", "volumev3"),
    "image": ("image",),
    "network": ("network",),
}
COMPUTE_MICROVERSION = "2.60"  # embedded flavor details (2.47+), tags; widely deployed


class PinnedAdapter(HTTPAdapter):
    """Accepts only the server certificate whose SHA-256 (or SHA-1: urllib3 picks the digest
    by the pin's length) is pinned (see the module doc)."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint.replace(":", "").lower()
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self.fingerprint
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Connected:
    """An authenticated session and the facts learned on the way."""

    session: ks_session.Session
    auth_url: str
    facts: dict[str, Any] = field(default_factory=dict)
    _cafile: str | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.session.close()
        if self._cafile:
            with contextlib.suppress(OSError):
                os.unlink(self._cafile)
            self._cafile = None


def keystone_v3_url(url: str) -> str:
    """The Keystone v3 URL a user's URL names (``.../v3`` appended when absent)."""
    base = url.rstrip("/")
    return base if re.search(r"/v3(\.\d+)?$", base) else f"{base}/v3"


def http_session(trust: TrustOptions) -> tuple[requests.Session, bool | str, str | None]:
    """A requests session, keystoneauth's ``verify`` and the CA file to delete later."""
    http = requests.Session()
    cafile = None
    verify: bool | str = True
    if trust.ca_pem:
        fd, cafile = tempfile.mkstemp(prefix="hoist-openstack-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(trust.ca_pem + "\n")
        verify = cafile
    if trust.fingerprint:
        http.mount("https://", PinnedAdapter(trust.fingerprint))
        verify = cafile or False  # the pin replaces the chain unless a CA bundle is given
    elif trust.insecure:
        verify = False
    return http, verify, cafile


def auth_plugin(creds: OpenStackCredentials, auth_url: str) -> Any:
    args = creds.keystoneauth_args(auth_url)
    if creds.method == APP_CREDENTIAL:
        return v3.ApplicationCredential(**args)
    if creds.method == PASSWORD:
        return v3.Password(**args)
    return v3.Token(**args)


def discover(http: requests.Session, verify: bool | str, url: str, timeout: float) -> str:
    """Keystone's v3 URL, after reading its version document (unauthenticated).

    Tells a Keystone without v3 (``API_UNSUPPORTED``) from something that is no Keystone
    at all (``NOT_AN_API``), which keystoneauth reports alike.
    """
    v3_url = keystone_v3_url(url)
    doc = _get_json(http, verify, v3_url, timeout)
    version = (doc or {}).get("version") if isinstance(doc, dict) else None
    if isinstance(version, dict) and _is_identity(version) and _major(version) == 3:
        return v3_url
    root = v3_url.rsplit("/", 1)[0]
    doc = _get_json(http, verify, root, timeout) if root != v3_url else None
    versions = _versions(doc)
    if any(_is_identity(v) for v in versions):
        for v in versions:
            if _major(v) == 3:  # served elsewhere than <url>/v3: where the document says
                links = [lk.get("href") for lk in v.get("links") or [] if lk.get("rel") == "self"]
                return str(links[0]).rstrip("/") if links and links[0] else root + "/v3"
        found = ", ".join(str(v.get("id")) for v in versions)
        raise ConnectionProblem(
            Reason.API_UNSUPPORTED,
            f"Keystone at {root} offers identity API {found}, not v3: Hoist needs Keystone v3",
        )
    raise ConnectionProblem(
        Reason.NOT_AN_API,
        f"{url} is not a Keystone identity endpoint (no identity v3 version document at "
        f"{v3_url}): give the cloud's auth URL, as in its openrc's OS_AUTH_URL",
    )


def _get_json(http: requests.Session, verify: bool | str, url: str, timeout: float) -> Any:
    try:
        r = http.get(url, verify=verify, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise problem_of(exc, url) from None
    if r.status_code >= 500:
        raise ConnectionProblem(
            Reason.SERVER_ERROR, f"{url} answered HTTP {r.status_code}; retrying later"
        )
    try:
        return r.json()
    except ValueError:
        return None


def _versions(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    versions = doc.get("versions")
    if isinstance(versions, dict):  # Keystone wraps them: {"versions": {"values": [...]}}
        versions = versions.get("values")
    return [v for v in versions or [] if isinstance(v, dict)]


def _is_identity(version: dict[str, Any]) -> bool:
    return any("identity" in str(m.get("type", "")) for m in version.get("media-types") or [])


def _major(version: dict[str, Any]) -> int | None:
    ident = str(version.get("id", "")).lstrip("v").split(".")[0]
    return int(ident) if ident.isdigit() else None


def connect(
    url: str,
    secret: dict[str, str],
    trust: TrustOptions,
    timeout: float,
    call_timeout: float,
    app_name: str = "hoist",
) -> Connected:
    """Discover, authenticate and check the catalog: an authenticated session or a
    ``ConnectionProblem``. ``app_name`` names the caller in the User-Agent."""
    creds = OpenStackCredentials.from_secret(secret)
    http, verify, cafile = http_session(trust)
    try:
        auth_url = discover(http, verify, url, timeout)
        sess = ks_session.Session(
            auth=auth_plugin(creds, auth_url),
            session=http,
            verify=verify,
            timeout=call_timeout,
            app_name=app_name,
        )
        conn = Connected(sess, auth_url, _cafile=cafile)
        try:
            access = sess.auth.get_access(sess)  # type: ignore[union-attr]
        except Exception as exc:
            raise problem_of(exc, auth_url) from None
        conn.facts = catalog_facts(access, creds)
        conn.facts["authUrl"] = auth_url
        conn.facts["tls"] = trust.describe() if auth_url.startswith("https") else "plain http"
        return conn
    except BaseException:
        http.close()
        if cafile:
            with contextlib.suppress(OSError):
                os.unlink(cafile)
        raise


def catalog_facts(access: Any, creds: OpenStackCredentials) -> dict[str, Any]:
    """Regions, project and the public endpoints of the services a migration needs;
    ``API_UNSUPPORTED`` when one is missing (in the chosen region)."""
    catalog = access.service_catalog.get_endpoints(interface="public")
    regions = sorted(
        {ep.get("region_id") or ep.get("region") for eps in catalog.values() for ep in eps} - {None}
    )
    if creds.region and creds.region not in regions:
        raise ConnectionProblem(
            Reason.API_UNSUPPORTED,
            f"the catalog has no region {creds.region!r} (it has {', '.join(regions) or 'none'}):"
            " fix `regionName` in the provider's Secret",
        )
    endpoints: dict[str, str] = {}
    missing = []
    for need, types in NEEDED_SERVICES.items():
        urls = [
            ep["url"]
            for t in types
            for ep in catalog.get(t, [])
            if not creds.region or creds.region in (ep.get("region_id"), ep.get("region"))
        ]
        if urls:
            endpoints[need] = urls[0]
        else:
            missing.append(f"{need} ({' or '.join(types)})")
    if missing:
        where = f" in region {creds.region}" if creds.region else ""
        raise ConnectionProblem(
            Reason.API_UNSUPPORTED,
            f"the cloud's catalog has no public endpoint{where} for {', '.join(missing)}: "
            "Hoist cannot read or copy VMs without them",
        )
    return {
        "keystone": "v3",
        "project": {"id": access.project_id, "name": access.project_name,
                    "domain": access.project_domain_name},
        "user": {"id": access.user_id, "name": access.username},
        "roles": sorted(access.role_names or []),
        "region": creds.region or (regions[0] if regions else ""),
        "regions": regions,
        "endpoints": endpoints,
    }  # fmt: skip


def problem_of(exc: BaseException, where: str) -> ConnectionProblem:
    """What a keystoneauth / requests / openstacksdk failure means for the provider."""
    if isinstance(exc, ConnectionProblem):
        return exc
    status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
    if isinstance(exc, ks_exc.SSLError | requests.exceptions.SSLError):
        return ConnectionProblem(
            Reason.TLS_UNTRUSTED,
            f"TLS with {where} failed ({_short(exc)}): check the provider's certificate "
            "settings (cacert, fingerprint)",
        )
    if isinstance(exc, ks_exc.ConnectTimeout | requests.exceptions.Timeout):
        return ConnectionProblem(Reason.TIMEOUT, f"{where} did not answer in time; retrying")
    if isinstance(exc, ks_exc.ConnectionError | requests.exceptions.ConnectionError):
        return ConnectionProblem(
            Reason.HOST_UNREACHABLE, f"cannot reach {where} ({_short(exc)}); retrying"
        )
    if status == 401:
        return ConnectionProblem(
            Reason.AUTH_REFUSED,
            f"Keystone refused the credentials ({_short(exc)}): fix the provider's Secret",
        )
    if status == 403:
        return ConnectionProblem(
            Reason.PERMISSION_DENIED,
            f"{where} denied the request ({_short(exc)}): the user needs a role that can "
            "read servers, volumes, images and networks in the project",
        )
    if isinstance(exc, ks_exc.EndpointNotFound):
        return ConnectionProblem(Reason.API_UNSUPPORTED, f"{_short(exc)}: check the catalog")
    if isinstance(exc, ks_exc.DiscoveryFailure) or status == 404:
        return ConnectionProblem(
            Reason.NOT_AN_API, f"{where} does not answer as an OpenStack API ({_short(exc)})"
        )
    return ConnectionProblem(Reason.SERVER_ERROR, f"{where} failed ({_short(exc)}); retrying later")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"
