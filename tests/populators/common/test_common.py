"""services/populators/common on its own: HTTP framing (Content-Length, chunked, until
close, plain and TLS), the volume writer's O_DIRECT fallback and unaligned tails, argument
and credential parsing, and the progress rendering."""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.populators.common import args as common
from services.populators.common.http import HttpConnection
from services.populators.common.metrics import Progress
from services.populators.common.tls import TlsError, TlsPolicy
from services.populators.common.volume import ALIGN, VolumeWriter, aligned_buffer
from sim.certs import ServerCert, make_server_cert

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

BODY = bytes(range(256)) * 300


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One fixed answer per path, on a keep-alive connection."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        path = head.split(b" ")[1]
        if path == b"/length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
        elif path == b"/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(BODY), 7000):
                part = BODY[i : i + 7000]
                writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
            writer.write(b"0\r\n\r\n")
        elif path == b"/close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY)
            await writer.drain()
            break
        await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_server_cert(tmp_path_factory.mktemp("pki"))


async def serve(handler: Handler, cert: ServerCert | None) -> asyncio.Server:
    ctx = None
    if cert is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert.cert_file, cert.key_file)
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)


@pytest.fixture(params=["tls", "plain"])
async def server(
    request: pytest.FixtureRequest, cert: ServerCert
) -> AsyncIterator[tuple[int, TlsPolicy | None]]:
    tls = request.param == "tls"
    srv = await serve(answer, cert if tls else None)
    policy = TlsPolicy(common.Credentials("u", "p", cert.ca_pem, None, False)) if tls else None
    yield srv.sockets[0].getsockname()[1], policy
    srv.close()


def fetch_all(port: int, policy: TlsPolicy | None) -> list[bytes]:
    conn = HttpConnection("127.0.0.1", port, policy, timeout=10)
    got = []
    for path in ("/length", "/chunked", "/length", "/close", "/length"):
        response = conn.request("GET", path)
        assert response.status == 200
        got.append(conn.read())
    view = memoryview(bytearray(len(BODY)))
    conn.request("GET", "/length")
    conn.readinto_exactly(view)
    got.append(bytes(view))
    conn.close()
    return got


async def test_http_framings_on_one_connection(server: tuple[int, TlsPolicy | None]) -> None:
    port, policy = server
    assert await asyncio.to_thread(fetch_all, port, policy) == [BODY] * 6


def fetch_pipelined(port: int, policy: TlsPolicy | None) -> list[bytes]:
    """Requests sent before the answers to the earlier ones are read come back in order."""
    conn = HttpConnection("127.0.0.1", port, policy, timeout=10)
    got = []
    for path in ("/length", "/chunked", "/length"):
        conn.send_request("GET", path)
    for _ in range(3):
        assert conn.read_response().status == 200
        got.append(conn.read())
    with pytest.raises(OSError, match="no request is waiting"):
        conn.read_response()
    conn.close()
    return got


async def test_pipelined_requests(server: tuple[int, TlsPolicy | None]) -> None:
    port, policy = server
    assert await asyncio.to_thread(fetch_pipelined, port, policy) == [BODY] * 3


async def test_pinned_fingerprint_is_checked(cert: ServerCert, tmp_path: Path) -> None:
    srv = await serve(answer, cert)
    port = srv.sockets[0].getsockname()[1]
    good = TlsPolicy(common.Credentials("u", "p", None, cert.fingerprint, False))
    bad = TlsPolicy(common.Credentials("u", "p", None, ":".join(["00"] * 32), False))
    other_ca = make_server_cert(tmp_path, tag="-other").ca_pem
    untrusted = TlsPolicy(common.Credentials("u", "p", other_ca, None, False))

    def get(policy: TlsPolicy) -> int:
        conn = HttpConnection("127.0.0.1", port, policy, timeout=10)
        try:
            status = conn.request("GET", "/length").status
            conn.read()
            return status
        finally:
            conn.close()

    try:
        assert await asyncio.to_thread(get, good) == 200
        with pytest.raises(TlsError, match="not the pinned"):
            await asyncio.to_thread(get, bad)
        with pytest.raises(TlsError, match="failed TLS verification"):
            await asyncio.to_thread(get, untrusted)
    finally:
        srv.close()


