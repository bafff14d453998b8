"""shared.populator.trust: how ``insecureSkipVerify`` and a pinned ``fingerprint`` read, and
that a SHA-1 pin (what oVirt engines' dialogs show) is honoured where shared code checks
pins: the probe's ``check_tls``, the kube client's aiohttp pin, the OpenStack SDK's
requests adapter."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import requests

from shared.kube import KubeConfigProblem, _Pin, remote_cluster
from shared.populator import FlagError, normalize_fingerprint, parse_flag, pin_mismatch
from shared.sources.openstack_connect import http_session
from shared.sources.problems import ConnectionProblem, Reason, check_tls
from shared.tls import TrustOptions
from sim.certs import ServerCert, make_self_signed_cert

WRONG_SHA1 = ":".join(["AB"] * 20)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True), ("TRUE", True), (" True ", True), ("1", True), ("yes", True),
        ("Yes", True), ("on", True), ("ON", True), (True, True), (1, True),
        ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False),
        ("off", False), ("", False), ("  ", False), (None, False), (False, False), (0, False),
    ],
)  # fmt: skip
def test_a_flag_reads_one_way(value: object, expected: bool) -> None:
    assert parse_flag(value) is expected


@pytest.mark.parametrize("value", ["maybe", "y", "t", "enabled", "2", "truee", 2, 1.0, []])
def test_anything_else_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flag(value, "insecureSkipVerify")
    assert caught.value.field == "insecureSkipVerify"
    assert repr(value) in caught.value.reason
    assert str(caught.value).startswith("`insecureSkipVerify`: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ab" * 32, ":".join(["AB"] * 32)),
        (":".join(["ab"] * 32), ":".join(["AB"] * 32)),
        ("-".join(["Ab"] * 20), ":".join(["AB"] * 20)),
        ("AB" * 20, ":".join(["AB"] * 20)),
    ],
)
def test_sha256_and_sha1_fingerprints_normalize(text: str, expected: str) -> None:
    assert normalize_fingerprint(text) == expected


@pytest.mark.parametrize("text", ["ab:cd", "ab" * 31, "ab" * 21, "zz" * 32, "ab" * 16, ""])
def test_other_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 or SHA-1 fingerprint"):
        normalize_fingerprint(text)


def test_the_shared_trust_options_read_the_flag_alike() -> None:
    assert TrustOptions.from_secret({"insecureSkipVerify": "yes"}).insecure
    assert not TrustOptions.from_secret({"insecureSkipVerify": "off"}).insecure
    with pytest.raises(FlagError, match=r"insecureSkipVerify.*'maybe'"):
        TrustOptions.from_secret({"insecureSkipVerify": "maybe"})


def test_a_kubeconfig_flag_reads_alike() -> None:
    def kubeconfig(flag: str) -> str:
        return (
            "apiVersion: v1\nclusters:\n- name: c\n  cluster:\n    server: https://k:6443\n"
            f"    insecure-skip-tls-verify: {flag}\ncontexts:\n- name: x\n  context:\n"
            "    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n"
            "    token: t\n"
        )

    assert remote_cluster("", {"kubeconfig": kubeconfig('"yes"')}).insecure
    assert not remote_cluster("", {"kubeconfig": kubeconfig('"false"')}).insecure
    with pytest.raises(KubeConfigProblem, match=r"insecure-skip-tls-verify.*'maybe'"):
        remote_cluster("", {"kubeconfig": kubeconfig("maybe")})


# --- SHA-1 pins against a real self-signed certificate ------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_self_signed_cert(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def https(self_signed: ServerCert) -> AsyncIterator[int]:
    """A one-answer HTTPS server presenting the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(self_signed.cert_file, self_signed.key_file)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()


def _der(cert: ServerCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_file.read_text())


def test_a_pin_is_compared_with_the_digest_of_its_length(self_signed: ServerCert) -> None:
    der = _der(self_signed)
    assert pin_mismatch(self_signed.fingerprint, der) is None
    assert pin_mismatch(self_signed.sha1_fingerprint, der) is None
    assert pin_mismatch(WRONG_SHA1, der) == f"SHA-1 fingerprint {self_signed.sha1_fingerprint}"


async def test_check_tls_accepts_a_sha1_pin(https: int, self_signed: ServerCert) -> None:
    url = f"https://127.0.0.1:{https}"
    bare = self_signed.sha1_fingerprint.replace(":", "").lower()
    pinned = TrustOptions.from_secret({"fingerprint": bare})
    assert pinned.describe() == f"pinned SHA-1 {self_signed.sha1_fingerprint}"
    cert = await check_tls(url, pinned, 5)
    assert cert is not None
    assert cert.sha1 == self_signed.sha1_fingerprint
    with pytest.raises(ConnectionProblem) as refused:
        await check_tls(url, TrustOptions.from_secret({"fingerprint": WRONG_SHA1}), 5)
    assert refused.value.reason is Reason.TLS_CHANGED
    assert f"SHA-1 fingerprint {self_signed.sha1_fingerprint}" in refused.value.message


async def test_the_kube_client_pin_accepts_sha1(https: int, self_signed: ServerCert) -> None:
    async def get(pin: _Pin) -> str:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pin)) as session,
            session.get(f"https://127.0.0.1:{https}/") as response,
        ):
            return await response.text()

    assert await get(_Pin(self_signed.sha1_fingerprint)) == "ok"
    assert await get(_Pin(self_signed.fingerprint)) == "ok"
    with pytest.raises(aiohttp.ServerFingerprintMismatch):
        await get(_Pin(WRONG_SHA1))


async def test_the_openstack_adapter_accepts_sha1(https: int, self_signed: ServerCert) -> None:
    def get(pin: str) -> str:
        session, verify, _ = http_session(TrustOptions.from_secret({"fingerprint": pin}))
        with session:
            return session.get(f"https://127.0.0.1:{https}/", verify=verify, timeout=5).text

    assert await asyncio.to_thread(get, self_signed.sha1_fingerprint) == "ok"
    with pytest.raises(requests.exceptions.SSLError, match=r"[Ff]ingerprint"):
        await asyncio.to_thread(get, WRONG_SHA1)
