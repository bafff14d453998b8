"""values.schema.json: it accepts the chart's defaults and the tested value sets, and helm
refuses bad values before rendering anything; the generated parts of the chart are current."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart import rendering as r
from tools import chartgen

SCHEMA = json.loads((r.CHART / "values.schema.json").read_text())


def test_generated_chart_files_are_current() -> None:
    assert chartgen.stale() == [], "run `python -m tools.chartgen`"


def test_defaults_satisfy_the_schema() -> None:
    defaults = yaml.safe_load((r.CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(defaults)


def test_the_schema_knows_every_config_value() -> None:
    """Every setting of shared/settings.py that is a chart value is in the schema (and only
    those), with the bounds the services enforce."""
    config = SCHEMA["definitions"]["config"]["properties"]
    in_schema = {(g, k) for g, body in config.items() for k in body["properties"]}
    expected = {(g, chartgen.camel(f)) for g, f, _ in chartgen.config_fields()}
    assert in_schema == expected
    assert config["database"]["properties"]["poolSize"]["minimum"] == 1
    assert config["progress"]["properties"]["via"]["enum"] == ["auto", "direct", "proxy"]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level value", {"replicas": 3}, "additional properties 'replicas'"),
    ("typo in a component", {"inventory": {"replica": 2}}, "additional properties 'replica'"),
    ("negative replicas", {"planner": {"replicas": -1}}, "/planner/replicas"),
    ("log level", {"config": {"log": {"level": "verbose"}}}, "/config/log/level"),
    ("below a setting's bound", {"config": {"database": {"poolSize": 0}}}, "poolSize"),
    ("above a setting's bound", {"config": {"progress": {"scrapeSeconds": 301}}}, "scrapeSeconds"),
    ("pattern of a setting", {"config": {"nats": {"prefix": "Hoist_Prod"}}}, "/config/nats/prefix"),
    (
        "a chart-managed setting in config",
        {"config": {"orchestrator": {"populatorImage": "x:1"}}},
        "populatorImage",
    ),
    (
        "a component's config is checked too",
        {"orchestrator": {"config": {"orchestrator": {"workers": 0}}}},
        "/orchestrator/config/orchestrator/workers",
    ),
    ("string for a number", {"config": {"outbox": {"batchSize": "many"}}}, "batchSize"),
    ("no external NATS URL", {"nats": {"bundled": {"enabled": False}}}, "/nats/external/url"),
    (
        "no external database",
        {"postgresql": {"bundled": {"enabled": False}}},
        "/postgresql/external",
    ),
    (
        "a URL beside the bundled server",
        {"postgresql": {"external": {"url": "postgresql://h/db"}}},
        "/postgresql/external/url",
    ),
    (
        "not a NATS URL",
        {"nats": {"bundled": {"enabled": False}, "external": {"url": "http://n"}}},
        "url",
    ),
    ("short token", {"auth": {"tokens": ["secret"]}}, "/auth/tokens/0"),
    ("bad digest", {"image": {"digest": "sha256:1234"}}, "/image/digest"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("root user", {"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ("listen address", {"listenHost": "localhost"}, "/listenHost"),
    (
        "TLS without a Secret",
        {"ingress": {"enabled": True, "tls": {"enabled": True}}},
        "secretName",
    ),
    ("bad namespace", {"rbac": {"targetNamespaces": ["VMs"]}}, "/rbac/targetNamespaces/0"),
    ("bad quantity", {"inventory": {"resources": {"limits": {"memory": "1 GB"}}}}, "memory"),
    ("bad duration", {"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    ("bad volumePopulators", {"volumePopulators": True}, "/volumePopulators"),
    ("empty peer", {"networkPolicy": {"apiFrom": [{}]}}, "/networkPolicy/apiFrom/0"),
]


@pytest.mark.parametrize(("values", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    result = r.template(values)
    assert result.returncode != 0, f"accepted: {values}"
    assert "don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


def test_ids_may_be_left_to_the_platform() -> None:
    """OpenShift's restricted SCCs assign uids: with the ids null, none is set, and the pods
    still refuse to run as root."""
    ids = {"runAsUser": None, "runAsGroup": None, "fsGroup": None}
    result = r.template({"securityContext": ids})
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for workload, pod in r.pod_specs(docs):
        if workload.endswith("postgresql"):
            continue  # the official image's own user (see docs/helm.md, OpenShift)
        assert "runAsUser" not in pod["securityContext"], workload
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_what_the_schema_cannot_say_the_templates_refuse() -> None:
    """JetStream replicas above 1 need a NATS cluster, which the bundled server is not."""
    result = r.template({"config": {"nats": {"streamReplicas": 3}}})
    assert result.returncode != 0
    assert "the bundled server is a single node" in result.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"postgresql": {"bundled": {"enabled": False}, "external": {"url": "postgres://h/d"}}},
        {"nats": {"bundled": {"enabled": False}, "external": {"url": "nats://a:4222, nats://b"}}},
        {"auth": {"tokens": ["x" * 16]}, "config": {"auth": {"disabled": True}}},
        {"inventory": {"replicas": 0}, "config": {"progress": {"replicaTtlSeconds": None}}},
        {
            "image": {"tag": "0.1.0-rc.1"},
            "populator": {"image": "quay.io/me/hoist@sha256:" + "0" * 64},
        },
    ],
    ids=["database url", "nats urls", "auth disabled", "unset values", "images"],
)
def test_good_values_are_accepted(values: dict[str, Any]) -> None:
    result = r.template(values)
    assert result.returncode == 0, result.stderr
