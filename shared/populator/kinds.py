"""Populator kinds: the API group, the sources, the CR phases and reasons, and one typed
spec class per kind whose field table drives its dict form, its pod flags and its schema.

Field names are Forklift's (``engineUrl``, ``engineSecretName``, ``diskId``;
``identityUrl``, ``secretName``, ``imageId``; ``transferNetwork``), under Hoist's own API
group, so Forklift and Hoist can be installed in the same cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

Obj = dict[str, Any]

GROUP = "hoist.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"{GROUP}/"


class ContractError(ValueError):
    """A document lacks what the contract says it must hold (a required spec field)."""


class Source(StrEnum):
    """A migration source: the first pod argument, equal to ``ProviderType``'s values."""

    OVIRT = "ovirt"
    OPENSTACK = "openstack"


PVCINIT = "pvcinit"
"""The consumer pod's only argument: it exits at once (being scheduled was its job)."""


class Phase(StrEnum):
    """A populator CR's ``status.phase``; Failed and Succeeded are final."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(StrEnum):
    """``status.reason`` values a pipeline acts on (others only explain a wait)."""

    STATIC_STORAGE = "StaticStorageClass"
    POPULATOR_FAILED = "PopulatorFailed"
    POD_FAILED = "PopulatorPodFailed"
    """A pod failed and another is being made (the phase stays Running)."""
    BOUND_WITHOUT_DATA = "BoundWithoutPopulation"
    COMPLETED = "Populated"


PERMANENT_REASONS = frozenset({Reason.STATIC_STORAGE})
"""Failures that running the plan again cannot cure (the rest may be transient)."""

# --- the CR spec: one typed class per kind, its table drives dicts, flags and schema ------


@dataclass(frozen=True)
class SpecField:
    """One field of a CR spec: its API spelling (Forklift's), attribute and schema."""

    key: str
    attr: str
    description: str = ""
    required: bool = True

    def schema(self) -> Obj:
        out: Obj = {"type": "string"}
        if self.required:
            out["minLength"] = 1
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Flag:
    """A source flag of the populator pod, and the spec attribute it carries."""

    flag: str
    attr: str
    help: str = ""


_TRANSFER_NETWORK = SpecField(
    "transferNetwork",
    "transfer_network",
    "namespace/name of a Multus NetworkAttachmentDefinition the populator pod copies over "
    "(name alone: the claim's namespace).",
    required=False,
)


class _SpecMethods:
    """What both spec classes do, driven by their ``FIELDS`` and ``FLAGS`` tables."""

    FIELDS: ClassVar[tuple[SpecField, ...]]
    FLAGS: ClassVar[tuple[Flag, ...]]
    CREDENTIALS_FIELD: ClassVar[str]
    """The spec field naming the Secret with the source credentials."""

    def to_dict(self) -> dict[str, str]:
        """The spec as the API spells it; an empty optional field is left out."""
        out = {f.key: str(getattr(self, f.attr)) for f in self.FIELDS}
        return {k: v for k, v in out.items() if v or self._required(k)}

    @classmethod
    def _required(cls, key: str) -> bool:
        return any(f.key == key and f.required for f in cls.FIELDS)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Self:
        """The typed spec; ``ContractError`` when a required field is absent."""
        absent = [f.key for f in cls.FIELDS if f.required and spec.get(f.key) is None]
        if absent:
            raise ContractError(f"the populator spec lacks {', '.join(absent)}")
        values = {f.attr: str(spec.get(f.key) or "") for f in cls.FIELDS}
        return cls(**values)

    def args(self) -> list[str]:
        """The source's own pod flags, after the common ones."""
        return [f"{f.flag}={getattr(self, f.attr)}" for f in self.FLAGS]


@dataclass(frozen=True)
class OvirtSpec(_SpecMethods):
    engine_url: str
    engine_secret_name: str
    disk_id: str
    transfer_network: str = ""

    FIELDS: ClassVar[tuple[SpecField, ...]] = (
        SpecField("engineUrl", "engine_url", "https://engine/ovirt-engine/api"),
        SpecField(
            "engineSecretName",
            "engine_secret_name",
            "Secret (in this namespace) with user, password, cacert.",
        ),
        SpecField("diskId", "disk_id"),
        _TRANSFER_NETWORK,
    )
    FLAGS: ClassVar[tuple[Flag, ...]] = (
        Flag("--engine-url", "engine_url", "https://<engine>[/ovirt-engine/api]"),
        Flag("--disk-id", "disk_id"),
    )
    CREDENTIALS_FIELD: ClassVar[str] = "engineSecretName"

    @property
    def secret_name(self) -> str:
        return self.engine_secret_name


@dataclass(frozen=True)
class OpenstackSpec(_SpecMethods):
    identity_url: str
    secret_name: str
    image_id: str
    transfer_network: str = ""

    FIELDS: ClassVar[tuple[SpecField, ...]] = (
        SpecField("identityUrl", "identity_url", "Keystone URL (…/v3)."),
        SpecField(
            "secretName",
            "secret_name",
            "Secret (in this namespace) with the OpenStack credentials.",
        ),
        SpecField("imageId", "image_id"),
        _TRANSFER_NETWORK,
    )
    FLAGS: ClassVar[tuple[Flag, ...]] = (
        Flag("--endpoint", "identity_url", "Keystone URL (the provider's identityUrl)"),
        Flag("--image-id", "image_id"),
    )
    CREDENTIALS_FIELD: ClassVar[str] = "secretName"


Spec = OvirtSpec | OpenstackSpec

# --- the kinds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One populator kind and everything named after it. ``str(kind)`` is its name, as
    messages and Events spell it."""

    name: str
    plural: str
    source: Source
    spec: type[OvirtSpec] | type[OpenstackSpec]
    volume_populator: str
    """The cluster-scoped ``VolumePopulator`` registering the kind."""
    percent_metric: str
    """Forklift's percent metric the kind's pods serve."""
    column: tuple[str, str]
    """The ``kubectl get`` column naming the source disk: (title, spec field)."""
    stages: bool = False
    """Whether its CRs may be multi-stage (warm): ``shared.populator.stages``."""

    def __str__(self) -> str:
        return self.name


OVIRT = Kind(
    "OvirtVolumePopulator",
    "ovirtvolumepopulators",
    Source.OVIRT,
    OvirtSpec,
    "hoist-ovirt",
    "ovirt_progress",
    ("Disk", "diskId"),
    stages=True,
)
OPENSTACK = Kind(
    "OpenstackVolumePopulator",
    "openstackvolumepopulators",
    Source.OPENSTACK,
    OpenstackSpec,
    "hoist-openstack",
    "openstack_populator_progress",
    ("Image", "imageId"),
)
KINDS: tuple[Kind, ...] = (OVIRT, OPENSTACK)
_BY_NAME = {k.name: k for k in KINDS}
_BY_SOURCE = {k.source.value: k for k in KINDS}


def kind_named(name: str) -> Kind | None:
    """The kind called ``name``; None for anyone else's (a claim Hoist does not fill)."""
    return _BY_NAME.get(name)


def kind_for(source: str) -> Kind:
    """The kind filling claims of a source (``ValueError`` for a provider that is none)."""
    kind = _BY_SOURCE.get(str(source))
    if kind is None:
        raise ValueError(f"provider type {str(source)!r} is not a migration source")
    return kind
