"""The chart as helm renders it: lint, schema-valid objects for Kubernetes 1.28 to 1.31, and
what the objects must say (hardening, probes, RBAC, settings, routes, replicas)."""

from __future__ import annotations

import base64
import os
import tomllib
from typing import Any

import pytest
import yaml

from services.controller import rbac
from shared import populator as contract
from shared.settings import HoistSettings
from tests.chart import rendering as r
from tests.chart.validating import problems
from tools import chartgen

COMPONENTS = chartgen.components()
SERVICES = chartgen.SERVICES
HOIST_WORKLOADS = {"inventory", "planner", "orchestrator", "progress", "populator-controller"}


def _name(fullname: str, component: str) -> str:
    return f"{fullname}-{'populator-controller' if component == 'controller' else component}"


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deployment = r.named(docs, "Deployment", name)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


@pytest.mark.parametrize("rendering", [None, r.EXTERNAL, r.BUNDLED_EXTRAS])
def test_helm_lint_strict(rendering: dict[str, Any] | None) -> None:
    result = r.helm("lint", "--strict", str(r.CHART), values=rendering)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", r.KUBE_VERSIONS)
@pytest.mark.parametrize("rendering", list(r.RENDERINGS))
def test_every_object_is_valid(rendering: str, version: str) -> None:
    docs = r.objects(rendering)
    assert len(docs) > 30
    found = [p for doc in docs for p in problems(doc, version)]
    assert found == []


def test_the_checks_refuse_what_a_cluster_refuses() -> None:
    """The validation above is not vacuous: an unknown field, a bad type, a bad
    ServiceMonitor and a bad VolumePopulator are each caught."""
    docs = r.objects("default")
    deployment = r.named(docs, "Deployment", "hoist-inventory")
    deployment["spec"]["template"]["spec"]["containers"][0]["surprise"] = True
    assert problems(deployment, "1.30")
    service = r.named(docs, "Service", "hoist-planner")
    service["spec"]["ports"][0]["port"] = "eighty"
    assert problems(service, "1.28")
    populator = r.of_kind(docs, "VolumePopulator")[0]
    populator["sourceKind"]["version"] = "v1"
    assert problems(populator, "1.31")
    monitor = r.of_kind(r.objects("external"), "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["interval"] = "often"
    assert problems(monitor, "1.29")


def test_defaults_render_a_complete_evaluation_install() -> None:
    docs = r.objects("default")
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
        "VolumePopulator",
    ]
    deployments = {d["metadata"]["name"] for d in r.of_kind(docs, "Deployment")}
    assert deployments == {_name("hoist", c) for c in COMPONENTS}
    assert {d["metadata"]["name"] for d in r.of_kind(docs, "StatefulSet")} == {
        "hoist-nats",
        "hoist-postgresql",
    }
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "VolumePopulator") and (
            doc["kind"] != "CustomResourceDefinition"
        ):
            assert doc["metadata"]["namespace"] == r.NAMESPACE, doc["metadata"]
    # Without the VolumePopulator API (a vanilla cluster), "auto" renders none.
    plain = r.template(None)
    assert plain.returncode == 0, plain.stderr
    assert "kind: VolumePopulator" not in plain.stdout


