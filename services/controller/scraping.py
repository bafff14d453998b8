"""``status.progress`` of a populator CR while its pod copies (Forklift's field).

Read from the pod's own ``/metrics`` (``ovirt_progress`` / ``openstack_populator_progress``
labelled with the claim's uid) through the API server's pod proxy, when a reconcile looks
at a running pod, at most once per ``MIN_SECONDS`` per pod. This is a convenience for
``kubectl get``: Hoist's progress service scrapes every pod itself, with rates and ETAs.
A failed read is ignored (the next one will do), and while the pod runs the value stops
at 99: "100" means the copy is complete and synced, which only the pod's success says.

The line is found with a regex (Forklift's way), not ``shared.populator.parse_metrics``:
that parser reads a page as a whole, so a page with one line it cannot parse, or with a
negative value, gives nothing where this still finds its line. The names come from the
contract all the same.
"""

from __future__ import annotations

import logging
import re
import time

from shared import populator as contract
from shared.kube import Kube, Obj

log = logging.getLogger("hoist.controller.progress")

MIN_SECONDS = 5.0
TIMEOUT_SECONDS = 3.0
_REMEMBERED = 10_000


class ProgressReader:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._last: dict[str, float] = {}

    async def percent(self, pod: Obj, kind: contract.Kind, owner_uid: str) -> int | None:
        """The pod's percent done (0..99), or None (not read this time, or unreadable)."""
        meta = pod["metadata"]
        now = time.monotonic()
        if now - self._last.get(meta["uid"], float("-inf")) < MIN_SECONDS:
            return None
        if len(self._last) > _REMEMBERED:
            self._last = {k: v for k, v in self._last.items() if now - v < 3600}
        try:
            text = await self.kube.proxy(
                meta["namespace"],
                meta["name"],
                contract.METRICS_PORT,
                contract.METRICS_PATH,
                scheme=contract.METRICS_SCHEME,
                timeout=TIMEOUT_SECONDS,
            )
        except Exception as exc:  # not listening yet, gone, a proxy error: next time
            log.debug("progress of %s unreadable: %r", meta["name"], exc)
            return None
        self._last[meta["uid"]] = now  # only a successful read waits for the next one
        metric, label = kind.percent_metric, contract.OWNER_LABEL
        pattern = rf'^{re.escape(metric)}\{{{label}="{re.escape(owner_uid)}"\}} ([0-9.eE+-]+)'
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            return None
        try:
            value = float(match.group(1))
        except ValueError:
            return None
        return max(0, min(99, int(value)))
