"""Hoist's volume populator controller: a service of its own.

It watches user claims whose ``dataSourceRef`` names one of Hoist's populator kinds
(``shared.populator``: the contract it shares with the orchestrator, the populator pods and
the progress service, and the only thing it shares with them), runs a populator pod per
claim (per stage, for a multi-stage CR) into a prime claim, hands the filled volume to the
user claim, and reports through the CR's status, Kubernetes Events on the claim, and
``populator.pod.*`` events on NATS.

Rooms: ``__main__`` (the process), ``api`` (``/healthz``, ``/readyz``, ``/metrics``),
``domain`` (``Controller``: registration, watches, workers), ``events`` (the NATS events).
The mechanism: ``registering``, ``watching``, ``reconciling`` (``staging`` for a
multi-stage CR) and ``ending``, with ``manifests`` (the prime claim and pod it creates),
``status`` (the CR's status), ``scraping`` (a pod's percent), ``kubeevents`` (Kubernetes
Events), ``rbac`` (what it may do), ``queue`` and ``metrics``. Every API call goes through
``shared.kube.Kube`` and every watch is a ``shared.kube.ListWatch``. No ``db.py`` or
``migrations/``: it keeps no state, the cluster is its state.
"""

COMPONENT_NAME = "hoist-populator-controller"
"""``source.component`` of the Kubernetes Events it records, and its log component.
(Set before ``Controller`` is imported: ``kubeevents`` reads it while this package loads.)"""

from services.controller.domain import Controller  # noqa: E402

__all__ = ["COMPONENT_NAME", "Controller"]