def write_pattern(volume: VolumeWriter, size: int) -> bytes:
    """Aligned and unaligned writes from several threads; returns what the volume holds."""
    expected = bytearray(size)
    buf = aligned_buffer(3 * ALIGN + 100)
    view = memoryview(buf)
    pieces = [(0, 2 * ALIGN), (5 * ALIGN, 3 * ALIGN + 100), (9 * ALIGN + 7, 1000)]
    for i, (offset, length) in enumerate(pieces):
        view[:length] = bytes([i + 1]) * length
        expected[offset : offset + length] = view[:length]
        volume.write(view[:length], offset)
    threads = [
        threading.Thread(target=volume.write, args=(memoryview(b"\x09" * ALIGN), off))
        for off in (12 * ALIGN, 13 * ALIGN)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected[12 * ALIGN : 14 * ALIGN] = b"\x09" * (2 * ALIGN)
    volume.finish()
    return bytes(expected)


@pytest.mark.parametrize("o_direct", ["accepted", "refused"])
def test_volume_writer_direct_and_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, o_direct: str
) -> None:
    if o_direct == "refused":  # as tmpfs before Linux 6.6 and some FUSE filesystems
        real_open = os.open

        def refuse_direct(path: Any, flags: int, *args: Any) -> int:
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "O_DIRECT refused")
            return real_open(path, flags, *args)

        monkeypatch.setattr(os, "open", refuse_direct)
    size = 16 * ALIGN
    with VolumeWriter.open(tmp_path, size) as volume:
        assert volume.mode == "filesystem"
        assert volume.direct == (o_direct == "accepted")
        expected = write_pattern(volume, size)
    assert (tmp_path / "disk.img").read_bytes() == expected


