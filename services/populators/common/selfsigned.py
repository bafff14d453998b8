"""A fresh self-signed ECDSA P-256 certificate for the ``/metrics`` endpoint, made without
the ``cryptography`` package.

Why: importing ``cryptography`` (its Rust extension and x509 modules) cost ~70 ms of CPU
at every populator start, about 6% of the CPU the oVirt populator spends per GiB on a
scattered disk. The certificate needs one key generation and one signature: two scalar
multiplications on P-256 with Python integers (~10 ms) and a few lines of DER.

Scope: this key only ever serves the metrics endpoint, whose scrapers do not verify it
(as with Forklift's populators). The scalar multiplications are not constant-time; they
run once, in-process, before anything listens, so nothing remote can time them. The key
and the signature nonce come from ``secrets``. OpenSSL does every TLS operation with the
key afterwards.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets

# NIST P-256 (SEC 2, secp256r1): y^2 = x^3 - 3x + b over GF(p), base point G of order N.
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_Jacobian = tuple[int, int, int]  # (X, Y, Z): x = X/Z^2, y = Y/Z^3; Z == 0 is infinity


def _double(pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if z == 0 or y == 0:
        return (0, 1, 0)
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P  # a = -3
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    return (x3, y3, 2 * y * z % P)


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    h, r = (u2 - u1) % P, (s2 - s1) % P
    if h == 0:
        return _double(p1) if r == 0 else (0, 1, 0)
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    return (x3, y3, h * z1 * z2 % P)


def _multiply(k: int) -> tuple[int, int]:
    """k * G in affine coordinates (k in [1, N-1])."""
    acc: _Jacobian = (0, 1, 0)
    for bit in bin(k)[2:]:
        acc = _double(acc)
        if bit == "1":
            acc = _add(acc, (GX, GY, 1))
    x, y, z = acc
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


# ---- DER ------------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(x) for x in dotted.split("."))
    out = bytearray([40 * first + second])
    for v in rest:
        chunk = [v & 0x7F]
        while v := v >> 7:
            chunk.append(0x80 | (v & 0x7F))
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _time(t: datetime.datetime) -> bytes:
    if t.year < 2050:
        return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())  # UTCTime
    return _tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())  # GeneralizedTime


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    head, tail = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    return b"\n".join([head, *lines, tail]) + b"\n"


_EC_PUBLIC_KEY = _oid("1.2.840.10045.2.1")
_PRIME256V1 = _oid("1.2.840.10045.3.1.7")
_ECDSA_SHA256 = _seq(_oid("1.2.840.10045.4.3.2"))
_COMMON_NAME = _oid("2.5.4.3")


def self_signed(common_name: str = "hoist-populator", days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM, SEC 1) of a new P-256 key, valid from 5 minutes
    ago for ``days``, signed with ECDSA-SHA256 by itself."""
    d = secrets.randbelow(N - 1) + 1
    qx, qy = _multiply(d)
    point = b"\x04" + qx.to_bytes(32, "big") + qy.to_bytes(32, "big")
    name = _seq(_tlv(0x31, _seq(_COMMON_NAME, _tlv(0x0C, common_name.encode()))))
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    validity = _seq(
        _time(now - datetime.timedelta(minutes=5)), _time(now + datetime.timedelta(days=days))
    )
    tbs = _seq(
        _tlv(0xA0, _int(2)),  # v3
        _int(secrets.randbits(159) | 1),  # positive, at most 20 bytes
        _ECDSA_SHA256,
        name,
        validity,
        name,
        _seq(_seq(_EC_PUBLIC_KEY, _PRIME256V1), _tlv(0x03, b"\x00" + point)),
    )
    e = int.from_bytes(hashlib.sha256(tbs).digest(), "big")
    while True:
        k = secrets.randbelow(N - 1) + 1
        r = _multiply(k)[0] % N
        s = pow(k, -1, N) * (e + r * d) % N
        if r and s:
            break
    cert = _seq(tbs, _ECDSA_SHA256, _tlv(0x03, b"\x00" + _seq(_int(r), _int(s))))
    key = _seq(
        _int(1),
        _tlv(0x04, d.to_bytes(32, "big")),
        _tlv(0xA0, _PRIME256V1),
        _tlv(0xA1, _tlv(0x03, b"\x00" + point)),
    )
    return _pem("CERTIFICATE", cert), _pem("EC PRIVATE KEY", key)
