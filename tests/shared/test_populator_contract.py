"""The populator contract (``shared.populator``): what its parties exchange stays what it
was, both directions of every conversion agree, and populator pods still start on the
standard library alone."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.populators.common.metrics import Progress
from services.progress.scraping import parse
from shared import populator as contract

ROOT = Path(__file__).resolve().parents[2]

# --- registration: the digests every installed controller compares ------------------------

DIGESTS = {
    "ovirtvolumepopulators.hoist.io": "1478d17139221249f10671a3234f6205",
    "openstackvolumepopulators.hoist.io": "2932318471063611de5d3c1af0585873",
    "hoist-ovirt": "0c2509e6c84355ce3b3316accaf51f0c",
    "hoist-openstack": "63304d3d5f5c2e084f91b397b2eeb482",
}


def test_registered_manifests_keep_their_digests() -> None:
    """A changed digest makes every upgraded controller rewrite the CRDs: only on purpose."""
    got = {m["metadata"]["name"]: contract.digest(m) for m in contract.manifests()}
    assert got == DIGESTS
    assert list(got) == list(DIGESTS)  # CRDs first: the order they are applied in


def test_digest_ignores_its_own_annotation() -> None:
    crd = contract.crds()[0]
    crd["metadata"]["annotations"] = {"someone": "else"}
    stamped = {**crd, "metadata": {**crd["metadata"]}}
    stamped["metadata"]["annotations"] = {"someone": "else", contract.DIGEST_ANNOTATION: "x"}
    assert contract.digest(stamped) == contract.digest(crd)


def test_crd_schema_comes_from_the_spec_tables() -> None:
    for kind, crd in zip(contract.KINDS, contract.crds(), strict=True):
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        spec = schema["spec"]
        assert spec["required"] == [f.key for f in kind.spec.FIELDS if f.required]
        staged = {"checkpoints", "finalCheckpoint"} if kind.stages else set()
        assert set(spec["properties"]) == {f.key for f in kind.spec.FIELDS} | staged
        status = set(contract.Status(claim_uid="x").to_dict()) | (
            {"stages", "failedCheckpoint"} if kind.stages else set()
        )
        assert set(schema["status"]["properties"]) == status
        assert crd["spec"]["names"]["kind"] == kind.name


# --- kinds and specs ----------------------------------------------------------------------


def test_kinds_by_name_and_by_source() -> None:
    assert contract.kind_named("OvirtVolumePopulator") is contract.OVIRT
    assert contract.kind_named("PersistentVolumeClaim") is None
    assert contract.kind_for("openstack") is contract.OPENSTACK
    assert contract.kind_for(contract.Source.OVIRT) is contract.OVIRT
    with pytest.raises(ValueError, match="'kubevirt' is not a migration source"):
        contract.kind_for("kubevirt")
    assert str(contract.OVIRT) == "OvirtVolumePopulator"


@pytest.mark.parametrize(
    ("spec", "wire"),
    [
        (
            contract.OvirtSpec("https://engine/ovirt-engine/api", "src", "disk-1"),
            {
                "engineUrl": "https://engine/ovirt-engine/api",
                "engineSecretName": "src",
                "diskId": "disk-1",
            },
        ),
        (
            contract.OpenstackSpec("https://keystone:5000/v3", "src", "img-1", "ns/net"),
            {
                "identityUrl": "https://keystone:5000/v3",
                "secretName": "src",
                "imageId": "img-1",
                "transferNetwork": "ns/net",
            },
        ),
    ],
)
def test_spec_round_trips(spec: contract.Spec, wire: dict[str, str]) -> None:
    assert spec.to_dict() == wire
    assert type(spec).from_dict(wire) == spec
    assert spec.secret_name == "src"
    assert wire[type(spec).CREDENTIALS_FIELD] == "src"


def test_spec_missing_a_required_field_is_refused() -> None:
    with pytest.raises(contract.ContractError, match="diskId"):
        contract.OvirtSpec.from_dict({"engineUrl": "u", "engineSecretName": "s"})


def test_populator_document_and_the_claim_that_names_it() -> None:
    spec = contract.OvirtSpec("https://e/ovirt-engine/api", "src", "d-1")
    owner = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c", "uid": "u"}
    cr = contract.populator(
        contract.OVIRT, spec, name="c", namespace="ns", labels={"a": "b"}, owner=owner
    )
    assert cr["apiVersion"] == "hoist.io/v1beta1"
    assert cr["kind"] == "OvirtVolumePopulator"
    assert cr["metadata"]["ownerReferences"] == [owner]
    assert contract.OvirtSpec.from_dict(cr["spec"]) == spec
    ref = contract.data_source_ref(contract.OVIRT, "c")
    claim = {"metadata": {"namespace": "ns", "name": "c"}, "spec": {"dataSourceRef": ref}}
    assert contract.source_of(claim) == contract.SourceRef(contract.OVIRT, "ns", "c")
    ref["apiGroup"] = "forklift.konveyor.io"
    assert contract.source_of(claim) is None


def test_derived_names() -> None:
    assert contract.prime_claim("u-1") == "prime-u-1"
    assert contract.populator_pod("u-1") == "populate-u-1"
    assert contract.populator_cr("vm-1-disk-0") == "vm-1-disk-0"
    assert contract.label_value("ok-value") == "ok-value"
    long = contract.label_value("x" * 64)
    assert long.startswith("h-")
    assert len(long) == 42
    assert contract.object_labels("p", "m", "v") == {
        "app.kubernetes.io/managed-by": "hoist",
        "hoist.io/plan": "p",
        "hoist.io/migration": "m",
        "hoist.io/vm": "v",
    }


# --- status -------------------------------------------------------------------------------


def test_status_round_trips_in_the_api_spelling() -> None:
    status = contract.Status(
        phase=contract.Phase.RUNNING,
        progress="42",
        reason="Copying",
        message="m",
        log="l",
        recreations=2,
        pod="populate-u",
        claim_uid="u",
    )
    wire = status.to_dict()
    assert wire["claimUID"] == "u"
    assert contract.Status.of({"status": wire}) == status
    assert status.percent() == 42


def test_fresh_status_and_tolerant_reading() -> None:
    assert contract.fresh() == {
        "phase": "Pending",
        "progress": "0",
        "reason": "",
        "message": "",
        "log": "",
        "recreations": 0,
        "pod": "",
    }
    empty = contract.Status.of({})
    assert empty.phase == contract.Phase.PENDING
    assert empty.claim_uid is None
    odd = contract.Status.of({"status": {"progress": "12%", "recreations": "x"}})
    assert (odd.percent(), odd.recreations) == (12, 0)


def test_final_failure_and_staleness_are_about_one_claim() -> None:
    failed = contract.Status.of({"status": {"phase": "Failed", "claimUID": "a"}})
    assert failed.is_final_failure("a")
    assert not failed.is_final_failure("b")
    assert failed.is_stale("b")
    unowned = contract.Status.of({"status": {"phase": "Failed"}})
    assert unowned.is_final_failure("b")
    assert not unowned.is_stale("b")


def test_log_tail_keeps_whole_lines_within_the_limit() -> None:
    text = "".join(f"line {n}\n" for n in range(10_000))
    kept = contract.tail(text)
    assert len(kept.encode()) <= contract.Status.LOG_LIMIT == 16 * 1024
    assert kept.endswith("line 9999\n")
    assert kept.startswith("line ")


# --- pod arguments ------------------------------------------------------------------------


def _args(spec: contract.Spec, source: contract.Source) -> contract.PodArgs:
    return contract.PodArgs(
        source=source,
        volume_path="/dev/block",
        secret_name=spec.secret_name,
        cr_name="vm-1-disk-0",
        cr_namespace="target",
        owner_uid="0f0e-uid",
        pvc_size="2Gi",
        spec=spec,
    )


def test_argv_is_what_pods_have_always_been_given() -> None:
    ovirt = _args(contract.OvirtSpec("https://e/api", "s", "d-1"), contract.Source.OVIRT)
    assert ovirt.argv() == [
        "ovirt",
        "--volume-path=/dev/block",
        "--secret-name=s",
        "--cr-name=vm-1-disk-0",
        "--cr-namespace=target",
        "--owner-uid=0f0e-uid",
        "--pvc-size=2Gi",
        "--engine-url=https://e/api",
        "--disk-id=d-1",
    ]
    openstack = _args(
        contract.OpenstackSpec("https://k/v3", "s", "img-1"), contract.Source.OPENSTACK
    )
    assert openstack.argv()[0] == "openstack"
    assert openstack.argv()[-2:] == ["--endpoint=https://k/v3", "--image-id=img-1"]


@pytest.mark.parametrize("kind", contract.KINDS)
def test_the_parser_reads_what_argv_builds(kind: contract.Kind) -> None:
    spec = kind.spec.from_dict({f.key: f"v-{f.key}" for f in kind.spec.FIELDS})
    built = _args(spec, kind.source)
    argv = built.argv()
    assert argv[0] == kind.source.value
    ns = contract.PodArgs.parser(kind.source, "test").parse_args(argv[1:])
    assert ns.volume_path == Path("/dev/block")
    assert (ns.secret_name, ns.cr_name, ns.cr_namespace) == (
        spec.secret_name,
        "vm-1-disk-0",
        "target",
    )
    assert (ns.owner_uid, ns.pvc_size, ns.metrics_port) == ("0f0e-uid", 2 << 30, 8443)
    values = {f.flag: getattr(spec, f.attr) for f in kind.spec.FLAGS}
    assert {f: getattr(ns, f[2:].replace("-", "_")) for f in values} == values
    moved = contract.PodArgs(**{**built.__dict__, "metrics_port": 9000})
    assert contract.PodArgs.parser(kind.source, "t").parse_args(moved.argv()[1:]).metrics_port == (
        9000
    )


def test_parser_without_a_source_has_the_common_flags_only() -> None:
    p = contract.PodArgs.parser(None, "test")
    ns = p.parse_args(["--volume-path=/mnt"])
    assert (ns.pvc_size, ns.metrics_port, ns.owner_uid) == (0, contract.METRICS_PORT, "")
    with pytest.raises(SystemExit):
        contract.PodArgs.parser(contract.Source.OVIRT, "test").parse_args(["--volume-path=/m"])


def test_quantity() -> None:
    assert contract.quantity("10Gi") == 10 << 30
    assert contract.quantity("5368709120") == 5368709120
    assert contract.quantity("1k") == 1000
    with pytest.raises(argparse.ArgumentTypeError):
        contract.quantity("1.5Gi")


# --- metrics ------------------------------------------------------------------------------


def test_render_metrics_is_the_page_populators_serve() -> None:
    progress = Progress("openstack_populator_progress", "uid-1")
    progress.set_total(4096)
    progress.add(1024)
    page = contract.render_metrics("openstack_populator_progress", "uid-1", 25, 1024, 4096)
    assert page == progress.render()


def test_parse_metrics_reads_what_render_metrics_writes() -> None:
    page = contract.render_metrics("ovirt_progress", "uid-1", 37, 370, 1000)
    sample = contract.parse_metrics(page, "uid-1")
    assert sample == contract.Sample(37.0, 370, 1000)
    assert (parse(page, "uid-1").percent, parse(page, "uid-1").bytes_done) == (37.0, 370)
    with pytest.raises(contract.MetricsError, match="no progress for ownerUID uid-2"):
        contract.parse_metrics(page, "uid-2")
    with pytest.raises(contract.MetricsError, match="not a count"):
        contract.parse_metrics('ovirt_progress{ownerUID="u"} -1\n', "u")
    with pytest.raises(contract.MetricsError, match="not Prometheus text"):
        contract.parse_metrics("ovirt_progress{ownerUID=u} x y z\n", "u")


# --- claims and pods: the ids, labels and annotations -------------------------------------


def test_disk_ids_of_a_claim() -> None:
    claim = {
        "metadata": {
            "labels": contract.object_labels("p", "m", "v", "d"),
            "annotations": contract.claim_annotations("kv-1", 1024, contract.OVIRT),
        }
    }
    ids = contract.DiskIds.of_claim(claim, contract.OVIRT)
    assert ids == contract.DiskIds("p", "m", "v", "d", "kv-1", 1024, "OvirtVolumePopulator")
    assert ids.missing == []
    bare = contract.DiskIds.of_claim({"metadata": {}}, contract.OPENSTACK)
    assert bare.populator_kind == "openstack"  # the documented fallback: the source
    assert bare.missing == [
        "hoist.io/plan",
        "hoist.io/migration",
        "hoist.io/vm",
        "hoist.io/disk",
        "hoist.io/cluster",
    ]


def test_pod_labels_and_annotations_are_what_discovery_needs() -> None:
    labels = contract.pod_labels("p", "m", "v", "d")
    annotations = contract.pod_annotations(
        cluster_id="kv-1", owner_uid="u", total_bytes=5, populator_kind="ovirt"
    )
    assert contract.missing(labels, annotations) == []
    assert annotations[contract.METRICS_PORT_KEY] == "8443"
    assert annotations[contract.METRICS_SCHEME_KEY] == "https"
    assert contract.DISCOVERY_SELECTOR == "app.kubernetes.io/managed-by=hoist,hoist.io/disk"
    assert contract.CONTROLLER_SELECTOR == (
        "app.kubernetes.io/managed-by=hoist,app.kubernetes.io/component=populator"
    )


# --- start-up cost of a populator pod (§2.6) ----------------------------------------------

ALLOWED_SHARED = ("shared.populator", "shared.openstack_auth")
"""What populators may import from ``shared``: the contract, and the OpenStack populator's
token request (itself standard library only)."""


def _imported(module: str) -> list[str]:
    """Every module a fresh interpreter holds after importing ``module`` (this worktree's
    code: the editable install may point elsewhere)."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names: list[str] = json.loads(done.stdout)
    return names


