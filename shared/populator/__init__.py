"""The populator contract: what a Hoist populator is, as everyone who deals with one agrees.

Four parties meet at a populator, and none of them may drift from the others:

- the orchestrator writes a user claim whose ``dataSourceRef`` names a populator CR
  (``data_source_ref``, ``populator``, ``claim_annotations``);
- the populator controller reads both, runs a pod with ``PodArgs.argv()`` and reports
  through the CR's ``Status``;
- the populator pod parses those arguments with ``PodArgs.parser`` (the same tables that
  built them) and serves ``render_metrics``;
- the progress service finds that pod by its labels and annotations
  (``DISCOVERY_SELECTOR``, ``pod_annotations``) and reads its page with ``parse_metrics``.

So every name that crosses one of those lines is spelled in this package once: kinds, CR
fields, pod flags, metric names, label and annotation keys, selectors, and the CRDs
themselves (the controller registers ``manifests()``, the Helm chart ships the same
objects). Import it as ``from shared import populator as contract``; the submodules are
rooms of one contract (``kinds``, ``status``, ``claims``, ``podargs``, ``page``, ``keys``,
``registration``, ``checksum``: the block checksum a pod reports, ``trust``: how a
Secret's ``insecureSkipVerify`` and ``fingerprint`` read), and everything is re-exported
here. A guard test (``tests/shared/test_populator_contract.py``) fails when a spelling of
``SPELLINGS`` shows up anywhere else in the code.

Stdlib only at import: every populator pod imports this package on its way to copying a
disk, and pays for each module at start-up. ``prometheus_client`` is imported inside
``parse_metrics``, which only the progress service calls. An import-linter contract and a
test keep it that way.

In one disk's journey the controller is the next to read a claim that names a populator CR.

Next: services/controller/watching.py
"""

from __future__ import annotations

from shared.populator.checksum import CHECKSUM_ANNOTATION, BlockChecksum, BlockHash
from shared.populator.claims import (
    PRIME_PREFIX,
    DiskIds,
    SourceRef,
    claim_annotations,
    data_source_ref,
    populator,
    populator_cr,
    populator_pod,
    prime_claim,
    source_of,
)
from shared.populator.keys import (
    CLUSTER,
    COMPONENT,
    CONTROLLER_SELECTOR,
    DISCOVERY_SELECTOR,
    DISK,
    FINALIZER,
    HOLD,
    HOLD_SELECTOR,
    LAST_FAILED_POD,
    MANAGED_BY,
    MANAGED_BY_HOIST,
    METRICS_PORT_KEY,
    METRICS_SCHEME_KEY,
    MIGRATION,
    MULTUS_NETWORKS,
    OWNER_UID,
    PLAN,
    POPULATED_FROM,
    POPULATOR_COMPONENT,
    POPULATOR_KIND,
    PRIME_COMPONENT,
    RECREATIONS,
    SELECTED_NODE,
    TOTAL_BYTES,
    VM,
    label_value,
    missing,
    object_labels,
    pod_annotations,
    pod_labels,
)
from shared.populator.kinds import (
    API_VERSION,
    GROUP,
    KINDS,
    OPENSTACK,
    OVIRT,
    PERMANENT_REASONS,
    PREFIX,
    PVCINIT,
    VERSION,
    ContractError,
    Flag,
    Kind,
    OpenstackSpec,
    OvirtSpec,
    Phase,
    Reason,
    Source,
    Spec,
    SpecField,
    kind_for,
    kind_named,
)
from shared.populator.page import (
    BYTES_DONE,
    BYTES_TOTAL,
    METRICS_PATH,
    METRICS_PORT,
    METRICS_SCHEME,
    OWNER_LABEL,
    PERCENT_METRICS,
    MetricsError,
    Sample,
    parse_metrics,
    render_metrics,
)
from shared.populator.podargs import COMMON_FLAGS, METRICS_PORT_FLAG, PodArgs, quantity
from shared.populator.registration import (
    DIGEST_ANNOTATION,
    crds,
    digest,
    manifests,
    volume_populators,
)
from shared.populator.stages import (
    BackupMode,
    Checkpoint,
    Stage,
    StageArgs,
    StageResult,
    Stages,
)
from shared.populator.status import CLAIM_UID, Status, fresh, tail
from shared.populator.trust import (
    INSECURE_SKIP_VERIFY,
    FlagError,
    fingerprint_algorithm,
    fingerprint_of,
    normalize_fingerprint,
    parse_flag,
    pin_mismatch,
)

