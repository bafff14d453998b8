"""TLS towards the source: verify by CA bundle, by pinned certificate fingerprint, or not at
all (only when the Secret says ``insecureSkipVerify``).

Why a pin: oVirt engines and hosts usually carry certificates of the engine's own CA, which
users copy by hand; a SHA-256 fingerprint is shorter to paste and also survives a CA
bundle that holds more than it should. A pinned fingerprint is checked on every connection
(after the handshake, before any request) against the server's leaf certificate.
"""

from __future__ import annotations

import hashlib
import ssl

from services.populators.common.args import Credentials
from services.populators.common.failure import PopulatorFailure


class TlsError(PopulatorFailure):
    """The server's certificate was not the one we trust: never retried (and, unlike
    network errors, not an ``OSError``, so no retry loop catches it by accident)."""


def fingerprint_of(der: bytes) -> str:
    """``AB:CD:...``, the form ``shared.tls.sha256_fingerprint`` gives (a test holds them
    equal). Not imported from there: ``shared.tls`` imports ``cryptography`` at module
    level, ~70 ms of CPU at every populator start for a two-line digest."""
    text = hashlib.sha256(der).hexdigest().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


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

    def check(self, der: bytes, where: str) -> None:
        """Raise ``TlsError`` unless the leaf certificate ``der`` matches the pin (if any)."""
        if self.fingerprint is None:
            return
        got = fingerprint_of(der)
        if got != self.fingerprint:
            raise TlsError(
                f"{where} presented a certificate with SHA-256 fingerprint {got}, "
                f"not the pinned {self.fingerprint}: refusing to talk to it"
            )
