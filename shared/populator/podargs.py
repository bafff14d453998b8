"""Pod arguments, built (``PodArgs.argv``, by the controller) and parsed
(``PodArgs.parser``, by the populator) from the same tables, so a flag renamed on one side
is renamed on the other."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.populator.kinds import Source, Spec, kind_for
from shared.populator.page import METRICS_PORT
from shared.populator.stages import StageArgs

_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_QUANTITY |= {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def quantity(text: str) -> int:
    """A Kubernetes quantity (``10Gi``, ``5368709120``) in bytes: ``--pvc-size``'s type."""
    match = re.fullmatch(r"(\d+)([kMGT]i?|)", text.strip())
    if not match or match.group(2) not in _QUANTITY:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 10Gi or 10737418240")
    return int(match.group(1)) * _QUANTITY[match.group(2)]


# (flag, PodArgs attribute, argparse options), in the order the pod's args list them.
_COMMON_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--volume-path",
        "volume_path",
        {
            "required": True,
            "type": Path,
            "help": "Filesystem: the mount directory (writes disk.img); Block: the device",
        },
    ),
    (
        "--secret-name",
        "secret_name",
        {"default": "", "help": "the Secret the credentials came from"},
    ),
    ("--cr-name", "cr_name", {"default": "", "help": "the populator custom resource"}),
    ("--cr-namespace", "cr_namespace", {"default": ""}),
    (
        "--owner-uid",
        "owner_uid",
        {"default": "", "help": "uid of the PVC, the ownerUID metric label"},
    ),
    ("--pvc-size", "pvc_size", {"type": quantity, "default": 0, "help": "size of the target PVC"}),
)
COMMON_FLAGS: tuple[str, ...] = tuple(flag for flag, _, _ in _COMMON_FLAGS)
"""Forklift's flags every populator takes, in the order a pod's args list them."""
METRICS_PORT_FLAG = "--metrics-port"


@dataclass(frozen=True)
class PodArgs:
    """The arguments of a populator pod (the image's entrypoint is ``python -m
    services.populators``): the source first, then Forklift's flags, then the source's."""

    source: Source
    volume_path: str
    secret_name: str
    cr_name: str
    cr_namespace: str
    owner_uid: str
    pvc_size: str
    spec: Spec
    metrics_port: int = METRICS_PORT
    stage: StageArgs | None = None
    """A multi-stage (warm) CR's stage this pod copies; None: a cold, single copy."""

    def argv(self) -> list[str]:
        """The pod's ``args``. ``--metrics-port`` only when it is not the default (pods
        never needed it: the default is what the controller's port and annotations say)."""
        out = [self.source.value]
        out += [f"{flag}={getattr(self, attr)}" for flag, attr, _ in _COMMON_FLAGS]
        out += self.spec.args()
        if self.stage is not None:
            out += self.stage.argv()
        if self.metrics_port != METRICS_PORT:
            out.append(f"{METRICS_PORT_FLAG}={self.metrics_port}")
        return out

    @staticmethod
    def parser(source: Source | None, description: str) -> argparse.ArgumentParser:
        """What a populator parses: the common flags, ``--metrics-port``, and the
        ``source``'s flags (None: the common ones only; the caller adds its own)."""
        p = argparse.ArgumentParser(description=description)
        for flag, _, options in _COMMON_FLAGS:
            p.add_argument(flag, **options)
        p.add_argument(
            METRICS_PORT_FLAG,
            type=int,
            default=METRICS_PORT,
            help="port of the TLS /metrics endpoint (0: any free port, logged)",
        )
        if source is not None:
            kind = kind_for(source)
            for f in kind.spec.FLAGS:
                p.add_argument(f.flag, required=True, **({"help": f.help} if f.help else {}))
            if kind.stages:
                StageArgs.add_arguments(p)  # read back with ``StageArgs.parsed``
        return p
