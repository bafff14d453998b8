"""The metrics page of a populator pod: where it is served, what it says, how to read it.

Forklift's controller reads ``<percent metric>{ownerUID="<pvc uid>"} <percent>``; Hoist's
populators add byte counters, which make rates and ETAs exact. ``render_metrics`` is what
a pod serves, ``parse_metrics`` what the progress service reads (``prometheus_client`` is
imported only there: populator pods never parse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.populator.kinds import KINDS

METRICS_PORT = 8443
"""Forklift's populator pods serve their metrics here."""
METRICS_SCHEME = "https"
METRICS_PATH = "metrics"
OWNER_LABEL = "ownerUID"
"""The label of every sample: the user claim's uid (a pod may serve several disks)."""
BYTES_DONE = "hoist_populator_bytes_transferred"
BYTES_TOTAL = "hoist_populator_bytes_total"
PERCENT_METRICS = frozenset(k.percent_metric for k in KINDS)


def render_metrics(
    percent_metric: str, owner_uid: str, percent: int, transferred: int, total: int
) -> str:
    """A populator's ``/metrics`` page (Prometheus text)."""
    label = f'{{{OWNER_LABEL}="{owner_uid}"}}'
    return (
        f"# HELP {percent_metric} Progress of the volume population in percent.\n"
        f"# TYPE {percent_metric} counter\n"
        f"{percent_metric}{label} {percent}\n"
        f"# HELP {BYTES_DONE} Bytes of data written to the volume.\n"
        f"# TYPE {BYTES_DONE} counter\n"
        f"{BYTES_DONE}{label} {transferred}\n"
        f"# HELP {BYTES_TOTAL} Bytes of data the source disk holds.\n"
        f"# TYPE {BYTES_TOTAL} gauge\n"
        f"{BYTES_TOTAL}{label} {total}\n"
    )


@dataclass(frozen=True)
class Sample:
    """What one page says about one disk; ``None`` where the page has no such metric."""

    percent: float | None
    bytes_done: int | None
    bytes_total: int | None


class MetricsError(ValueError):
    """The page is not Prometheus text, or holds no progress of the claim."""


def _base(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") and name != BYTES_TOTAL else name


def parse_metrics(page: str, owner_uid: str) -> Sample:
    """The sample of ``owner_uid`` in ``page`` (a parser, never a regex: a reordered or
    extended page still reads)."""
    from prometheus_client.parser import text_string_to_metric_families  # not in pods

    percent: float | None = None
    done: int | None = None
    total: int | None = None
    try:
        for family in text_string_to_metric_families(page):
            for s in family.samples:
                if s.labels.get(OWNER_LABEL) != owner_uid:
                    continue
                value = float(s.value)
                if math.isnan(value) or math.isinf(value) or value < 0:
                    raise MetricsError(f"{s.name} is {s.value}, not a count")
                name = _base(s.name)
                if name in PERCENT_METRICS:
                    percent = min(100.0, value)
                elif name == BYTES_DONE:
                    done = int(value)
                elif name == BYTES_TOTAL:
                    total = int(value)
    except MetricsError:
        raise
    except ValueError as exc:
        raise MetricsError(f"not Prometheus text: {str(exc)[:120]}") from None
    if percent is None and done is None:
        raise MetricsError(f"no progress for {OWNER_LABEL} {owner_uid} on the page")
    return Sample(percent, done, total)