def _third_party(names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if n.split(".")[0] not in sys.stdlib_module_names
        and n.split(".")[0] not in ("services", "shared")
        and not n.startswith("_")  # the interpreter's own and site's (_distutils_hack...)
    ]


@pytest.mark.parametrize(
    "module",
    [
        "services.populators.__main__",
        "services.populators.ovirt.__main__",
        "services.populators.openstack.__main__",
    ],
)
def test_a_populator_imports_the_standard_library_and_the_contract_only(module: str) -> None:
    """No third-party package at a populator's start (pydantic, prometheus_client,
    cryptography, kubernetes_asyncio... cost tens of ms each), and of ``shared`` only the
    contract."""
    names = _imported(module)
    assert _third_party(names) == []
    others = [
        n
        for n in names
        if n.startswith("shared.") and ".".join(n.split(".")[:2]) not in ALLOWED_SHARED
    ]
    assert others == []


def test_the_contract_alone_is_standard_library() -> None:
    names = _imported("shared.populator")
    assert _third_party(names) == []
    assert {n for n in names if n.split(".")[0] in ("shared", "services")} == {
        "shared",
        "shared.populator",
        *(
            f"shared.populator.{m}"
            for m in ("checksum", "claims", "keys", "kinds", "page", "podargs", "stages")
        ),
        "shared.populator.registration",
        "shared.populator.status",
        "shared.populator.trust",
    }


