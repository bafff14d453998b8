"""kubectl's own review commands against the simulated cluster: `auth can-i` (and `--list`),
`auth whoami` and `create token` send their reviews as protobuf through the typed client,
so this is what proves the review kinds' field tables and the decoding in reviews.serve."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sim.kube.cluster import Cluster
from sim.kube.config import ClusterConfig
from sim.kube.protobuf import MAGIC, MEDIA_TYPE
from tests.sim.kube.test_kubectl import kubectl
from tests.sim.kube.test_rbac import API_ONLY, http


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(ClusterConfig(storage_root=tmp_path / "v", disabled=API_ONLY)) as cluster:
        yield cluster


async def test_auth_commands_of_a_service_account(sim: Cluster, tmp_path: Path) -> None:
    admin = sim.kubeconfig(tmp_path / "admin")
    await kubectl(admin, "create", "namespace", "audit")
    await kubectl(admin, "create", "serviceaccount", "reader", "-n", "audit")
    await kubectl(
        admin, "create", "role", "pods", "-n", "audit", "--verb=get,list", "--resource=pods"
    )
    await kubectl(
        admin,
        "create",
        "rolebinding",
        "pods",
        "-n",
        "audit",
        "--role=pods",
        "--serviceaccount=audit:reader",
    )

    # A TokenRequest with a duration: a pointer field whose value must survive the decoding.
    _, out = await kubectl(admin, "create", "token", "reader", "-n", "audit", "--duration=2h")
    token = out.strip()
    assert token.count(".") == 2, out  # a JWT, not an error message
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 7200
    user = sim.kubeconfig(tmp_path / "user", token=token)
    _, out = await kubectl(user, "get", "pods", "-n", "audit")  # the API server accepts it
    async with http(sim, sim.config.token) as client:
        review = await client.post(
            "/apis/authentication.k8s.io/v1/tokenreviews", json={"spec": {"token": token}}
        )
    assert review.json()["status"]["user"]["username"] == "system:serviceaccount:audit:reader"

    # SelfSubjectAccessReview: yes (exit 0) inside the Role's namespace, no (exit 1) elsewhere
    # and for a verb or subresource the Role does not grant.
    rc, out = await kubectl(user, "auth", "can-i", "list", "pods", "-n", "audit", check=False)
    assert (rc, out.strip()) == (0, "yes")
    for args in (
        ("list", "pods", "-n", "default"),
        ("delete", "pods", "-n", "audit"),
        ("get", "pods", "--subresource=log", "-n", "audit"),
    ):
        rc, out = await kubectl(user, "auth", "can-i", *args, check=False)
        assert (rc, out.strip()) == (1, "no"), args
    # SelfSubjectRulesReview: the Role's rule and the bootstrap discovery rules.
    _, out = await kubectl(user, "auth", "can-i", "--list", "-n", "audit")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["pods", "[]", "[]", "[get", "list]"] in rows, out
    assert any(row[0] == "selfsubjectaccessreviews.authorization.k8s.io" for row in rows), out

    # SelfSubjectReview.
    _, out = await kubectl(user, "auth", "whoami", "-o", "json")
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:audit:reader"
    assert "system:serviceaccounts:audit" in info["groups"]
    _, out = await kubectl(user, "auth", "whoami")
    assert "system:serviceaccount:audit:reader" in out

    # Impersonation: the admin asking as the account gets the account's answers, and the
    # account, which may not impersonate, is refused as the API server refuses it.
    as_reader = ("--as=system:serviceaccount:audit:reader",)
    rc, out = await kubectl(admin, *as_reader, "auth", "can-i", "delete", "pods", check=False)
    assert (rc, out.strip()) == (1, "no")
    rc, out = await kubectl(admin, *as_reader, "auth", "can-i", "list", "pods", "-n", "audit")
    assert (rc, out.strip()) == (0, "yes")
    _, out = await kubectl(admin, *as_reader, "auth", "whoami", "-o", "json")
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:audit:reader"
    assert "system:serviceaccounts:audit" in info["groups"]
    _, out = await kubectl(admin, "--as=jane", "--as-group=ops", "auth", "whoami", "-o", "json")
    info = json.loads(out)["status"]["userInfo"]
    assert (info["username"], info["groups"]) == ("jane", ["ops", "system:authenticated"])
    rc, out = await kubectl(user, "--as=kubernetes-admin", "get", "pods", check=False)
    assert rc == 1
    assert (
        'users "kubernetes-admin" is forbidden: User "system:serviceaccount:audit:reader" '
        'cannot impersonate resource "users" in API group "" at the cluster scope'
    ) in out


async def test_protobuf_review_bodies(sim: Cluster) -> None:
    """A protobuf body is read for what its envelope says it is, which must be the route's kind;
    a SubjectAccessReview's extra (a map of ExtraValue messages) comes back as string lists."""
    envelope = _unknown("authentication.k8s.io/v1", "SelfSubjectReview", b"")
    paths = "/healthz", "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    async with http(sim, sim.config.token) as client:
        answer = await client.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            content=envelope,
            headers={"content-type": MEDIA_TYPE},
        )
        assert answer.status_code == 400, answer.text
        assert "does not match the expected kind (SelfSubjectAccessReview)" in answer.text
        answer = await client.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            content=envelope,
            headers={"content-type": MEDIA_TYPE},
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"]["userInfo"]["username"]

        extra = _field(1, b"scopes") + _field(2, _field(1, b"a") + _field(1, b"b"))
        spec = (
            _field(2, _field(1, paths[0].encode()) + _field(2, b"get"))
            + _field(3, b"alice")
            + _field(4, b"system:authenticated")
            + _field(5, extra)
        )
        sar = _unknown("authorization.k8s.io/v1", "SubjectAccessReview", _field(2, spec))
        answer = await client.post(paths[1], content=sar, headers={"content-type": MEDIA_TYPE})
    assert answer.status_code == 201, answer.text
    review = answer.json()
    assert review["spec"]["extra"] == {"scopes": ["a", "b"]}
    assert review["spec"]["nonResourceAttributes"] == {"path": "/healthz", "verb": "get"}
    assert review["status"]["allowed"] is True  # system:public-info-viewer


def _field(number: int, value: bytes) -> bytes:
    assert len(value) < 128  # a one-byte length is all these bodies need
    return bytes([number << 3 | 2, len(value)]) + value


def _unknown(api_version: str, kind: str, raw: bytes) -> bytes:
    """A runtime.Unknown envelope carrying that kind's message."""
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return MAGIC + _field(1, type_meta) + _field(2, raw)
