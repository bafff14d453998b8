"""Kubernetes Events, recorded the way controllers and the kubelet record them.

Repeated events about the same object with the same reason and message are folded into one
Event whose `count` grows, as the real event recorder does, so `kubectl describe` shows
"3x over 10s" rather than a flood.
"""

from __future__ import annotations

import hashlib

from sim.kube.errors import ApiError
from sim.kube.kinds import Registry
from sim.kube.store import Obj, Store, now


class Recorder:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        kind = registry.lookup("", "v1", "events")
        assert kind is not None
        self.kind = kind

    def record(
        self, involved: Obj, event_type: str, reason: str, message: str, component: str
    ) -> None:
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        digest = hashlib.sha1(  # noqa: S324 - a name, not a security boundary
            f"{meta.get('uid')}/{reason}/{message}".encode()
        ).hexdigest()[:16]
        name = f"{meta['name']}.{digest}"
        stamp = now()
        existing = self.store.find(self.kind, namespace, name)
        try:
            if existing is not None:

                def bump(event: Obj) -> None:
                    event["count"] = int(event.get("count", 1)) + 1
                    event["lastTimestamp"] = stamp

                self.store.mutate(self.kind, namespace, name, bump)
                return
            self.store.create(
                self.kind,
                {
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": involved.get("apiVersion"),
                        "kind": involved.get("kind"),
                        "name": meta["name"],
                        "namespace": meta.get("namespace"),
                        "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "type": event_type,
                    "reason": reason,
                    "message": message,
                    "source": {"component": component},
                    "reportingComponent": component,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "count": 1,
                },
            )
        except ApiError:
            # An event about an object in a namespace being deleted has nowhere to go; a
            # real recorder drops it too.
            return
