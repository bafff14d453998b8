"""The review APIs: TokenReview, SubjectAccessReview and its local and self forms,
SelfSubjectRulesReview, SelfSubjectReview (``kubectl auth whoami``), and TokenRequest
(``kubectl create token``).

They are create-only virtual resources: nothing is stored, the answer is the request with
its ``status`` filled in, as the real API server answers them. Hoist's services call
TokenReview and SubjectAccessReview to decide who may use their APIs.
"""

from __future__ import annotations

import datetime
from typing import Any

from sim.kube import protobuf
from sim.kube.authn import Identity
from sim.kube.errors import ApiError, bad_request
from sim.kube.kinds import Kind
from sim.kube.rbac import Attributes
from sim.kube.routing import Route, decode, respond
from sim.kube.store import encode

AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
Obj = dict[str, Any]

KINDS = [
    Kind(AUTHN, "v1", "TokenReview", "tokenreviews", False),
    Kind(AUTHN, "v1", "SelfSubjectReview", "selfsubjectreviews", False),
    Kind(AUTHZ, "v1", "SubjectAccessReview", "subjectaccessreviews", False),
    Kind(AUTHZ, "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
    Kind(AUTHZ, "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
    Kind(AUTHZ, "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
]
PLURALS = {(k.group, k.plural) for k in KINDS}


def is_review(kind: Kind, route: Route) -> bool:
    """A review API, or a ServiceAccount's TokenRequest: served here, never stored."""
    token = kind.plural == "serviceaccounts" and route.subresource == "token"
    return token or (kind.group, kind.plural) in PLURALS


async def serve(
    cluster: Any,
    send: Any,
    method: str,
    kind: Kind,
    route: Route,
    user: Identity,
    body: bytes,
    headers: dict[str, str],
) -> None:
    """Authorize ``create`` on the review (or ``serviceaccounts/token``), then answer it."""
    if method != "POST" or (route.name and route.subresource != "token"):
        refused = f"the server does not allow this method on the requested resource ({method})"
        raise ApiError(405, "MethodNotAllowed", refused)
    ns = route.namespace or ""
    attrs = Attributes(
        "create", kind.group, kind.plural, route.subresource or "", route.name or "", ns
    )
    cluster.authz.check(user, attrs)
    content_type = headers.get("content-type", "")
    if protobuf.is_protobuf(content_type):
        # kubectl's typed client (auth can-i, auth whoami, create token) sends these as
        # protobuf; the answer stays JSON, which client-go accepts whatever it sent.
        request: Any = protobuf.decode_object(body, kind)
        expected = "TokenRequest" if route.subresource == "token" else kind.kind
        if request.get("kind") != expected:
            raise bad_request(
                f"the kind in the data ({request.get('kind')}) does not match the expected "
                f"kind ({expected})"
            )
    else:
        request = decode(body, content_type)
    if route.subresource == "token":
        assert route.name is not None
        await respond(send, 201, encode(token_request(cluster, ns, route.name, request)))
        return
    await respond(send, 201, encode(answer(cluster, user, kind, ns or None, request)))


def answer(cluster: Any, identity: Identity, kind: Kind, namespace: str | None, body: Any) -> Obj:
    """The review object with its status; the caller has authorized ``create`` on it."""
    request = _object(body, kind.kind)
    spec = request.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec: must be an object")
    authz = cluster.authz
    if kind.plural == "tokenreviews":
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise _invalid(kind, "spec.token", "Required value")
        found = cluster.authn.review(token)
        status: Obj = {"authenticated": found is not None}
        if found is not None:
            status["user"] = found.user_info()
            status["audiences"] = spec.get("audiences") or [
                "https://kubernetes.default.svc.cluster.local"
            ]
        elif token:
            status["error"] = "[invalid bearer token, service account token has been invalidated]"
    elif kind.plural == "selfsubjectreviews":
        status = {"userInfo": identity.user_info()}
    elif kind.plural == "selfsubjectrulesreviews":
        ns = spec.get("namespace") or ""
        rules = authz.rules_in(identity, ns)
        status = {
            "resourceRules": [r for r in rules if "nonResourceURLs" not in r],
            "nonResourceRules": [r for r in rules if "nonResourceURLs" in r],
            "incomplete": False,
        }
    else:
        subject = identity
        if kind.plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
            user, groups = spec.get("user"), spec.get("groups") or []
            if not user and not groups:
                raise _invalid(kind, "spec.user", "at least one of user or group must be specified")
            subject = Identity(
                str(user or ""), tuple(str(g) for g in groups), uid=spec.get("uid") or ""
            )
        attrs = _attributes(kind, spec, namespace)
        allowed, reason = authz.allowed(subject, attrs)
        status = {"allowed": allowed}
        if reason:
            status["reason"] = reason
    response = {
        "kind": kind.kind,
        "apiVersion": kind.api_version,
        "metadata": {"creationTimestamp": None, **(request.get("metadata") or {})},
        "spec": spec,
        "status": status,
    }
    if kind.plural == "selfsubjectreviews":
        response.pop("spec")
    return response


def token_request(cluster: Any, namespace: str, name: str, body: Any) -> Obj:
    """``POST .../serviceaccounts/<name>/token``: a bound token for that account."""
    spec = _object(body, "TokenRequest").get("spec") or {}
    seconds = spec.get("expirationSeconds") or 3600
    if not isinstance(seconds, int) or seconds < 600:
        raise ApiError(
            422,
            "Invalid",
            'TokenRequest.authentication.k8s.io "" is invalid: '
            "spec.expirationSeconds: Invalid value: may not specify a duration "
            "less than 10 minutes",
        )
    token, expires = cluster.authn.issue(namespace, name, seconds, spec.get("audiences"))
    stamp = datetime.datetime.fromtimestamp(expires, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "TokenRequest",
        "apiVersion": f"{AUTHN}/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
        "spec": {
            "audiences": spec.get("audiences") or [],
            "expirationSeconds": seconds,
            "boundObjectRef": spec.get("boundObjectRef"),
        },
        "status": {"token": token, "expirationTimestamp": stamp},
    }


def _attributes(kind: Kind, spec: Obj, namespace: str | None) -> Attributes:
    resource = spec.get("resourceAttributes")
    path = spec.get("nonResourceAttributes")
    if isinstance(resource, dict):
        ns = resource.get("namespace") or ""
        if kind.plural == "localsubjectaccessreviews":
            ns = namespace or ""
        return Attributes(
            verb=str(resource.get("verb") or ""),
            group=str(resource.get("group") or ""),
            resource=str(resource.get("resource") or ""),
            subresource=str(resource.get("subresource") or ""),
            name=str(resource.get("name") or ""),
            namespace=str(ns),
        )
    if isinstance(path, dict):
        return Attributes(verb=str(path.get("verb") or ""), path=str(path.get("path") or "/"))
    exactly = "exactly one of nonResourceAttributes or resourceAttributes must be specified"
    raise _invalid(kind, "spec.resourceAttributes", exactly)


def _object(body: Any, kind: str) -> Obj:
    if not isinstance(body, dict):
        raise bad_request(f"the body of the request must be an object (a {kind})")
    return body


def _invalid(kind: Kind, field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{kind.kind}.{kind.group} "" is invalid: {field}: {message}',
        details={"group": kind.group, "kind": kind.kind},
    )
