"""Forklift-compatible populator arguments and the credentials the pod gets as env.

Every populator pod is started with ``--volume-path --secret-name --cr-name --cr-namespace
--owner-uid --pvc-size`` (the same flags as Forklift's populators) plus its source's own
flags, which each populator adds to ``parser()``. Credentials are the keys of the copied
Secret exposed as environment variables (``envFrom: secretRef``), so their names are the
Secret's keys: ``user``, ``password``, ``cacert`` (PEM), ``insecureSkipVerify`` ("true"),
and Hoist's addition ``fingerprint`` (SHA-256 of the server certificate, ``AB:CD:..``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

METRICS_PORT = 8443  # Forklift's populator pods serve metrics here
_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_QUANTITY |= {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


class UsageError(ValueError):
    """Bad arguments or environment: nothing was started."""


def quantity(text: str) -> int:
    """A Kubernetes quantity (``10Gi``, ``5368709120``) in bytes."""
    match = re.fullmatch(r"(\d+)([kMGT]i?|)", text.strip())
    if not match or match.group(2) not in _QUANTITY:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 10Gi or 10737418240")
    return int(match.group(1)) * _QUANTITY[match.group(2)]


def parser(description: str) -> argparse.ArgumentParser:
    """The common flags; a populator adds its source's flags and calls ``parse_args``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--volume-path",
        required=True,
        type=Path,
        help="Filesystem: the mount directory (writes disk.img); Block: the device",
    )
    p.add_argument("--secret-name", default="", help="the Secret the credentials came from")
    p.add_argument("--cr-name", default="", help="the populator custom resource")
    p.add_argument("--cr-namespace", default="")
    p.add_argument("--owner-uid", default="", help="uid of the PVC, the ownerUID metric label")
    p.add_argument("--pvc-size", type=quantity, default=0, help="size of the target PVC")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=METRICS_PORT,
        help="port of the TLS /metrics endpoint (0: any free port, logged)",
    )
    return p


@dataclass(frozen=True)
class Credentials:
    """What the copied Secret holds; ``describe()`` is safe to log (no password)."""

    user: str
    password: str
    ca_pem: str | None
    fingerprint: str | None
    insecure: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        user, password = env.get("user", ""), env.get("password", "")
        if not user or not password:
            raise UsageError(
                "no credentials: the env must carry `user` and `password` from the Secret"
            )
        fingerprint = env.get("fingerprint", "").strip().upper().replace("-", ":") or None
        if fingerprint and not re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint):
            raise UsageError(
                f"`fingerprint` {fingerprint!r} is not a SHA-256 fingerprint (32 hex pairs)"
            )
        return cls(
            user=user,
            password=password,
            ca_pem=env.get("cacert", "").strip() or None,
            fingerprint=fingerprint,
            insecure=env.get("insecureSkipVerify", "").strip().lower() in ("true", "1", "yes"),
        )

    def describe(self) -> str:
        how = (
            "skipped (insecureSkipVerify)"
            if self.insecure and not self.fingerprint
            else "pinned fingerprint"
            if self.fingerprint
            else "CA bundle from the Secret"
            if self.ca_pem
            else "system CA store"
        )
        return f"user {self.user}, TLS verification: {how}"
