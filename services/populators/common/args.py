"""Forklift-compatible populator arguments and the credentials the pod gets as env.

Every populator pod is started with ``--volume-path --secret-name --cr-name --cr-namespace
--owner-uid --pvc-size`` (the same flags as Forklift's populators, spelled once in
``shared.populator``) plus its source's own flags, which each populator adds to
``parser()``. Credentials are the keys of the copied Secret exposed as environment
variables (``envFrom: secretRef``), so their names are the Secret's keys: ``user``,
``password``, ``cacert`` (PEM), ``insecureSkipVerify`` ("true"), and Hoist's addition
``fingerprint`` (SHA-256 of the server certificate, ``AB:CD:..``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.populator import METRICS_PORT, PodArgs, quantity

__all__ = ["METRICS_PORT", "Credentials", "UsageError", "parser", "quantity"]


class UsageError(ValueError):
    """Bad arguments or environment: nothing was started."""


def parser(description: str) -> argparse.ArgumentParser:
    """The common flags; a populator adds its source's flags and calls ``parse_args``.
    They are the contract's (``shared.populator.PodArgs``), the very table the controller
    builds a pod's args from."""
    return PodArgs.parser(None, description)


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
