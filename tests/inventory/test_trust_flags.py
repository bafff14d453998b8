"""Every inventory entry point reads ``insecureSkipVerify`` as ``shared.populator.parse_flag``
does: ``yes`` skips verification everywhere, ``maybe`` is refused at the field (a 422), and
a SHA-1 fingerprint is accepted where a SHA-256 one is."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from pydantic import ValidationError

from services.inventory.providers import TlsSpec
from services.inventory.registering import _tls_of
from services.inventory.sources.kubevirt.source import _trust_problems
from services.inventory.sources.openstack.credentials import check_tls_keys
from services.inventory.sources.ovirt.definition import check_definition
from shared.service.errors import Invalid

SHA1 = ":".join(["AB"] * 20)
OVIRT = "https://engine.example/ovirt-engine/api"


def ovirt(secret: Mapping[str, str]) -> list[tuple[str, str]]:
    return check_definition(OVIRT, {"user": "admin@internal", "password": "p", **secret})


Check = Callable[[Mapping[str, str]], list[tuple[str, str]]]
CHECKS: list[Check] = [ovirt, check_tls_keys, _trust_problems]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("value", ["yes", "On", "1", "true", "no", "OFF", "0", "false", ""])
def test_the_source_checks_take_every_boolean_word(check: Check, value: str) -> None:
    assert check({"insecureSkipVerify": value}) == []


@pytest.mark.parametrize("check", CHECKS)
def test_the_source_checks_refuse_maybe_at_the_field(check: Check) -> None:
    assert check({"insecureSkipVerify": "maybe"}) == [
        (
            "credentials.insecureSkipVerify",
            "'maybe' is not true or false (use true/false, 1/0, yes/no or on/off)",
        )
    ]


@pytest.mark.parametrize("check", CHECKS)
def test_the_source_checks_take_a_sha1_fingerprint(check: Check) -> None:
    assert check({"fingerprint": SHA1.replace(":", "").lower()}) == []
    assert check({"fingerprint": "ab" * 21}) == [
        (
            "credentials.fingerprint",
            "not a SHA-256 or SHA-1 fingerprint (64 or 40 hex digits, colons optional)",
        )
    ]


def test_kubevirt_still_refuses_yes_with_a_pin() -> None:
    assert _trust_problems({"insecureSkipVerify": "yes", "fingerprint": SHA1}) == [
        ("credentials.insecureSkipVerify", "contradicts the pinned fingerprint: drop one")
    ]


def test_the_api_body_reads_the_flag_alike() -> None:
    assert TlsSpec.model_validate({"insecureSkipVerify": "yes"}).insecure_skip_verify
    assert TlsSpec.model_validate({"insecureSkipVerify": True}).insecure_skip_verify
    assert not TlsSpec.model_validate({"insecureSkipVerify": "off"}).insecure_skip_verify
    assert not TlsSpec.model_validate({}).insecure_skip_verify  # verified by default
    with pytest.raises(ValidationError) as refused:
        TlsSpec.model_validate({"insecureSkipVerify": "maybe"})
    (error,) = refused.value.errors()
    assert error["loc"] == ("insecureSkipVerify",)
    assert "'maybe' is not true or false" in error["msg"]


def test_the_api_body_takes_a_sha1_pin() -> None:
    spec = TlsSpec.model_validate({"fingerprint": SHA1.lower()})
    assert spec.fingerprint == SHA1
    assert spec.secret_keys() == {"fingerprint": SHA1}


def test_a_stored_secret_reads_alike_on_update() -> None:
    assert _tls_of({"insecureSkipVerify": "yes"}).insecure_skip_verify
    assert not _tls_of({"insecureSkipVerify": "no"}).insecure_skip_verify
    with pytest.raises(Invalid) as refused:
        _tls_of({"insecureSkipVerify": "maybe"})
    assert refused.value.status == 422
    ((loc, _, message),) = refused.value.problems
    assert loc == ["body", "tls", "insecureSkipVerify"]
    assert "'maybe' is not true or false" in message
