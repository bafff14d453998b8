"""Kubernetes Events on user claims: every step and every wait of the controller, visible
in ``kubectl describe pvc``.

An Event's name derives from the claim's uid, the reason and the message (as the real
recorder folds repeats), so the same fact told again — by this process or by a restarted
one — raises the Event's ``count`` instead of adding another. This process also remembers
the last fact it told per claim and stays quiet while nothing changes, so a claim that
waits for an hour has one Event, not one per resync. Events are best effort: failing to
record one never fails a reconcile.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from kubernetes_asyncio.client.exceptions import ApiException

from services.controller import COMPONENT_NAME
from shared.kube import EVENT, Kube, Obj, conflict

log = logging.getLogger("hoist.controller.events")

NORMAL = "Normal"
WARNING = "Warning"
MESSAGE_LIMIT = 1024


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recorder:
    def __init__(self, kube: Kube, component: str = COMPONENT_NAME) -> None:
        self.kube = kube
        self.component = component
        self._last: dict[str, tuple[str, str]] = {}

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)

    async def record(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        """Tell ``reason: message`` about ``obj`` unless it is what was last told."""
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        message = message[:MESSAGE_LIMIT]
        if self._last.get(uid) == (reason, message):
            return
        self._last[uid] = (reason, message)
        log.info(
            "%s %s/%s: %s: %s",
            obj.get("kind", "object"),
            meta.get("namespace"),
            meta.get("name"),
            reason,
            message,
        )
        namespace = meta.get("namespace") or "default"
        digest = hashlib.sha256(f"{uid}/{reason}/{message}".encode()).hexdigest()[:16]
        name = f"{meta['name'][:200]}.{digest}"
        stamp = _now()
        try:
            await self.kube.create(
                EVENT,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": obj.get("apiVersion", "v1"),
                        "kind": obj.get("kind", "PersistentVolumeClaim"),
                        "name": meta["name"],
                        "namespace": meta.get("namespace"),
                        "uid": uid,
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "type": event_type,
                    "reason": reason,
                    "message": message,
                    "source": {"component": self.component},
                    "reportingComponent": self.component,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "count": 1,
                },
                namespace,
            )
        except ApiException as exc:
            if not conflict(exc):
                log.warning(
                    "could not record event %s on %s: API status %s", reason, name, exc.status
                )
                return
            await self._repeat(namespace, name, stamp)
        except Exception as exc:
            log.warning("could not record event %s on %s: %r", reason, name, exc)

    async def _repeat(self, namespace: str, name: str, stamp: str) -> None:
        try:
            current = await self.kube.get(EVENT, name, namespace)
            if current is None:  # gone meanwhile (events expire): nothing to count
                log.debug("could not count a repeated event %s: it is gone", name)
                return
            count = int(current.get("count") or 1) + 1
            await self.kube.patch(EVENT, name, {"count": count, "lastTimestamp": stamp}, namespace)
        except Exception as exc:
            log.debug("could not count a repeated event %s: %r", name, exc)
