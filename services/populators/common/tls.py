"""TLS towards the source: verify by CA bundle, by pinned certificate fingerprint, or not at
all (only when the Secret says ``insecureSkipVerify``).

Why a pin: oVirt engines and hosts usually carry certificates of the engine's own CA, which
users copy by hand; a SHA-256 fingerprint is shorter to paste and also survives a CA
bundle that holds more than it should. A pinned fingerprint is checked on every connection
(after the handshake, before any request) against the server's leaf certificate.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl

from services.populators.common.args import Credentials


class TlsError(ConnectionError):
    """The server's certificate was not the one we trust: never retried."""


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class TlsPolicy:
    def __init__(self, creds: Credentials) -> None:
        self.fingerprint = creds.fingerprint
        if creds.ca_pem:
            self.context = ssl.create_default_context(cadata=creds.ca_pem)
        else:
            self.context = ssl.create_default_context()
        if (creds.insecure or creds.fingerprint) and not creds.ca_pem:
            # A pin replaces chain verification when no CA was given; insecure skips both.
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        if creds.ca_pem and creds.fingerprint:
            self.context.check_hostname = False  # the pin names the server exactly

    def check(self, sock: ssl.SSLSocket, where: str) -> None:
        if self.fingerprint is None:
            return
        der = sock.getpeercert(binary_form=True) or b""
        got = fingerprint_of(der)
        if got != self.fingerprint:
            raise TlsError(
                f"{where} presented a certificate with SHA-256 fingerprint {got}, "
                f"not the pinned {self.fingerprint}: refusing to talk to it"
            )

    def connection(self, host: str, port: int, timeout: float) -> http.client.HTTPSConnection:
        """A keep-alive HTTPS connection that checks the pin when it connects."""
        return _PinnedConnection(self, host, port, timeout=timeout, context=self.context)


class _PinnedConnection(http.client.HTTPSConnection):
    def __init__(
        self, policy: TlsPolicy, host: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._policy = policy

    def connect(self) -> None:
        try:
            super().connect()
        except ssl.SSLCertVerificationError as exc:
            raise TlsError(
                f"{self.host}:{self.port} failed TLS verification ({exc.verify_message}): "
                "the CA bundle in the Secret does not vouch for this server"
            ) from exc
        assert isinstance(self.sock, ssl.SSLSocket)
        self._policy.check(self.sock, f"{self.host}:{self.port}")
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
