"""TLS towards the source: verify by CA bundle, by pinned certificate fingerprint, or not at
all (only when the Secret says ``insecureSkipVerify``).

Why a pin: oVirt engines and hosts usually carry certificates of the engine's own CA, which
users copy by hand; a SHA-256 fingerprint (or the SHA-1 older engines' dialogs show) is
shorter to paste and also survives a CA bundle that holds more than it should. A pinned
fingerprint is checked on every connection (after the handshake, before any request)
against the server's leaf certificate's digest of the same length.
"""

from __future__ import annotations

import ssl

from services.populators.common.args import Credentials
from services.populators.common.failure import PopulatorFailure
from shared.populator import fingerprint_of as contract_fingerprint_of
from shared.populator import pin_mismatch


class TlsError(PopulatorFailure):
    """The server's certificate was not the one we trust: never retried (and, unlike
    network errors, not an ``OSError``, so no retry loop catches it by accident)."""


def fingerprint_of(der: bytes) -> str:
    """``AB:CD:...``, the SHA-256 form ``shared.tls.sha256_fingerprint`` gives (a test holds
    them equal): the contract's, as ``shared.tls`` is not a populator's to import."""
    return contract_fingerprint_of(der)


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
        got = pin_mismatch(self.fingerprint, der)
        if got is not None:
            raise TlsError(
                f"{where} presented a certificate with {got}, "
                f"not the pinned {self.fingerprint}: refusing to talk to it"
            )
