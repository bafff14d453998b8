"""The simulator's identities and RBAC, through kubectl and raw HTTP as a user meets them:
ServiceAccount tokens, Roles and bindings enforced on every request with the real 403,
ClusterRole aggregation, and the review APIs behind ``kubectl auth can-i`` / ``whoami``."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from tests.sim.kube.test_kubectl import kubectl

API_ONLY = frozenset({"provisioner", "binder", "scheduler", "kubelet", "storageprofiles"})
RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(ClusterConfig(storage_root=tmp_path / "v", disabled=API_ONLY)) as cluster:
        yield cluster


def written(tmp_path: Path, obj: dict[str, Any]) -> str:
    """A manifest file for ``kubectl -f`` (JSON is YAML)."""
    path = tmp_path / f"{obj.get('kind', 'body')}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(obj))
    return str(path)


def http(cluster: Cluster, token: str) -> httpx.AsyncClient:
    trust = ssl.create_default_context(cafile=str(cluster.server.cert.ca_file))
    return httpx.AsyncClient(
        base_url=cluster.url, verify=trust, headers={"Authorization": f"Bearer {token}"}
    )


async def can_i(cluster: Cluster, token: str, verb: str, resource: str, ns: str) -> bool:
    """What ``kubectl auth can-i`` asks, in JSON (kubectl itself sends protobuf: see
    test_kubectl_auth)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "verb": verb,
                "namespace": ns,
                "resource": resource.split("/")[0],
                "subresource": resource.partition("/")[2],
            }
        },
    }
    async with http(cluster, token) as client:
        answer = await client.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review
        )
    assert answer.status_code == 201, answer.text
    allowed: bool = answer.json()["status"]["allowed"]
    return allowed


async def test_service_account_is_refused_until_a_role_is_bound(
    sim: Cluster, tmp_path: Path
) -> None:
    admin = sim.kubeconfig(tmp_path / "admin")
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "reader", "namespace": "hoist"},
    }
    rc, out = await kubectl(admin, "apply", "-f", written(tmp_path, account), check=False)
    assert rc == 0, out
    # What `kubectl create token reader` does, in JSON (kubectl's protobuf: test_kubectl_auth).
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    path = "/api/v1/namespaces/hoist/serviceaccounts/reader/token"
    rc, out = await kubectl(
        admin, "create", "--raw", path, "-f", written(tmp_path, request), check=False
    )
    assert rc == 0, out
    token = json.loads(out)["status"]["token"]
    user = sim.kubeconfig(tmp_path / "user", token=token)

    rc, out = await kubectl(user, "get", "pods", "-n", "hoist", check=False)
    assert rc == 1
    assert (
        'pods is forbidden: User "system:serviceaccount:hoist:reader" cannot list resource '
        '"pods" in API group "" in the namespace "hoist"'
    ) in out
    assert not await can_i(sim, token, "list", "pods", "hoist")

    role = {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {"name": "pods", "namespace": "hoist"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": "pods", "namespace": "hoist"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "hoist"}],
    }
    for obj in (role, binding):
        rc, out = await kubectl(admin, "apply", "-f", written(tmp_path, obj), check=False)
        assert rc == 0, out
    rc, out = await kubectl(user, "get", "pods", "-n", "hoist", check=False)
    assert rc == 0, out
    assert await can_i(sim, token, "list", "pods", "hoist")
    # A Role grants in its namespace only; the subresource needs its own rule.
    assert not await can_i(sim, token, "list", "pods", "default")
    assert not await can_i(sim, token, "get", "pods/log", "hoist")
    async with http(sim, token) as client:  # kubectl auth whoami
        who = await client.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={})
    assert who.json()["status"]["userInfo"]["username"] == "system:serviceaccount:hoist:reader"

    # The token dies with its ServiceAccount, even when one of the same name comes back.
    rc, out = await kubectl(admin, "delete", "serviceaccount", "reader", "-n", "hoist", check=False)
    assert rc == 0, out
    rc, out = await kubectl(admin, "apply", "-f", written(tmp_path, account), check=False)
    assert rc == 0, out
    rc, out = await kubectl(user, "get", "pods", "-n", "hoist", check=False)
    assert rc == 1
    assert "Unauthorized" in out


async def test_aggregation_and_the_review_apis(sim: Cluster) -> None:
    token = sim.service_account_token("hoist", "viewer")
    # Bound to the bootstrap "view" role: widened by aggregating a role labelled for it.
    async with http(sim, sim.config.token) as admin:
        crb = {
            "metadata": {"name": "viewer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "hoist"}],
        }
        url = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        assert (await admin.post(url, json=crb)).status_code == 201
        async with http(sim, token) as viewer:
            assert (await viewer.get("/api/v1/namespaces/hoist/pods")).status_code == 200
            listed = await viewer.get("/api/v1/namespaces/hoist/secrets")
            assert listed.status_code == 403
            status = listed.json()
            assert status["reason"] == "Forbidden"
            assert status["details"] == {"group": "", "kind": "secrets"}
            extra = {
                "metadata": {
                    "name": "secrets-view",
                    "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
                },
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            }
            url = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
            assert (await admin.post(url, json=extra)).status_code == 201
            assert (await viewer.get("/api/v1/namespaces/hoist/secrets")).status_code == 200

            review = await admin.post(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                },
            )
            assert review.status_code == 201
            user: dict[str, Any] = review.json()["status"]["user"]
            assert user["username"] == "system:serviceaccount:hoist:viewer"
            assert "system:serviceaccounts:hoist" in user["groups"]
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            bad = await admin.post(
                "/apis/authentication.k8s.io/v1/tokenreviews", json={"spec": {"token": forged}}
            )
            assert bad.json()["status"]["authenticated"] is False

            sar = {
                "spec": {
                    "user": user["username"],
                    "groups": user["groups"],
                    "resourceAttributes": {
                        "namespace": "hoist",
                        "verb": "delete",
                        "resource": "pods",
                    },
                }
            }
            url = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            assert (await admin.post(url, json=sar)).json()["status"]["allowed"] is False
            sar["spec"]["resourceAttributes"]["verb"] = "get"
            decided = (await admin.post(url, json=sar)).json()["status"]
            assert decided["allowed"] is True
            assert 'ClusterRoleBinding "viewer" of ClusterRole "view"' in decided["reason"]
            # A protobuf envelope of no kind the simulator knows is refused plainly.
            binary = await viewer.post(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                content=b"k8s\x00",
                headers={"content-type": "application/vnd.kubernetes.protobuf"},
            )
            assert binary.status_code == 415
            assert "send application/json" in binary.json()["message"]
            # Only who may create SubjectAccessReviews asks about others.
            asked = await viewer.post(url, json=sar)
            assert asked.status_code == 403
            assert 'cannot create resource "subjectaccessreviews"' in asked.json()["message"]
