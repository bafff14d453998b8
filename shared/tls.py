"""Certificates of the servers Hoist talks to: fingerprints, probing, and trust options.

Users confirm a source's certificate by its fingerprint (the SHA-256 and SHA-1 the oVirt
and Forklift dialogs show) and then either pin it or hand over a CA bundle. The same three
choices travel in the provider's Secret under Forklift's keys, so every consumer (the
inventory's collectors, the populator pods) reads them alike:

- ``cacert``: PEM bundle to verify the chain with (plus the host name);
- ``fingerprint``: SHA-256 (or SHA-1) of the server's leaf certificate, ``AB:CD:...``;
  checked on every connection and replacing chain verification when no ``cacert`` is given;
- ``insecureSkipVerify``: ``true`` skips both; only ever set explicitly by a user.

How those keys read (which words are true, which fingerprints are accepted) is
``shared.populator.trust``'s, the one reading every process shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.populator.trust import (
    INSECURE_SKIP_VERIFY,
    fingerprint_algorithm,
    normalize_fingerprint,
    parse_flag,
    pin_mismatch,
)

__all__ = [
    "CertificateInfo",
    "TrustOptions",
    "colon_hex",
    "fetch_certificate",
    "normalize_fingerprint",
    "sha1_fingerprint",
    "sha256_fingerprint",
]


def colon_hex(digest: bytes) -> str:
    text = digest.hex().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def sha256_fingerprint(der: bytes) -> str:
    return colon_hex(hashlib.sha256(der).digest())


def sha1_fingerprint(der: bytes) -> str:
    return colon_hex(hashlib.sha1(der, usedforsecurity=False).digest())


@dataclass(frozen=True)
class CertificateInfo:
    """What a user needs to decide whether to trust a server (nothing secret)."""

    sha256: str
    sha1: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    self_signed: bool
    pem: str

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        # Imported here: the populators use this module's fingerprints at start-up, where
        # importing cryptography would cost tens of milliseconds of every pod's CPU.
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = x509.load_der_x509_certificate(der)
        dns: tuple[str, ...] = ()
        ips: tuple[str, ...] = ()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            pass
        return cls(
            sha256=sha256_fingerprint(der),
            sha1=sha1_fingerprint(der),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            dns_names=dns,
            ip_addresses=ips,
            self_signed=cert.subject == cert.issuer,
            pem=cert.public_bytes(Encoding.PEM).decode(),
        )

    @property
    def expired(self) -> bool:
        return datetime.now(UTC) > self.not_after

    def as_dict(self) -> dict[str, object]:
        return {
            "sha256Fingerprint": self.sha256,
            "sha1Fingerprint": self.sha1,
            "subject": self.subject,
            "issuer": self.issuer,
            "notBefore": self.not_before.isoformat(),
            "notAfter": self.not_after.isoformat(),
            "dnsNames": list(self.dns_names),
            "ipAddresses": list(self.ip_addresses),
            "selfSigned": self.self_signed,
            "pem": self.pem,
        }


async def fetch_certificate(host: str, port: int, timeout: float) -> CertificateInfo:
    """The leaf certificate ``host:port`` presents, without trusting it (for display and
    pin checks). Raises ``OSError`` / ``TimeoutError`` / ``ssl.SSLError`` as the network does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host or None),
        timeout,
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not der:
            raise ssl.SSLError("the server presented no certificate")
        return CertificateInfo.from_der(der)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 2)


@dataclass(frozen=True)
class TrustOptions:
    """How to verify one server, read from a provider Secret's keys."""

    ca_pem: str | None = None
    fingerprint: str | None = None
    insecure: bool = False

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> TrustOptions:
        """ValueError on a bad fingerprint, ``FlagError`` (a ValueError naming the key) on
        an ``insecureSkipVerify`` that is neither true nor false."""
        raw = (data.get("fingerprint") or "").strip()
        return cls(
            ca_pem=(data.get("cacert") or "").strip() or None,
            fingerprint=normalize_fingerprint(raw) if raw else None,
            insecure=parse_flag(data.get(INSECURE_SKIP_VERIFY)),
        )

    def describe(self) -> str:
        if self.fingerprint:
            return f"pinned {fingerprint_algorithm(self.fingerprint)} {self.fingerprint}"
        if self.insecure:
            return "not verified (insecureSkipVerify)"
        return "CA bundle from the Secret" if self.ca_pem else "system CA store"

    def context(self) -> ssl.SSLContext:
        """An SSL context that verifies per these options. With a pin and no CA bundle the
        chain is not verified here: the caller checks the pin with ``check_pin``."""
        context = (
            ssl.create_default_context(cadata=self.ca_pem)
            if self.ca_pem
            else (ssl.create_default_context())
        )
        if (self.insecure or self.fingerprint) and not self.ca_pem:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def check_pin(self, der: bytes) -> str | None:
        """None if ``der`` is acceptable under the pin (or there is none), else why not."""
        if self.fingerprint is None:
            return None
        got = pin_mismatch(self.fingerprint, der)
        if got is None:
            return None
        return (
            f"the server presented a certificate with {got}, not the "
            f"pinned {self.fingerprint}: it changed (renewed, or someone in between); "
            "confirm the new fingerprint and update the provider"
        )