_SPEC_KEYS = frozenset({"engineUrl", "engineSecretName", "identityUrl"})
"""The unambiguous spec keys. ``secretName``, ``diskId``, ``imageId`` and
``transferNetwork`` also name other things (a Pod's secret volume, API and inventory
fields): the typed specs guard those, not the spelling test."""

SPELLINGS: frozenset[str] = frozenset(
    {k.name for k in KINDS}
    | {k.plural for k in KINDS}
    | {k.volume_populator for k in KINDS}
    | _SPEC_KEYS
    | {CLAIM_UID, OWNER_LABEL, BYTES_DONE, BYTES_TOTAL, PVCINIT}
    | PERCENT_METRICS
    | set(COMMON_FLAGS)
    | {f.flag for k in KINDS for f in k.spec.FLAGS}
    | {PLAN, MIGRATION, VM, DISK, OWNER_UID, METRICS_PORT_KEY, METRICS_SCHEME_KEY}
    | {CLUSTER, TOTAL_BYTES, POPULATOR_KIND, FINALIZER, POPULATED_FROM, RECREATIONS, HOLD}
    | {LAST_FAILED_POD, DIGEST_ANNOTATION, DISCOVERY_SELECTOR, CONTROLLER_SELECTOR}
    | {CHECKSUM_ANNOTATION}
)
"""Every spelling of the contract no module outside this package may write as a literal."""
FLAG_PREFIXES: tuple[str, ...] = tuple(sorted(f"{s}=" for s in SPELLINGS if s.startswith("--")))
"""A literal starting with one of these builds a pod flag by hand."""

__all__ = [
    "API_VERSION",
    "BYTES_DONE",
    "BYTES_TOTAL",
    "CHECKSUM_ANNOTATION",
    "CLAIM_UID",
    "CLUSTER",
    "COMMON_FLAGS",
    "COMPONENT",
    "CONTROLLER_SELECTOR",
    "DIGEST_ANNOTATION",
    "DISCOVERY_SELECTOR",
    "DISK",
    "FINALIZER",
    "FLAG_PREFIXES",
    "GROUP",
    "HOLD",
    "HOLD_SELECTOR",
    "INSECURE_SKIP_VERIFY",
    "KINDS",
    "LAST_FAILED_POD",
    "MANAGED_BY",
    "MANAGED_BY_HOIST",
    "METRICS_PATH",
    "METRICS_PORT",
    "METRICS_PORT_FLAG",
    "METRICS_PORT_KEY",
    "METRICS_SCHEME",
    "METRICS_SCHEME_KEY",
    "MIGRATION",
    "MULTUS_NETWORKS",
    "OPENSTACK",
    "OVIRT",
    "OWNER_LABEL",
    "OWNER_UID",
    "PERCENT_METRICS",
    "PERMANENT_REASONS",
    "PLAN",
    "POPULATED_FROM",
    "POPULATOR_COMPONENT",
    "POPULATOR_KIND",
    "PREFIX",
    "PRIME_COMPONENT",
    "PRIME_PREFIX",
    "PVCINIT",
    "RECREATIONS",
    "SELECTED_NODE",
    "SPELLINGS",
    "TOTAL_BYTES",
    "VERSION",
    "VM",
    "BackupMode",
    "BlockChecksum",
    "BlockHash",
    "Checkpoint",
    "ContractError",
    "DiskIds",
    "Flag",
    "FlagError",
    "Kind",
    "MetricsError",
    "OpenstackSpec",
    "OvirtSpec",
    "Phase",
    "PodArgs",
    "Reason",
    "Sample",
    "Source",
    "SourceRef",
    "Spec",
    "SpecField",
    "Stage",
    "StageArgs",
    "StageResult",
    "Stages",
    "Status",
    "claim_annotations",
    "crds",
    "data_source_ref",
    "digest",
    "fingerprint_algorithm",
    "fingerprint_of",
    "fresh",
    "kind_for",
    "kind_named",
    "label_value",
    "manifests",
    "missing",
    "normalize_fingerprint",
    "object_labels",
    "parse_flag",
    "parse_metrics",
    "pin_mismatch",
    "pod_annotations",
    "pod_labels",
    "populator",
    "populator_cr",
    "populator_pod",
    "prime_claim",
    "quantity",
    "render_metrics",
    "source_of",
    "tail",
    "volume_populators",
]
