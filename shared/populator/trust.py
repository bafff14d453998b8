"""How a provider's trust keys read, spelled once for every process that reads them.

A provider Secret (and the CLI's config file) carries ``insecureSkipVerify`` as text, and
a pinned certificate ``fingerprint``. The inventory's checks and collectors, the API, the
populator pods and the CLI all read them here, so ``"yes"`` cannot skip verification in
one process and not in the other:

- a flag is true for ``true``, ``1``, ``yes``, ``on`` and false for ``false``, ``0``,
  ``no``, ``off``, empty or absent (case-insensitive, surrounding blanks ignored); anything
  else is a ``FlagError`` naming the key, which each caller reports (a 422 at the field, a
  populator's usage error). Never guessed: TLS is verified unless skipping is explicit.
- a fingerprint is a SHA-256 (64 hex digits) or a SHA-1 (40, what oVirt's dialogs show),
  colons or dashes optional, any case; it is compared with the certificate's digest of
  the same length.

Standard library only: the populator pods import it at start-up.
"""

from __future__ import annotations

import hashlib
import re

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})
INSECURE_SKIP_VERIFY = "insecureSkipVerify"
"""The Secret key (Forklift's) that turns verification off."""

_ALGORITHMS = {64: "SHA-256", 40: "SHA-1"}


class FlagError(ValueError):
    """A flag that is neither true nor false; ``reason`` is the message without the key."""

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.value = value
        self.reason = f"{value!r} is not true or false (use true/false, 1/0, yes/no or on/off)"
        super().__init__(f"`{field}`: {self.reason}")


def parse_flag(value: object, field: str = INSECURE_SKIP_VERIFY) -> bool:
    """``value`` (text from a Secret, env or file; a bool or 0/1 from JSON or YAML; None
    when absent) as a bool, or ``FlagError`` naming ``field``."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise FlagError(field, value)


def normalize_fingerprint(text: str) -> str:
    """``ab:cd..``, ``AB-CD..`` or bare hex -> ``AB:CD:..``; ValueError unless it is a
    SHA-256 (64 hex digits) or a SHA-1 (40)."""
    bare = re.sub(r"[\s:\-]", "", text).upper()
    if not re.fullmatch(r"[0-9A-F]+", bare) or len(bare) not in _ALGORITHMS:
        raise ValueError(
            "not a SHA-256 or SHA-1 fingerprint (64 or 40 hex digits, colons optional)"
        )
    return ":".join(bare[i : i + 2] for i in range(0, len(bare), 2))


def fingerprint_algorithm(fingerprint: str) -> str:
    """``SHA-256`` or ``SHA-1``, by the length of a normalized ``fingerprint``."""
    return _ALGORITHMS[len(fingerprint.replace(":", ""))]


def fingerprint_of(der: bytes, algorithm: str = "SHA-256") -> str:
    """``AB:CD:...``: the certificate ``der``'s SHA-256 (or SHA-1) fingerprint."""
    if algorithm == "SHA-1":
        digest = hashlib.sha1(der, usedforsecurity=False).digest()
    else:
        digest = hashlib.sha256(der).digest()
    text = digest.hex().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def pin_mismatch(pin: str, der: bytes) -> str | None:
    """None if the certificate ``der`` has the normalized fingerprint ``pin`` (compared
    with its digest of the pin's length), else what it presented: ``SHA-1 fingerprint
    AB:..``."""
    algorithm = fingerprint_algorithm(pin)
    got = fingerprint_of(der, algorithm)
    return None if got == pin else f"{algorithm} fingerprint {got}"
