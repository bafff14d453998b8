"""Running the real helm (from ``.venv/bin``) on ``charts/hoist``, and the value sets tested.

Three renderings cover the chart: the defaults (what ``helm install`` with no values does),
``EXTERNAL`` (production shape: external NATS and PostgreSQL through Secrets you manage,
ingress, monitoring, network policies, target namespaces, every override a component
takes), and ``BUNDLED_EXTRAS`` (the evaluation servers with the optional objects that exist
only beside them: their NetworkPolicies).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hoist"
BIN = Path(sys.executable).parent
HELM = BIN / "helm"
KUBECTL = BIN / "kubectl"
RELEASE, NAMESPACE = "hoist", "hoist"
KUBE_VERSIONS = ("1.28", "1.29", "1.30", "1.31")
VOLUME_POPULATOR_API = "populator.storage.k8s.io/v1beta1/VolumePopulator"

Obj = dict[str, Any]

DIGEST = "sha256:" + "ab" * 32
TARGETS = ["vms-a", "vms-b"]

EXTERNAL: Obj = {
    "fullnameOverride": "mig",
    "image": {"repository": "registry.example.com/hoist/hoist", "digest": DIGEST},
    "imagePullSecrets": [{"name": "registry-creds"}],
    "populator": {"image": "mirror.example.com/hoist/hoist:0.1.0", "pullPolicy": "Always"},
    "auth": {"existingSecret": "hoist-api-tokens", "existingSecretKey": "tokens"},
    "nats": {
        "bundled": {"enabled": False},
        "external": {
            "url": "tls://nats-0.nats.messaging:4222,tls://nats-1.nats.messaging:4222",
            "user": "hoist",
            "existingSecret": "nats-auth",
            "existingSecretPasswordKey": "password",
            "credsSecret": "nats-creds",
            "tlsCaSecret": "nats-ca",
        },
    },
    "postgresql": {
        "bundled": {"enabled": False},
        "external": {"existingSecret": "hoist-db-app", "existingSecretKey": "uri"},
    },
    "inventory": {
        "replicas": 3,
        "config": {"database": {"poolSize": 4}},
        "nodeSelector": {"node-role.kubernetes.io/infra": ""},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "platform"},
    },
    "planner": {"replicas": 1},
    "orchestrator": {
        "replicas": 2,
        # false and numbers over the global values: a component's config wins key by key.
        "config": {"orchestrator": {"workers": 32, "keepFailed": False}},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                            ]
                        }
                    ]
                }
            }
        },
    },
    "progress": {"replicas": 4, "resources": {"requests": {"cpu": "1", "memory": "512Mi"}}},
    "controller": {"config": {"orchestrator": {"controllerWorkers": 16}}},
    "config": {
        "log": {"level": "DEBUG", "format": "text"},
        "nats": {"prefix": "hoist-prod", "streamReplicas": 3},
        "orchestrator": {"keepFailed": True, "populatorUid": 2000},
        "progress": {"via": "proxy", "replicaTtlSeconds": 12.5, "flushSeconds": 0.25},
        "planner": {"startedEventBytes": 4194304},
        "consumer": {"backoffSeconds": [2, 10, 30.5]},
        "http": {"shutdownGraceSeconds": 40.5},
    },
    "podLabels": {"example.com/cost-center": "migration"},
    "priorityClassName": "hoist-critical",
    "listenHost": "::",
    "probes": {"periodSeconds": 5, "startupSeconds": 300},
    "topologySpread": {"whenUnsatisfiable": "DoNotSchedule", "maxSkew": 2},
    "securityContext": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000},
    "serviceAccount": {"annotations": {"example.com/role": "hoist"}},
    "rbac": {"targetNamespaces": TARGETS},
    "volumePopulators": "always",
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "hoist.example.com",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "tls": {"enabled": True, "secretName": "hoist-tls"},
    },
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    "networkPolicy": {
        "enabled": True,
        "apiFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
}

BUNDLED_EXTRAS: Obj = {
    "auth": {"tokens": ["first-token-0123456789", "second-token-0123456789"]},
    "nats": {"bundled": {"persistence": {"enabled": False}}},
    "postgresql": {"bundled": {"persistence": {"storageClass": "standard"}, "maxConnections": 500}},
    "ingress": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "podDisruptionBudget": {"enabled": False},
    "topologySpread": {"enabled": False},
}

RENDERINGS: dict[str, Obj | None] = {
    "default": None,
    "external": EXTERNAL,
    "bundled-extras": BUNDLED_EXTRAS,
}


def helm_env(home: Path) -> dict[str, str]:
    """Helm's config, cache and data under ``home``: no test reads or writes ~/.config/helm."""
    return {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": str(BIN),
    }


def helm(*args: str, values: Obj | None = None) -> subprocess.CompletedProcess[str]:
    """``helm args...`` (with ``-f values.yaml`` when values are given); never raises."""
    with tempfile.TemporaryDirectory(prefix="hoist-helm-") as tmp:
        extra: list[str] = []
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            extra = ["-f", str(path)]
        return subprocess.run(
            [str(HELM), *args, *extra],
            capture_output=True,
            text=True,
            env=helm_env(Path(tmp)),
            timeout=60,
            check=False,
        )


def template(values: Obj | None, *flags: str) -> subprocess.CompletedProcess[str]:
    return helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *flags, values=values)


@cache
def _rendered(name: str) -> str:
    flags = ["--include-crds"]
    if name == "default":
        # What helm install does on a cluster serving the VolumePopulator API.
        flags += ["--api-versions", VOLUME_POPULATOR_API]
    result = template(RENDERINGS[name], *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


def manifest(name: str) -> str:
    """The YAML stream ``helm template`` renders for one of ``RENDERINGS``."""
    return _rendered(name)


@cache
def _parsed(name: str) -> list[Obj]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(_rendered(name), Loader=loader) if doc]


def objects(name: str) -> list[Obj]:
    """Its objects (fresh copies: callers may change them)."""
    return copy.deepcopy(_parsed(name))


def of_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Obj], kind: str, name: str) -> Obj:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[Obj]) -> list[tuple[str, Obj]]:
    """(workload name, pod spec) of every Deployment and StatefulSet."""
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env") or []}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
