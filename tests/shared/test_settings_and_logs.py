"""Settings from the environment, and structured logs that never show a secret."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from shared import logs
from shared.settings import HoistSettings, LogSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("HOIST_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = HoistSettings()
    assert s.nats.url == "nats://127.0.0.1:4222"
    assert s.nats.prefix == "hoist"
    assert s.auth.tokens == []
    assert s.auth.disabled is False
    assert s.database.url.get_secret_value().startswith("postgresql+asyncpg://")


def test_flat_names_reach_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_NATS_URL", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("HOIST_DATABASE_URL", "postgresql://hoist:s3cret@db:5432/hoist")
    monkeypatch.setenv("HOIST_DATABASE_POOL_SIZE", "25")
    monkeypatch.setenv("HOIST_AUTH_TOKENS", "one, two")
    monkeypatch.setenv("HOIST_CONSUMER_BACKOFF_SECONDS", "[1, 2.5]")
    monkeypatch.setenv("HOIST_LOG_LEVEL", "debug")
    s = HoistSettings()
    assert s.nats.servers == ["nats://a:4222", "nats://b:4222"]
    # Plain postgresql:// is what people paste; the async driver is implied.
    assert s.database.url.get_secret_value() == "postgresql+asyncpg://hoist:s3cret@db:5432/hoist"
    assert s.database.pool_size == 25
    assert [t.get_secret_value() for t in s.auth.tokens] == ["one", "two"]
    assert s.consumer.backoff_seconds == [1.0, 2.5]
    assert s.log.level == "DEBUG"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_DATABASE_URL", "postgresql://hoist:s3cret@db/hoist")
    monkeypatch.setenv("HOIST_AUTH_TOKENS", "tok-XYZ")
    monkeypatch.setenv("HOIST_NATS_PASSWORD", "natspw")
    s = HoistSettings()
    shown = repr(s) + str(s) + s.model_dump_json()
    for secret in ("s3cret", "tok-XYZ", "natspw"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("HOIST_DATABASE_POOL_SIZE", "0", "database.pool_size"),
        ("HOIST_NATS_PREFIX", "Has.Dots", "nats.prefix"),
        ("HOIST_LOG_LEVEL", "chatty", "log.level"),
        ("HOIST_HTTP_PORT", "70000", "http.port"),
    ],
)
def test_bad_values_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        HoistSettings()
    assert field in str(info.value)


def test_json_logs_carry_correlation_ids(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("planner", LogSettings(level="INFO", format="json"))
    log = logging.getLogger("hoist.test")
    with logs.bound(plan_id="p1", vm_id="vm-9"):
        log.info("step %s", "DiskTransfer", extra={"attempt": 2})
        with logs.bound(disk_id="d1"):
            log.warning("slow disk")
    log.info("outside")
    lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["message"] == "step DiskTransfer"
    assert lines[0]["service"] == "planner"
    assert (lines[0]["plan_id"], lines[0]["vm_id"], lines[0]["attempt"]) == ("p1", "vm-9", 2)
    assert lines[1]["disk_id"] == "d1"
    assert lines[1]["level"] == "warning"
    assert "plan_id" not in lines[2]


def test_exceptions_are_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("progress", LogSettings(level="INFO", format="json"))
    try:
        raise RuntimeError("scrape failed")
    except RuntimeError:
        logging.getLogger("hoist.test").exception("oops")
    (line,) = capsys.readouterr().err.strip().splitlines()
    entry = json.loads(line)
    assert "RuntimeError: scrape failed" in entry["error"]
