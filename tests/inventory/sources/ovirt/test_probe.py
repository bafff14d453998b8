"""Connection tests: every reason the simulated engine can produce, and the definition check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.inventory.sources.contract import ConnectionProblem, Reason
from services.inventory.sources.ovirt import OvirtSource
from shared.devservices import free_port
from sim.ovirt import scenario
from sim.ovirt.engine import Engine
from tests.inventory.sources.ovirt.conftest import make_source


async def problem(
    source: OvirtSource, step: Callable[[], Awaitable[object]] | None = None
) -> ConnectionProblem:
    try:
        with pytest.raises(ConnectionProblem) as caught:
            await (step or source.probe)()
    finally:
        await source.close()
    return caught.value


async def test_probe_with_the_ca_bundle(engine: Engine) -> None:
    source = make_source(engine)
    try:
        facts = await source.probe()
        assert (facts["product"], facts["version"]) == ("oVirt Engine", "4.5.7")
        assert facts["apiVersion"] == {"major": 4, "minor": 5}  # what warm plans check
        assert facts["tls"] == "CA bundle from the Secret"
        assert facts["certificate"]["sha256Fingerprint"] == engine.cert.fingerprint
    finally:
        await source.close()
    assert engine.logins == engine.logouts  # the SSO session was ended


async def test_wrong_password(engine: Engine) -> None:
    found = await problem(make_source(engine, password="wrong"))
    assert found.reason == Reason.AUTH_REFUSED
    assert found.field == "credentials"
    assert "access_denied" in found.message


async def test_untrusted_certificate_is_attached(engine: Engine) -> None:
    found = await problem(make_source(engine, cacert=""))
    assert found.reason == Reason.TLS_UNTRUSTED
    assert found.certificate is not None
    assert found.certificate.sha256 == engine.cert.fingerprint
    assert engine.cert.fingerprint in found.message


async def test_pinned_fingerprint_is_accepted_and_used(engine: Engine) -> None:
    """With a pin and no CA, ovirtsdk4 trusts exactly the pinned certificate (and works)."""
    source = make_source(engine, cacert="", fingerprint=engine.cert.fingerprint.lower())
    try:
        facts = await source.probe()
        assert facts["tls"].startswith("pinned SHA-256")
        batch = await source.load()
        assert len([i for i in batch.items if i.kind == "vm"]) == len(engine.inv.vms)
    finally:
        await source.close()


async def test_other_fingerprint_is_a_changed_certificate(engine: Engine) -> None:
    found = await problem(make_source(engine, cacert="", fingerprint="AB" * 32))
    assert found.reason == Reason.TLS_CHANGED
    assert found.certificate is not None
    assert found.certificate.sha256 == engine.cert.fingerprint


async def test_insecure_only_when_explicit(engine: Engine) -> None:
    source = make_source(engine, cacert="", insecureSkipVerify="true")
    try:
        facts = await source.probe()
        assert facts["tls"] == "not verified (insecureSkipVerify)"
    finally:
        await source.close()
    found = await problem(make_source(engine, cacert="", insecureSkipVerify="false"))
    assert found.reason == Reason.TLS_UNTRUSTED


async def test_closed_port(engine: Engine) -> None:
    for scheme in ("https", "http"):
        url = f"{scheme}://127.0.0.1:{free_port()}/ovirt-engine/api"
        found = await problem(make_source(engine, url=url))
        assert found.reason == Reason.HOST_UNREACHABLE, (scheme, found.message)
        assert found.field == "url"


async def test_not_the_engine_api(engine: Engine) -> None:
    wrong_path = make_source(engine, url=f"{engine.url}/ovirt-engine/apix")
    assert (await problem(wrong_path)).reason == Reason.NOT_AN_API
    collection = make_source(engine, url=f"{engine.api_url}/vms")
    assert (await problem(collection)).reason == Reason.NOT_AN_API
    assert engine.proxy is not None  # another HTTPS server with the same CA
    other = make_source(engine, url=f"https://127.0.0.1:{engine.proxy.port}/ovirt-engine/api")
    assert (await problem(other)).reason == Reason.NOT_AN_API


async def test_an_engine_down_for_maintenance_is_temporary(engine: Engine) -> None:
    """Apache's 503 page is not "not an engine API": the provider is kept and retried."""
    engine.add_fault(scenario.Fault("maintenance", seconds=120))
    try:
        found = await problem(make_source(engine))
    finally:
        engine.maintenance.end()
    assert (found.reason, found.permanent) == (Reason.SERVER_ERROR, False)
    assert "503" in found.message


async def test_old_engine_is_unsupported(engine: Engine) -> None:
    engine.version = "3.6.13"
    try:
        found = await problem(make_source(engine))
    finally:
        engine.version = "4.5.7"
    assert found.reason == Reason.API_UNSUPPORTED
    assert "3.6.13" in found.message


async def test_rotated_certificate_fails_loudly(tmp_path: Path) -> None:
    """A certificate changed after the connection test: the next refresh says so."""
    inv, _ = scenario.from_dict({"vms": [{"name": "a"}]})
    async with Engine(inv, [], tmp_path) as engine:
        pinned = make_source(engine, cacert="", fingerprint=engine.cert.fingerprint)
        with_ca = make_source(engine)
        for source in (pinned, with_ca):
            await source.probe()
            await source.load()
        await engine.rotate_certificate()
        found = await problem(pinned, pinned.refresh)
        assert found.reason == Reason.TLS_CHANGED
        assert found.certificate is not None
        assert found.certificate.sha256 != engine.cert.fingerprint
        found = await problem(with_ca, with_ca.refresh)
        assert found.reason == Reason.TLS_UNTRUSTED
        assert found.certificate is not None


def test_check_definition() -> None:
    good = {"user": "admin@internal", "password": "x"}
    assert OvirtSource.check_definition("https://engine.example/ovirt-engine/api", good) == []
    assert OvirtSource.check_definition("http://e:8080/ovirt-engine/api/", good) == []
    problems = OvirtSource.check_definition(
        "https://engine.example/api", {"user": "admin", "fingerprint": "zz"}
    )
    assert [f for f, _ in problems] == [
        "url",
        "credentials.user",
        "credentials.password",
        "credentials.fingerprint",
    ]
    assert "/ovirt-engine/api" in problems[0][1]
    assert OvirtSource.check_definition("ftp://e/ovirt-engine/api", good)[0][0] == "url"
    assert OvirtSource.check_definition("https:///ovirt-engine/api", good)[0][0] == "url"
    assert OvirtSource.check_definition("https://e:99999/ovirt-engine/api", good)[0][0] == "url"
    assert OvirtSource.check_definition(
        "https://e/ovirt-engine/api", {**good, "insecureSkipVerify": "maybe"}
    ) == [
        (
            "credentials.insecureSkipVerify",
            "'maybe' is not true or false (use true/false, 1/0, yes/no or on/off)",
        )
    ]
