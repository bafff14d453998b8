"""The event catalog and the envelope: the contract services and integrators rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from shared import catalog
from shared import envelope as env
from shared import payloads as p
from shared.catalog import Delivery, EventSpec, subject_token


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard semantics: ``*`` one token, ``>`` one or more trailing tokens."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


def sample(spec: EventSpec[Any]) -> BaseModel:
    """A valid payload of each event, with ids that need escaping."""
    now = datetime.now(UTC)
    ids = {"plan_id": "plan.1", "migration_id": "m 1", "vm_id": "vm*1", "disk_id": "d>1"}
    secret = p.ResourceRef(namespace="hoist", name="provider-secret")
    ref = p.ProviderRef(id="prov", type=p.ProviderType.OVIRT, url="https://e", secret=secret)
    pod = p.ResourceRef(namespace="ns", name="populate-1")
    values: dict[type[BaseModel], dict[str, Any]] = {
        p.ProviderStatusChanged: {
            "provider_id": "prov.1",
            "provider_type": "ovirt",
            "name": "engine",
            "phase": "Ready",
            "revision": 3,
        },
        p.InventoryObjectChanged: {
            "provider_id": "prov.1",
            "kind": "vm",
            "object_id": "vm-1",
            "action": "updated",
            "revision": 4,
        },
        p.PlanStarted: {
            **ids,
            "plan_name": "wave-1",
            "source": ref,
            "target": ref,
            "target_namespace": "ns",
            "vms": [],
        },
        p.PlanCancelRequested: ids,
        p.HookChanged: {"hook_id": "hook.1", "name": "drain", "action": "updated", "revision": 2},
        p.PlanCutoverChanged: {**ids, "cutover": now, "revision": 2},
        p.PlanStatusChanged: {**ids, "phase": "Running"},
        p.VmStepChanged: {**ids, "step": "DiskTransfer", "state": "Running"},
        p.VmFinished: {**ids, "outcome": "Succeeded"},
        p.PopulatorPodStarted: {
            **ids,
            "cluster_id": "c",
            "pod": pod,
            "owner_uid": "u",
            "pvc": pod,
            "total_bytes": 10,
            "populator_kind": "OvirtVolumePopulator",
        },
        p.PopulatorPodFinished: {
            **ids,
            "cluster_id": "c",
            "pod": pod,
            "owner_uid": "u",
            "outcome": "Failed",
            "error": {"reason": "ImageioForbidden", "message": "ticket expired", "permanent": True},
        },
        p.PopulationEnded: {**ids, "cluster_id": "c", "outcome": "Succeeded"},
        p.DiskProgress: {
            **ids,
            "bytes_done": 5,
            "bytes_total": 10,
            "percent": 50,
            "observed_at": now,
        },
        p.VmProgress: {
            **ids,
            "disks_total": 1,
            "disks_done": 0,
            "bytes_done": 5,
            "bytes_total": 10,
            "percent": 50,
            "observed_at": now,
        },
    }
    model: BaseModel = spec.payload.model_validate(values[spec.payload])
    return model


def test_catalog_covers_what_later_services_need() -> None:
    names = {e.name for e in catalog.EVENTS}
    assert {
        "inventory.provider.status",
        "inventory.object.changed",
        "plan.started",
        "plan.cancel.requested",
        "migration.vm.step",
        "migration.vm.finished",
        "populator.pod.started",
        "populator.pod.finished",
        "progress.disk",
        "progress.vm",
    } <= names


def test_types_and_subjects_are_unique() -> None:
    assert len({e.ce_type for e in catalog.EVENTS}) == len(catalog.EVENTS)
    filters = [e.filter() for e in catalog.EVENTS]
    for i, a in enumerate(filters):
        for b in filters[i + 1 :]:
            assert not matches(a, b.replace("*", "x")), f"{a} overlaps {b}"


@pytest.mark.parametrize("spec", catalog.EVENTS, ids=lambda e: e.name)
def test_every_event_renders_into_its_stream(spec: EventSpec[Any]) -> None:
    data = sample(spec)
    subject = spec.render(data)
    assert matches(spec.filter(), subject)
    if spec.delivery is Delivery.STREAM:
        assert spec.stream is not None
        assert any(matches(s, subject) for s in spec.stream.subjects), subject
    else:
        for stream in catalog.STREAMS:  # a core event stored by a stream would be a leak
            assert not any(matches(s, subject) for s in stream.subjects)
    assert spec.description
    assert spec.producer
    assert set(spec.consumers) <= {"inventory", "planner", "orchestrator", "progress"}


@pytest.mark.parametrize("spec", catalog.EVENTS, ids=lambda e: e.name)
def test_envelope_round_trip(spec: EventSpec[Any]) -> None:
    data = sample(spec)
    sent = env.build(spec, data, source="/hoist/tests", event_id="id-1")
    raw = env.encode(sent)
    body = json.loads(raw)
    assert body["specversion"] == "1.0"
    assert body["type"] == spec.ce_type
    assert body["schemaversion"] == spec.version
    assert body["datacontenttype"] == "application/json"
    got = env.decode(raw)
    assert got == sent
    assert type(got.data) is spec.payload
    if "plan_id" in spec.payload.model_fields:
        assert got.planid == "plan.1"
        assert got.correlation["vm_id" if "vm_id" in spec.payload.model_fields else "plan_id"]


def test_subject_tokens_are_escaped() -> None:
    assert subject_token("7c9e6679-7425-40de-944b-e07fc1f90ae7") == (
        "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    )
    assert subject_token("a.b") == "a%2Eb"
    assert subject_token("a b*c>d") == "a%20b%2Ac%3Ed"
    assert subject_token("") == "_"
    assert subject_token("ü") == "%C3%BC"
    data = sample(catalog.VM_STEP_CHANGED)
    assert catalog.VM_STEP_CHANGED.render(data) == "migration.plan%2E1.vm.vm%2A1.step"
    assert catalog.VM_STEP_CHANGED.filter(plan_id="plan.1") == "migration.plan%2E1.vm.*.step"
    with pytest.raises(ValueError, match="no subject tokens"):
        catalog.VM_STEP_CHANGED.filter(disk_id="x")


def test_decode_refuses_what_is_not_a_hoist_event() -> None:
    with pytest.raises(env.EnvelopeError, match="not a Hoist event envelope"):
        env.decode(b"{not json")
    good = json.loads(
        env.encode(env.build(catalog.PLAN_STATUS, sample(catalog.PLAN_STATUS), source="/t"))
    )
    with pytest.raises(env.EnvelopeError, match="unknown event type"):
        env.decode(json.dumps({**good, "type": "io.hoist.nope.v1"}).encode())
    with pytest.raises(env.EnvelopeError, match=r"invalid payload: data\.phase"):
        env.decode(json.dumps({**good, "data": {"plan_id": "p"}}).encode())


def test_newer_producers_are_readable() -> None:
    """A field added by a newer producer is ignored, not refused."""
    raw = json.loads(
        env.encode(env.build(catalog.PLAN_STATUS, sample(catalog.PLAN_STATUS), source="/t"))
    )
    raw["data"]["added_in_a_later_release"] = 1
    raw["newattribute"] = "x"
    assert env.decode(json.dumps(raw).encode()).data.phase == "Running"  # type: ignore[attr-defined]


def test_build_checks_the_payload_type() -> None:
    with pytest.raises(TypeError, match="takes PlanStarted"):
        env.build(catalog.PLAN_STARTED, sample(catalog.PLAN_STATUS), source="/t")


def test_spec_declaration_is_checked() -> None:
    with pytest.raises(TypeError, match="not payload fields"):
        EventSpec(
            name="x",
            subject="x.{nope}",
            payload=p.PlanStatusChanged,
            delivery=Delivery.CORE,
            producer="planner",
            consumers=(),
            description="x",
        )
    with pytest.raises(TypeError, match="needs a stream"):
        EventSpec(
            name="x",
            subject="x.{plan_id}",
            payload=p.PlanStatusChanged,
            delivery=Delivery.STREAM,
            producer="planner",
            consumers=(),
            description="x",
        )


def test_payloads_carry_no_credentials() -> None:
    """Providers travel as a reference to their Secret, never as a password."""
    for spec in catalog.EVENTS:
        schema = json.dumps(spec.payload.model_json_schema()).lower()
        for word in ("password", 'token"', "apikey", "private_key"):
            assert word not in schema, (spec.name, word)
