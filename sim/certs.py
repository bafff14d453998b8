"""Throwaway certificate authorities for the simulators that serve HTTPS.

Clients are meant to verify TLS by default (CA bundle or pinned fingerprint), so every
simulator (the cluster's API server, the oVirt engine and imageio, Keystone, Glance and the
OpenStack endpoints) serves a certificate signed by a CA generated for the run, and tests
hand the CA file (or the certificate's SHA-256 fingerprint) to the client exactly as a user
would. A second call with another `tag` makes an unrelated CA: the "certificate changed"
fault.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerCert:
    """Files of one CA and one server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the server certificate (DER), as ``AB:CD:...``: what clients pin."""
        return cert_fingerprint(self.cert_file.read_bytes())

    @property
    def sha1_fingerprint(self) -> str:
        """SHA-1 of the server certificate, ``AB:CD:...``: what older oVirt dialogs show."""
        return cert_fingerprint(self.cert_file.read_bytes(), "sha1")


def cert_fingerprint(pem: bytes, algorithm: str = "sha256") -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.new(algorithm, der, usedforsecurity=False).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hoist simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue(
    directory: Path,
    hosts: Sequence[str] = LOCAL_HOSTS,
    common_name: str = "hoist-sim",
    tag: str = "",
) -> ServerCert:
    """A fresh CA and a server certificate for `hosts` (names and IPs) signed by it.

    Files: `ca{tag}.pem`, `server{tag}.pem`, `server{tag}.key` (0600) in `directory`, so a
    second call with another tag keeps the first set for comparison.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{common_name} CA{tag} {now.timestamp():.0f}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = ServerCert(
        ca_file=directory / f"ca{tag}.pem",
        cert_file=directory / f"server{tag}.pem",
        key_file=directory / f"server{tag}.key",
    )
    files.ca_file.write_bytes(ca.public_bytes(pem))
    files.cert_file.write_bytes(cert.public_bytes(pem))
    files.key_file.touch(mode=0o600)
    files.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


def make_server_cert(directory: Path, hostname: str = "localhost", tag: str = "") -> ServerCert:
    """A CA and a certificate for `hostname`, 127.0.0.1 and ::1."""
    return issue(directory, (hostname, "127.0.0.1", "::1"), hostname, tag)


def make_self_signed_cert(directory: Path, hostname: str = "localhost") -> ServerCert:
    """A self-signed certificate for `hostname`, 127.0.0.1 and ::1, as an oVirt engine
    installed without a CA of the user's presents: trusted only by its fingerprint (its
    `ca_file` is the certificate itself). Files: `self-signed.pem`, `self-signed.key`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{hostname} self-signed {now.timestamp():.0f}")
    sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = ServerCert(
        ca_file=directory / "self-signed.pem",
        cert_file=directory / "self-signed.pem",
        key_file=directory / "self-signed.key",
    )
    files.cert_file.write_bytes(cert.public_bytes(pem))
    files.key_file.touch(mode=0o600)
    files.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@functools.cache
def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly this CA and checks host names (one per CA
    file: building a context loads and parses the bundle every time)."""
    return ssl.create_default_context(cafile=str(ca_file))
