"""Connection tests of the OpenStack source: facts when all is well, and every reason a real
cloud (or a wrong URL) gives, from the simulated cloud's real Keystone and TLS."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from services.inventory.sources.contract import Blocking, ConnectionProblem, Reason
from services.inventory.sources.openstack import OpenStackSource
from shared.devservices import free_port
from shared.tls import fetch_certificate
from sim.openstack.cloud import Cloud
from tests.inventory.sources.openstack.conftest import make_source


async def reason_of(source: OpenStackSource) -> ConnectionProblem:
    try:
        with pytest.raises(ConnectionProblem) as info:
            await source.probe()
    finally:
        await source.close()
    return info.value


async def test_probe_reports_the_cloud(source: OpenStackSource, cloud: Cloud) -> None:
    facts = await source.probe()
    assert facts["keystone"] == "v3"
    assert facts["authUrl"] == cloud.auth_url
    assert facts["project"]["id"] == cloud.project_id
    assert facts["project"]["name"] == "demo"
    assert facts["regions"] == ["RegionOne"]
    assert facts["region"] == "RegionOne"
    assert set(facts["endpoints"]) == {"compute", "volume", "image", "network"}
    assert facts["endpoints"]["image"] == cloud.image_url
    assert facts["computeMicroversion"] == "2.60"
    assert facts["tls"] == "CA bundle from the Secret"
    assert facts["certificate"]["sha256Fingerprint"]


async def test_wrong_password_is_auth_refused(cloud: Cloud, blocking: Blocking) -> None:
    secret = {**cloud.credentials(), "password": "wrong"}
    problem = await reason_of(make_source(blocking, cloud.auth_url, secret))
    assert problem.reason is Reason.AUTH_REFUSED
    assert problem.permanent
    assert problem.field == "credentials"


async def test_unknown_certificate_is_untrusted(cloud: Cloud, blocking: Blocking) -> None:
    secret = {k: v for k, v in cloud.credentials().items() if k != "cacert"}
    problem = await reason_of(make_source(blocking, cloud.auth_url, secret))
    assert problem.reason is Reason.TLS_UNTRUSTED
    assert problem.certificate is not None  # for the user to confirm and pin


async def test_pinned_certificate(cloud: Cloud, blocking: Blocking) -> None:
    """A pin is the only trust: no CA bundle given, and every endpoint (Keystone, the
    simulator, the image proxy) presents the pinned certificate."""
    parts = urlsplit(cloud.auth_url)
    cert = await fetch_certificate(parts.hostname or "", parts.port or 443, 5)
    secret = {k: v for k, v in cloud.credentials().items() if k != "cacert"}
    pinned = make_source(blocking, cloud.auth_url, {**secret, "fingerprint": cert.sha256})
    try:
        facts = await pinned.probe()
        assert facts["tls"].startswith("pinned")
        assert (await pinned.load()).items
    finally:
        await pinned.close()
    other = "AA:" + cert.sha256[3:] if not cert.sha256.startswith("AA") else "BB:" + cert.sha256[3:]
    problem = await reason_of(
        make_source(blocking, cloud.auth_url, {**secret, "fingerprint": other})
    )
    assert problem.reason is Reason.TLS_CHANGED


async def test_insecure_only_when_asked(cloud: Cloud, blocking: Blocking) -> None:
    secret = {k: v for k, v in cloud.credentials().items() if k != "cacert"}
    s = make_source(blocking, cloud.auth_url, {**secret, "insecureSkipVerify": "true"})
    try:
        assert (await s.probe())["project"]["name"] == "demo"
    finally:
        await s.close()


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_closed_port_is_unreachable(cloud: Cloud, blocking: Blocking, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}/v3"
    problem = await reason_of(make_source(blocking, url, cloud.credentials()))
    assert problem.reason is Reason.HOST_UNREACHABLE
    assert not problem.permanent


@pytest.mark.parametrize("where", ["nova", "glance"])
async def test_not_keystone(cloud: Cloud, blocking: Blocking, where: str) -> None:
    url = cloud.sim_url + "/compute" if where == "nova" else cloud.glance_url
    problem = await reason_of(make_source(blocking, url, cloud.credentials()))
    assert problem.reason is Reason.NOT_AN_API
    assert "OS_AUTH_URL" in problem.message


async def test_unknown_region_is_unsupported(cloud: Cloud, blocking: Blocking) -> None:
    secret = {**cloud.credentials(), "regionName": "Elsewhere"}
    problem = await reason_of(make_source(blocking, cloud.auth_url, secret))
    assert problem.reason is Reason.API_UNSUPPORTED
    assert "RegionOne" in problem.message


async def test_forbidden_service_is_permission_denied(cloud: Cloud, blocking: Blocking) -> None:
    cloud.faults.update({"fail_next": {"compute": 1}, "fail_status": 403})
    problem = await reason_of(make_source(blocking, cloud.auth_url, cloud.credentials()))
    assert problem.reason is Reason.PERMISSION_DENIED


# A Keystone from before Queens serves only v2.0: its version document, as it answered.
V2_ONLY = {
    "versions": {
        "values": [
            {
                "id": "v2.0",
                "status": "deprecated",
                "updated": "2016-08-04T00:00:00Z",
                "links": [{"rel": "self", "href": "http://127.0.0.1/v2.0/"}],
                "media-types": [
                    {"base": "application/json",
                     "type": "application/vnd.openstack.identity-v2.0+json"}
                ],
            }
        ]
    }
}  # fmt: skip


@pytest.fixture
def old_keystone() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(V2_ONLY).encode()
            self.send_response(300 if self.path.rstrip("/") == "" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_keystone_without_v3(old_keystone: str, cloud: Cloud, blocking: Blocking) -> None:
    problem = await reason_of(make_source(blocking, old_keystone, cloud.credentials()))
    assert problem.reason is Reason.API_UNSUPPORTED
    assert "v2.0" in problem.message


# ---------------------------------------------------------------- definitions


def test_check_definition_accepts_each_method() -> None:
    url = "https://keystone.example:5000/v3"
    scope = {"projectName": "p", "domainName": "Default"}
    assert OpenStackSource.check_definition(url, {"username": "u", "password": "x", **scope}) == []
    assert (
        OpenStackSource.check_definition(url, {"userID": "1", "password": "x", "projectID": "9"})
        == []
    )
    app_cred = {"applicationCredentialID": "a", "applicationCredentialSecret": "s"}
    assert OpenStackSource.check_definition("http://keystone.example", app_cred) == []
    assert OpenStackSource.check_definition(url, {"token": "t", **scope}) == []


@pytest.mark.parametrize(
    ("url", "secret", "fields"),
    [
        ("ftp://x/v3", {"token": "t", "projectID": "1"}, ["url"]),
        ("https://x:5000/v2.0", {"token": "t", "projectID": "1"}, ["url"]),
        ("https://x/v3", {}, ["credentials"]),
        ("https://x/v3", {"username": "u", "projectName": "p"}, ["credentials.password"]),
        ("https://x/v3", {"username": "u", "password": "x"}, ["credentials.projectName"]),
        ("https://x/v3", {"applicationCredentialName": "a", "applicationCredentialSecret": "s"},
         ["credentials.username"]),
        ("https://x/v3", {"applicationCredentialID": "a"},
         ["credentials.applicationCredentialSecret"]),
        ("https://x/v3", {"username": "u", "password": "x", "token": "t", "projectID": "1"},
         ["credentials"]),
        ("https://x/v3", {"token": "t", "projectID": "1", "fingerprint": "nope",
                          "cacert": "not pem", "insecureSkipVerify": "maybe"},
         ["credentials.fingerprint", "credentials.cacert", "credentials.insecureSkipVerify"]),
    ],
)  # fmt: skip
def test_check_definition_reports_all_problems(
    url: str, secret: dict[str, str], fields: list[str]
) -> None:
    assert [f for f, _ in OpenStackSource.check_definition(url, secret)] == fields