# --- the spelling guard (§5.1): the contract's spellings live in the contract ---------------

ALLOWED: dict[str, set[str]] = {
    # Files allowed a contract spelling of their own: none. Every process speaks it through
    # shared.populator, and a new spelling elsewhere fails here.
}


def offences(source: str) -> set[str]:
    """Every string literal (f-string parts included) that is a contract spelling, or that
    starts a pod flag (``--engine-url=``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if value in contract.SPELLINGS or value.startswith(contract.FLAG_PREFIXES):
                found.add(value)
    return found


def _scanned() -> list[Path]:
    files = [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py"), *ROOT.glob("tools/*.py")]
    return sorted(
        f
        for f in files
        if not f.relative_to(ROOT).as_posix().startswith("shared/populator/")
        and "migrations/versions" not in f.as_posix()  # frozen history
    )


def test_the_guard_sees_literals_and_flag_prefixes() -> None:
    source = 'A = "ovirt_progress"\nB = f"--disk-id={x}"\nC = "the ovirt_progress metric"\n'
    assert offences(source) == {"ovirt_progress", "--disk-id="}


def test_contract_spellings_appear_nowhere_else() -> None:
    found = {}
    for path in _scanned():
        if hits := offences(path.read_text()):
            found[path.relative_to(ROOT).as_posix()] = hits
    new = {p: hits - ALLOWED.get(p, set()) for p, hits in found.items()}
    assert {p: h for p, h in new.items() if h} == {}, "spell these through shared.populator"
    gone = {p: spelled - found.get(p, set()) for p, spelled in ALLOWED.items()}
    assert {p: g for p, g in gone.items() if g} == {}, "switched: delete them from ALLOWED"


def test_the_controller_uses_the_contract_only() -> None:
    assert not [p for p in ALLOWED if p.startswith("services/controller/")]
