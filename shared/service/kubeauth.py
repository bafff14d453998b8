"""Kubernetes identities on the API: TokenReview says who a bearer token is,
SubjectAccessReview whether they may do what a route does (``shared.service.access``).

Both are asked of the cluster Hoist runs in (``HOIST_KUBE_*``), with the service's own
ServiceAccount, which needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews``
(the chart binds ``system:auth-delegator``). Decisions are cached for
``HOIST_AUTH_CACHE_SECONDS`` (keyed by a digest of the token, never the token), so a
dashboard polling every second costs the API server one review pair per interval, and a
revoked binding takes effect within it. A cluster that cannot be asked is a 503 with
``Retry-After``, never a decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from shared.kube import KubeConnection, connect_local
from shared.service.access import GROUP, Access
from shared.settings import AuthSettings, KubeSettings

log = logging.getLogger("hoist.auth")

CACHE_ENTRIES = 4096


class ReviewUnavailable(Exception):
    """The cluster could not answer a review: the request is neither allowed nor refused."""


@dataclass(frozen=True)
class User:
    username: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """401 (``user`` None), 403 (``allowed`` False) or a pass."""

    user: User | None
    allowed: bool
    reason: str = ""


class _Ttl:
    """A small LRU whose entries expire; decisions must not outlive a revoked binding long."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        found = self._items.get(key)
        if found is None or found[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: Any, value: Any) -> None:
        if self.seconds <= 0:
            return
        self._items[key] = (time.monotonic() + self.seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > CACHE_ENTRIES:
            self._items.popitem(last=False)


class KubeAuth:
    """Reviews against one cluster; one per app (``app.state``), connected on first use."""

    def __init__(self, auth: AuthSettings, kube: KubeSettings) -> None:
        self.auth = auth
        self.kube = kube
        self._connection: KubeConnection | None = None
        self._lock = asyncio.Lock()
        self._users = _Ttl(auth.cache_seconds)
        self._decisions = _Ttl(auth.cache_seconds)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def decide(self, token: str, access: Access | None) -> Verdict:
        """Who the token is and whether they may ``access`` (None: only who they are)."""
        key = hashlib.sha256(token.encode()).digest()
        user = self._users.get(key)
        if user is None:
            user = await self._token_review(token)
            self._users.put(key, user)
        if not user:  # False: the token was reviewed and refused
            return Verdict(None, False)
        if access is None:
            return Verdict(user, True)
        decided = self._decisions.get((key, access))
        if decided is None:
            decided = await self._access_review(user, access)
            self._decisions.put((key, access), decided)
        allowed, reason = decided
        return Verdict(user, allowed, reason)

    async def _api(self) -> client.ApiClient:
        if self._connection is None:
            async with self._lock:
                if self._connection is None:
                    try:
                        self._connection = await connect_local(self.kube)
                    except Exception as exc:
                        raise ReviewUnavailable(f"no Kubernetes API configured: {exc}") from exc
        return self._connection.api

    async def _token_review(self, token: str) -> User | bool:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        try:
            review = await client.AuthenticationV1Api(await self._api()).create_token_review(body)
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReviewUnavailable(_why(exc, "TokenReview")) from exc
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return False
        info = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (info.extra or {}).items()))
        return User(info.username or "", tuple(info.groups or ()), info.uid or "", extra)

    async def _access_review(self, user: User, access: Access) -> tuple[bool, str]:
        attributes = client.V1ResourceAttributes(
            group=GROUP,
            resource=access.base,
            subresource=access.subresource or None,
            verb=access.verb,
            namespace=self.kube.namespace,
        )
        spec = client.V1SubjectAccessReviewSpec(
            user=user.username,
            groups=list(user.groups),
            uid=user.uid or None,
            extra={k: list(v) for k, v in user.extra} or None,
            resource_attributes=attributes,
        )
        api = client.AuthorizationV1Api(await self._api())
        try:
            review = await api.create_subject_access_review(client.V1SubjectAccessReview(spec=spec))
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReviewUnavailable(_why(exc, "SubjectAccessReview")) from exc
        status = review.status
        return bool(status and status.allowed), (status.reason or "") if status else ""


def _why(exc: BaseException, review: str) -> str:
    if isinstance(exc, ApiException):
        return f"the Kubernetes API refused the {review} ({exc.status} {exc.reason})"
    return f"the Kubernetes API could not be reached for a {review} ({type(exc).__name__})"