def test_crds_and_volume_populators_are_the_controllers() -> None:
    """What the chart installs is what the controller registers, stamped with the digest it
    compares: a controller starting beside the chart's copies leaves them alone."""
    docs = r.objects("default")
    crds = {d["metadata"]["name"]: d for d in r.of_kind(docs, "CustomResourceDefinition")}
    for crd in contract.crds():
        installed = crds[crd["metadata"]["name"]]
        annotations = installed["metadata"].pop("annotations")
        assert annotations == {contract.DIGEST_ANNOTATION: contract.digest(crd)}
        assert installed == crd
    populators = {d["metadata"]["name"]: d for d in r.of_kind(docs, "VolumePopulator")}
    for vp in contract.volume_populators():
        installed = populators[vp["metadata"]["name"]]
        assert installed["sourceKind"] == vp["sourceKind"]
        digest = installed["metadata"]["annotations"][contract.DIGEST_ANNOTATION]
        assert digest == contract.digest(vp)
        assert installed["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize("rendering", list(r.RENDERINGS))
def test_every_pod_is_hardened(rendering: str) -> None:
    for workload, pod in r.pod_specs(r.objects(rendering)):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, workload
        assert context["runAsUser"] > 0, workload
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert pod["enableServiceLinks"] is False, workload
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, workload
            assert sc["allowPrivilegeEscalation"] is False, workload
            assert sc["runAsNonRoot"] is True, workload
            assert sc["capabilities"] == {"drop": ["ALL"]}, workload
            assert container["resources"]["requests"], workload
            assert container["resources"]["limits"]["memory"], workload
            assert container["livenessProbe"], workload
            assert container["readinessProbe"], workload


@pytest.mark.parametrize("rendering", list(r.RENDERINGS))
def test_hoist_containers_run_their_console_script_with_probes(rendering: str) -> None:
    docs = r.objects(rendering)
    fullname = "mig" if rendering == "external" else "hoist"
    scripts = tomllib.loads((r.ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for component, spec in COMPONENTS.items():
        container = _container(docs, _name(fullname, component))
        assert container["command"] == [spec["command"]]
        assert spec["command"] in scripts
        assert "args" not in container
        assert container["ports"] == [
            {"name": "http", "containerPort": spec["port"], "protocol": "TCP"}
        ]
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts
    controller = r.named(docs, "Deployment", _name(fullname, "controller"))
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"] == {"type": "Recreate"}


def test_images_are_wired() -> None:
    default = r.objects("default")
    chart = yaml.safe_load((r.CHART / "Chart.yaml").read_text())
    project = tomllib.loads((r.ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    image = f"ghcr.io/hoist-io/hoist:{chart['appVersion']}"
    for component in COMPONENTS:
        assert _container(default, _name("hoist", component))["image"] == image
    for component in ("orchestrator", "controller"):
        env = r.env_of(_container(default, _name("hoist", component)))
        assert env["HOIST_ORCHESTRATOR_POPULATOR_IMAGE"]["value"] == image
        assert env["HOIST_ORCHESTRATOR_POPULATOR_PULL_POLICY"]["value"] == "IfNotPresent"
    # The code's own default names the same image: a pod started without the chart agrees.
    assert HoistSettings().orchestrator.populator_image == image
    external = r.objects("external")
    pinned = f"registry.example.com/hoist/hoist@{r.DIGEST}"
    for component in COMPONENTS:
        assert _container(external, _name("mig", component))["image"] == pinned
    env = r.env_of(_container(external, "mig-populator-controller"))
    assert env["HOIST_ORCHESTRATOR_POPULATOR_IMAGE"]["value"] == r.EXTERNAL["populator"]["image"]
    assert env["HOIST_ORCHESTRATOR_POPULATOR_PULL_POLICY"]["value"] == "Always"


def _settings_from(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> HoistSettings:
    """The settings a service reads from this container's environment (Secrets stand-ins)."""
    stand_ins = {
        "HOIST_DATABASE_URL": "postgresql://hoist:pw@db:5432/hoist",
        "HOIST_AUTH_TOKENS": "token-0123456789abcdef",
        "HOIST_NATS_TOKEN": "nats-token-0123456789",
        "HOIST_NATS_PASSWORD": "nats-password",
    }
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("HOIST_")]:
            patch.delenv(name)
        for name, entry in r.env_of(container).items():
            if not name.startswith("HOIST_"):
                continue
            value = entry["value"] if "value" in entry else stand_ins[name]
            patch.setenv(name, value)
        return HoistSettings()


def test_rendered_environment_is_what_the_services_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    default = r.objects("default")
    for component in COMPONENTS:
        settings = _settings_from(_container(default, _name("hoist", component)), monkeypatch)
        assert settings.http.host == "0.0.0.0"  # noqa: S104 (in a pod: every interface)
        assert settings.kube.namespace == r.NAMESPACE
        assert settings.kube.kubeconfig is None
        if component != chartgen.CONSOLE:  # it keeps no state: no NATS
            assert settings.nats.servers == ["nats://hoist-nats.hoist.svc:4222"]
    console = r.env_of(_container(default, "hoist-console"))
    # The console forwards to the release's services, and holds no credential of its own.
    for service in SERVICES:
        url = f"http://hoist-{service}.hoist.svc:{COMPONENTS[service]['port']}"
        assert console[f"HOIST_CONSOLE_{service.upper()}_URL"]["value"] == url
    assert not {n for n in console if n.startswith(("HOIST_NATS", "HOIST_DATABASE", "HOIST_AUTH"))}
    planner = _settings_from(_container(default, "hoist-planner"), monkeypatch)
    assert planner.planner.inventory_url == "http://hoist-inventory.hoist.svc:8101"

    external = r.objects("external")
    orchestrator = _settings_from(_container(external, "mig-orchestrator"), monkeypatch)
    assert orchestrator.orchestrator.workers == 32  # the component's own config
    assert orchestrator.orchestrator.keep_failed is False  # false over the global true
    assert orchestrator.orchestrator.populator_uid == 2000
    assert orchestrator.log.level == "DEBUG"
    assert orchestrator.http.host == "::"
    assert orchestrator.consumer.backoff_seconds == [2.0, 10.0, 30.5]
    assert orchestrator.nats.prefix == "hoist-prod"
    assert orchestrator.nats.user == "hoist"
    assert str(orchestrator.nats.creds_file) == "/etc/hoist/nats-creds/nats.creds"
    assert str(orchestrator.nats.tls_ca_file) == "/etc/hoist/nats-ca/ca.crt"
    assert len(orchestrator.nats.servers) == 2
    controller = _settings_from(_container(external, "mig-populator-controller"), monkeypatch)
    assert controller.orchestrator.keep_failed is True
    assert controller.orchestrator.controller_workers == 16
    assert controller.orchestrator.controller_port == COMPONENTS["controller"]["port"]
    progress = _settings_from(_container(external, "mig-progress"), monkeypatch)
    assert progress.progress.via == "proxy"
    assert progress.progress.replica_ttl_seconds == 12.5
    assert progress.progress.flush_seconds == 0.25
    planner = _settings_from(_container(external, "mig-planner"), monkeypatch)
    assert planner.planner.started_event_bytes == 4194304
    inventory = _settings_from(_container(external, "mig-inventory"), monkeypatch)
    assert inventory.database.pool_size == 4
    assert inventory.orchestrator.workers == 16  # another service's group: not sent there


def test_every_setting_is_wired() -> None:
    """Each HOIST_* variable is set by some rendering, except those that have no meaning in
    a pod; and no rendered HOIST_* name is one the services do not know (a typo)."""
    known = {
        chartgen.env_name(group, name)
        for group, model in chartgen._groups()
        for name in model.model_fields
    }
    rendered: set[str] = set()
    for rendering in r.RENDERINGS:
        for doc in r.of_kind(r.objects(rendering), "Deployment"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                rendered |= {n for n in r.env_of(container) if n.startswith("HOIST_")}
    assert rendered <= known, rendered - known
    never = {
        "HOIST_KUBE_KUBECONFIG",
        "HOIST_KUBE_CONTEXT",
        "HOIST_HTTP_PORT",
        "HOIST_PLANNER_INVENTORY_TOKEN",
        "HOIST_PLANNER_INVENTORY_CA_FILE",
        "HOIST_CONSOLE_CA_FILE",
        # Tests, benchmarks and demos only: production plans set precopyIntervalMinutes.
        "HOIST_ORCHESTRATOR_PRECOPY_INTERVAL_SECONDS",
    }
    assert known - rendered == never


def test_credentials_come_from_secrets() -> None:
    for rendering in r.RENDERINGS:
        for doc in r.of_kind(r.objects(rendering), "Deployment"):
            env = r.env_of(doc["spec"]["template"]["spec"]["containers"][0])
            for name in ("HOIST_DATABASE_URL", "HOIST_AUTH_TOKENS", "HOIST_NATS_PASSWORD"):
                if name in env:
                    assert "secretKeyRef" in env[name]["valueFrom"], (rendering, name)
            if doc["metadata"]["name"].endswith("populator-controller"):
                # No database, no API: the controller gets neither credential.
                assert "HOIST_DATABASE_URL" not in env
                assert "HOIST_AUTH_TOKENS" not in env
    default = r.objects("default")
    secret = r.named(default, "Secret", "hoist")
    assert set(secret["data"]) == {"auth-tokens", "database-url", "nats-token", "postgres-password"}
    external = r.objects("external")
    env = r.env_of(_container(external, "mig-inventory"))
    assert env["HOIST_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "hoist-db-app",
        "key": "uri",
    }
    assert env["HOIST_AUTH_TOKENS"]["valueFrom"]["secretKeyRef"] == {
        "name": "hoist-api-tokens",
        "key": "tokens",
    }
    assert env["HOIST_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "nats-auth",
        "key": "password",
    }
    assert r.named(external, "Secret", "mig")["data"] == {}
    tokens = r.named(r.objects("bundled-extras"), "Secret", "hoist")["data"]["auth-tokens"]
    assert base64.b64decode(tokens).decode() == "first-token-0123456789,second-token-0123456789"


def _rules(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = r.named(docs, kind, name)["rules"]
    return rules


def _bindings(docs: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(s["name"] == account for s in d["subjects"])
    ]


def test_rbac_is_least_privilege() -> None:
    docs = r.objects("default")
    prefix = f"{r.NAMESPACE}-hoist"
    assert _rules(docs, "ClusterRole", f"{prefix}-populator-controller") == (
        rbac.cluster_role_rules()
    )
    for doc in r.of_kind(docs, "ClusterRole") + r.of_kind(docs, "Role"):
        for rule in doc["rules"]:
            assert "*" not in rule["verbs"], doc
            assert "*" not in rule["resources"], doc
            if "secrets" in rule["resources"] and doc["kind"] == "ClusterRole":
                # Cluster-wide Secrets: the orchestrator writes source credentials into
                # target namespaces; the controller reads them there.
                assert doc["metadata"]["name"] in (
                    f"{prefix}-orchestrator-target",
                    f"{prefix}-populator-controller",
                ), doc["metadata"]["name"]
    # The inventory only reads cluster-wide; it writes Secrets in its own namespace only.
    for rule in _rules(docs, "ClusterRole", f"{prefix}-inventory"):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    assert _rules(docs, "Role", "hoist-inventory") == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "create", "update", "delete"],
        }
    ]
    # The planner talks to Kubernetes only to review its callers (auth.kubernetes, on by
    # default), and calls the inventory as itself: reading providers is all it may.
    assert sorted(b["roleRef"]["name"] for b in _bindings(docs, "hoist-planner")) == [
        "hoist-planner-inventory-reader",
        "system:auth-delegator",
    ]
    assert _rules(docs, "Role", "hoist-planner-inventory-reader") == [
        {
            "apiGroups": ["hoist.io"],
            "resources": ["providers", "providers/inventory"],
            "verbs": ["get", "list"],
        }
    ]
    planner = r.named(docs, "Deployment", "hoist-planner")["spec"]["template"]["spec"]
    assert planner["automountServiceAccountToken"] is True
    # Without Kubernetes identities it never talks to Kubernetes: no binding, no token.
    rendered = r.template({"auth": {"kubernetes": False, "static": True}})
    assert rendered.returncode == 0, rendered.stderr
    static = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert _bindings(static, "hoist-planner") == []
    planner = r.named(static, "Deployment", "hoist-planner")["spec"]["template"]["spec"]
    assert planner["automountServiceAccountToken"] is False
    for account in r.of_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    # By default the orchestrator may work in every namespace ...
    target = [b["kind"] for b in _bindings(docs, "hoist-orchestrator")]
    assert sorted(target) == ["ClusterRoleBinding"] * 3 + ["RoleBinding"]

    # ... and with rbac.targetNamespaces only in those.
    external = r.objects("external")
    bindings = _bindings(external, "mig-orchestrator")
    scoped = [
        b for b in bindings if b["roleRef"]["name"] == f"{r.NAMESPACE}-mig-orchestrator-target"
    ]
    assert sorted(b["metadata"]["namespace"] for b in scoped) == r.TARGETS
    assert {b["kind"] for b in scoped} == {"RoleBinding"}


def test_ingress_serves_every_route_of_every_service() -> None:
    ingress = r.of_kind(r.objects("external"), "Ingress")[0]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "hoist-tls", "hosts": ["hoist.example.com"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hoist.example.com"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    # The APIs to their services, the pages (/ui) to the console.
    expected = {
        route: c for c in (*SERVICES, chartgen.CONSOLE) for route in COMPONENTS[c]["routes"]
    }
    assert set(paths) == set(expected)
    for route, component in expected.items():
        assert paths[route]["pathType"] == "Prefix"
        assert paths[route]["backend"]["service"] == {
            "name": f"mig-{component}",
            "port": {"name": "http"},
        }
    services = {s["metadata"]["name"]: s for s in r.of_kind(r.objects("external"), "Service")}
    for component in SERVICES:
        assert services[f"mig-{component}"]["spec"]["ports"][0]["name"] == "http"
    # Without a host, any host.
    bundled = r.of_kind(r.objects("bundled-extras"), "Ingress")[0]
    assert "host" not in bundled["spec"]["rules"][0]


def test_replicated_services_get_a_budget_and_spread() -> None:
    docs = r.objects("external")
    budgets = {p["metadata"]["name"]: p for p in r.of_kind(docs, "PodDisruptionBudget")}
    # planner: 1 replica, no budget; the controller never has one.
    assert set(budgets) == {"mig-inventory", "mig-orchestrator", "mig-progress", "mig-console"}
    for name, budget in budgets.items():
        assert budget["spec"]["maxUnavailable"] == 1
        deployment = r.named(docs, "Deployment", name)
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [s["topologyKey"] for s in spread] == [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        ]
        for constraint in spread:
            assert constraint["whenUnsatisfiable"] == "DoNotSchedule"
            assert constraint["labelSelector"] == deployment["spec"]["selector"]
    for name in ("mig-planner", "mig-populator-controller"):
        pod = r.named(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert "topologySpreadConstraints" not in pod
    assert r.named(docs, "Deployment", "mig-progress")["spec"]["replicas"] == 4
    off = r.objects("bundled-extras")
    assert r.of_kind(off, "PodDisruptionBudget") == []
    for _, pod in r.pod_specs(off):
        assert "topologySpreadConstraints" not in pod


def test_service_monitor_scrapes_every_component() -> None:
    docs = r.objects("external")
    (monitor,) = r.of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]
    scraped = [
        s
        for s in r.of_kind(docs, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector["matchLabels"].items())
        and all(
            s["metadata"]["labels"].get(e["key"]) in e["values"]
            for e in selector["matchExpressions"]
        )
    ]
    assert {s["metadata"]["name"] for s in scraped} == {_name("mig", c) for c in COMPONENTS}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert r.of_kind(r.objects("default"), "ServiceMonitor") == []


def test_network_policies() -> None:
    docs = r.objects("external")
    policies = {p["metadata"]["name"]: p for p in r.of_kind(docs, "NetworkPolicy")}
    # External NATS and PostgreSQL: nothing of theirs to protect here. Egress and the
    # populators' policies: tests/chart/test_networkpolicy.py.
    assert {n for n in policies if not n.endswith("-egress")} == {
        "mig-api",
        "mig-populator-controller",
        "mig-populators",
    }
    api = policies["mig-api"]["spec"]
    assert api["policyTypes"] == ["Ingress"]
    peers = [peer for rule in api["ingress"] for peer in rule.get("from", [])]
    assert r.EXTERNAL["networkPolicy"]["apiFrom"][0] in peers
    assert r.EXTERNAL["networkPolicy"]["metricsFrom"][0] in peers
    assert all("from" in rule for rule in api["ingress"])
    bundled = {
        p["metadata"]["name"]: p for p in r.of_kind(r.objects("bundled-extras"), "NetworkPolicy")
    }
    assert {n for n in bundled if not n.endswith("-egress")} == {
        "hoist-api",
        "hoist-populator-controller",
        "hoist-nats",
        "hoist-postgresql",
    }
    postgres = bundled["hoist-postgresql"]["spec"]["ingress"]
    # Only the release's own pods reach the database.
    assert postgres == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "hoist",
                            "app.kubernetes.io/instance": r.RELEASE,
                        }
                    }
                }
            ],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        }
    ]


def test_notes_say_where_the_api_is_and_how_to_get_a_token() -> None:
    result = r.helm(
        "install", r.RELEASE, str(r.CHART), "--namespace", r.NAMESPACE, "--dry-run=client"
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "http://hoist-inventory.hoist.svc:8101" in notes
    assert "port-forward svc/hoist-inventory 8101:8101" in notes
    assert "kubectl -n hoist get secret hoist -o jsonpath='{.data.auth-tokens}'" in notes
    assert "evaluation only" in notes
    result = r.helm(
        "install",
        r.RELEASE,
        str(r.CHART),
        "--namespace",
        r.NAMESPACE,
        "--dry-run=client",
        values=r.EXTERNAL,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "export HOIST_URL=https://hoist.example.com" in notes
    for component in SERVICES:
        for route in COMPONENTS[component]["routes"]:
            assert f"$HOIST_URL{route}" in notes
    assert "get secret hoist-api-tokens -o jsonpath='{.data.tokens}'" in notes
    assert "evaluation only" not in notes
