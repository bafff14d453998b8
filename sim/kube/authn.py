"""Who is asking: bearer tokens of the simulated cluster.

Three kinds of token, as on a kubeadm cluster:

- the admin token of the kubeconfig the simulator writes: ``kubernetes-admin`` in
  ``system:masters`` (RBAC never refuses it, as a real API server never refuses that group);
- ServiceAccount tokens, issued by the TokenRequest subresource
  (``kubectl create token``, ``POST .../serviceaccounts/<name>/token``) or by
  ``Cluster.service_account_token``: signed JWTs, valid until they expire and while the
  ServiceAccount they name (same uid) exists, as bound tokens are;
- the legacy ``ClusterConfig.tokens`` (token -> verbs), kept for tests that only need
  "a token that may read".

Why JWTs rather than random strings: a deleted and recreated ServiceAccount must not
inherit the old one's tokens, and the token itself says which account it is for, so
TokenReview answers without a lookup table that would not survive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sim.kube.errors import ApiError

ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN = "kubernetes-admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600


@dataclass(frozen=True)
class Identity:
    """What a TokenReview answers and what RBAC decides on."""

    username: str
    groups: tuple[str, ...] = (AUTHENTICATED,)
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)
    #: The legacy ``ClusterConfig.tokens`` verbs; None for every other identity.
    legacy_verbs: tuple[str, ...] | None = None

    def user_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = self.extra
        return info


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


class Authenticator:
    """Issues and checks the cluster's tokens; the signing key lives as long as the cluster."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._key = secrets.token_bytes(32)

    def authenticate_header(self, authorization: str) -> Identity:
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        identity = self.review(token) if token else None
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return identity

    def review(self, token: str) -> Identity | None:
        """The identity of a token, or None: not one of this cluster's, or no longer valid."""
        config = self.cluster.config
        if hmac.compare_digest(token.encode(), config.token.encode()):
            return Identity(ADMIN, (MASTERS, AUTHENTICATED))
        if token in config.tokens:
            return Identity(token, (AUTHENTICATED,), legacy_verbs=tuple(config.tokens[token]))
        return self._service_account(token)

    def issue(
        self,
        namespace: str,
        name: str,
        expiration: int = DEFAULT_EXPIRATION,
        audiences: list[str] | None = None,
    ) -> tuple[str, int]:
        """A token for an existing ServiceAccount and when it expires (epoch seconds)."""
        kind = self.cluster.kind("serviceaccounts")
        account = self.cluster.store.find(kind, namespace, name)
        if account is None:
            raise ApiError(
                404,
                "NotFound",
                f'serviceaccounts "{name}" not found',
                details={"name": name, "kind": "serviceaccounts"},
            )
        now = int(time.time())
        expires = now + max(expiration, MIN_EXPIRATION)
        claims = {
            "iss": ISSUER,
            "aud": audiences or [ISSUER],
            "sub": service_account_user(namespace, name),
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": account.obj["metadata"]["uid"]},
            },
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(self._sign(f"{header}.{payload}"))
        return f"{header}.{payload}.{signature}", expires

    def _sign(self, data: str) -> bytes:
        return hmac.new(self._key, data.encode(), hashlib.sha256).digest()

    def _service_account(self, token: str) -> Identity | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            return None
        bound = claims.get("kubernetes.io", {})
        namespace = bound.get("namespace", "")
        name = bound.get("serviceaccount", {}).get("name", "")
        uid = bound.get("serviceaccount", {}).get("uid", "")
        account = self.cluster.store.find(self.cluster.kind("serviceaccounts"), namespace, name)
        if account is None or account.obj["metadata"].get("uid") != uid:
            return None  # a bound token dies with its ServiceAccount
        return Identity(
            service_account_user(namespace, name),
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
            uid=uid,
            extra={"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti')}"]},
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