def test_block_zeroing_on_a_file_standing_for_a_device(tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.write_bytes(b"\xff" * (64 * ALIGN))
    with VolumeWriter.open(device, 32 * ALIGN) as volume:
        assert volume.mode == "block"
        volume.zero(4 * ALIGN, 8 * ALIGN)
        volume.finish()
    data = device.read_bytes()
    assert data[4 * ALIGN : 12 * ALIGN] == bytes(8 * ALIGN)
    assert data[: 4 * ALIGN] == b"\xff" * (4 * ALIGN)


def test_credentials_from_env() -> None:
    fp = ":".join(["ab"] * 32)
    creds = common.Credentials.from_env(
        {"user": "u", "password": "p", "fingerprint": fp, "insecureSkipVerify": "false"}
    )
    assert creds.fingerprint == fp.upper()
    assert not creds.insecure
    assert "p" not in creds.describe().split()
    with pytest.raises(common.UsageError, match="not a SHA-256 or SHA-1 fingerprint"):
        common.Credentials.from_env({"user": "u", "password": "p", "fingerprint": "ab:cd"})
    with pytest.raises(common.UsageError, match="no credentials"):
        common.Credentials.from_env({"user": "u"})


def test_forklift_arguments_parse() -> None:
    p = common.parser("test")
    ns = p.parse_args(
        ["--volume-path=/mnt", "--secret-name=s", "--cr-name=c", "--cr-namespace=n",
         "--owner-uid=uid", "--pvc-size=10Gi"]
    )  # fmt: skip
    assert ns.pvc_size == 10 << 30
    assert ns.metrics_port == common.METRICS_PORT
    assert common.quantity("1073741824") == 1 << 30


def test_progress_never_says_done_before_done() -> None:
    progress = Progress("ovirt_progress", "uid-1")
    progress.set_total(1000)
    progress.add(1000)
    assert progress.percent == 99
    progress.done()
    text = progress.render()
    assert 'ovirt_progress{ownerUID="uid-1"} 100\n' in text
    assert 'hoist_populator_bytes_transferred{ownerUID="uid-1"} 1000\n' in text


async def test_metrics_certificate_is_a_valid_self_signed_p256(tmp_path: Path) -> None:
    """The hand-made certificate (no `cryptography` at run time) parses, verifies with its
    own key, matches the private key, and serves a TLS handshake."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from services.populators.common.metrics import MetricsServer
    from services.populators.common.selfsigned import self_signed

    for _ in range(5):  # several keys: DER lengths vary with the integers' leading bits
        cert_pem, key_pem = self_signed()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, ec.SECP256R1)
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key().public_numbers() == public.public_numbers()
        assert cert.subject == cert.issuer
        assert cert.not_valid_before_utc < cert.not_valid_after_utc
        assert cert.serial_number > 0

    server = await MetricsServer.start(Progress("m", "uid"), 0, "127.0.0.1")
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
        # Two requests on one connection (kept open, framed by length), then a last one
        # asking to close, after which the server does.
        for _ in range(2):
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"Connection: keep-alive" in head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert b'm{ownerUID="uid"} 0' in await reader.readexactly(length)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in answer
    finally:
        await server.stop()


def test_fingerprint_matches_the_shared_form() -> None:
    """The populators compute pins without importing ``shared.tls`` (its ``cryptography``
    import costs every pod start ~70 ms of CPU); the text must be the same all the same."""
    from services.populators.common.tls import fingerprint_of
    from shared.tls import sha256_fingerprint

    der = os.urandom(700)
    assert fingerprint_of(der) == sha256_fingerprint(der)


def test_all_zero_compares_in_place() -> None:
    from services.populators.common.volume import all_zero, buffer_address

    buf = aligned_buffer(1 << 20)
    address = buffer_address(buf)
    assert all_zero(buf, address, 0, len(buf))
    assert all_zero(buf, address, 9, 9)  # empty
    buf[70000] = 1
    assert not all_zero(buf, address, 0, len(buf))
    assert all_zero(buf, address, 0, 70000)
    assert not all_zero(buf, address, 70000, 70001)
    assert all_zero(buf, address, 70001, len(buf))
    buf[len(buf) - 1] = 7  # a difference in the very last byte counts
    assert not all_zero(buf, address, 70001, len(buf))
    buf.close()  # no export left behind by buffer_address


def test_readers_follow_range_sizes() -> None:
    from services.populators.ovirt.copy import readers_for
    from services.populators.ovirt.source import Extent

    mib = 1 << 20
    large = [Extent(0, 512 * mib, False), Extent(512 * mib, 512 * mib, True)]
    scattered = [Extent(i * 4 * mib, mib, i % 2 == 1) for i in range(64)]
    assert readers_for(large, 8) == 4
    assert readers_for(large, 1) == 1  # never more than imageio allows
    assert readers_for(scattered, 8) == 1
    assert readers_for([Extent(0, mib, True)], 8) == 1  # nothing to read


@pytest.mark.parametrize(("value", "insecure"), [("yes", True), ("On", True), ("no", False)])
def test_both_populators_read_the_flag_as_everywhere(value: str, insecure: bool) -> None:
    from services.populators.openstack.identity import OpenStackCredentials

    ovirt = common.Credentials.from_env({"user": "u", "password": "p", "insecureSkipVerify": value})
    openstack = OpenStackCredentials.from_env(
        {"token": "t", "projectID": "x", "insecureSkipVerify": value}
    )
    assert ovirt.insecure is insecure
    assert openstack.insecure is insecure


def test_both_populators_refuse_maybe() -> None:
    from services.populators.openstack.identity import OpenStackCredentials

    message = r"`insecureSkipVerify`: 'maybe' is not true or false"
    with pytest.raises(common.UsageError, match=message):
        common.Credentials.from_env({"user": "u", "password": "p", "insecureSkipVerify": "maybe"})
    with pytest.raises(common.UsageError, match=message):
        OpenStackCredentials.from_env({"token": "t", "insecureSkipVerify": "maybe"})


async def test_a_sha1_pin_of_a_self_signed_certificate(tmp_path: Path) -> None:
    """An oVirt engine's self-signed certificate pinned by the SHA-1 its dialog shows
    (bare lower-case hex here): accepted; a wrong SHA-1 is refused."""
    from sim.certs import make_self_signed_cert

    self_signed = make_self_signed_cert(tmp_path)
    srv = await serve(answer, self_signed)
    port = srv.sockets[0].getsockname()[1]
    sha1 = self_signed.sha1_fingerprint.replace(":", "").lower()
    env = {"user": "u", "password": "p"}
    good = TlsPolicy(common.Credentials.from_env({**env, "fingerprint": sha1}))
    bad = TlsPolicy(common.Credentials.from_env({**env, "fingerprint": "ab" * 20}))

    def get(policy: TlsPolicy) -> int:
        conn = HttpConnection("127.0.0.1", port, policy, timeout=10)
        try:
            status = conn.request("GET", "/length").status
            conn.read()
            return status
        finally:
            conn.close()

    try:
        assert await asyncio.to_thread(get, good) == 200
        with pytest.raises(TlsError, match=f"SHA-1 fingerprint {self_signed.sha1_fingerprint}"):
            await asyncio.to_thread(get, bad)
    finally:
        srv.close()
