"""Forklift-compatible populator arguments and the credentials the pod gets as env.

Every populator pod is started with ``--volume-path --secret-name --cr-name --cr-namespace
--owner-uid --pvc-size`` (the same flags as Forklift's populators, spelled once in
``shared.populator``) plus its source's own flags, which each populator adds to
``parser()``. Credentials are the keys of the copied Secret exposed as environment
variables (``envFrom: secretRef``), so their names are the Secret's keys: ``user``,
``password``, ``cacert`` (PEM), ``insecureSkipVerify`` ("true"), and Hoist's addition
``fingerprint`` (SHA-256 or SHA-1 of the server certificate, ``AB:CD:..``). Both read as
the contract's ``parse_flag`` and ``normalize_fingerprint`` say, like everywhere else.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.populator import (
    INSECURE_SKIP_VERIFY,
    METRICS_PORT,
    FlagError,
    PodArgs,
    normalize_fingerprint,
    parse_flag,
    quantity,
)

__all__ = ["METRICS_PORT", "Credentials", "UsageError", "insecure_flag", "parser", "quantity"]


class UsageError(ValueError):
    """Bad arguments or environment: nothing was started."""


def parser(description: str) -> argparse.ArgumentParser:
    """The common flags; a populator adds its source's flags and calls ``parse_args``.
    They are the contract's (``shared.populator.PodArgs``), the very table the controller
    builds a pod's args from."""
    return PodArgs.parser(None, description)


def insecure_flag(env: Mapping[str, str]) -> bool:
    """The Secret's ``insecureSkipVerify``; a ``UsageError`` naming it unless it reads as
    true or false (``shared.populator.parse_flag``)."""
    try:
        return parse_flag(env.get(INSECURE_SKIP_VERIFY))
    except FlagError as exc:
        raise UsageError(str(exc)) from None


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
        raw = env.get("fingerprint", "").strip()
        try:
            fingerprint = normalize_fingerprint(raw) if raw else None
        except ValueError as exc:
            raise UsageError(f"`fingerprint` {raw!r}: {exc}") from None
        return cls(
            user=user,
            password=password,
            ca_pem=env.get("cacert", "").strip() or None,
            fingerprint=fingerprint,
            insecure=insecure_flag(env),
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
