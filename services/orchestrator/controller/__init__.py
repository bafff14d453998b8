"""Hoist's volume populator controller: a process of the orchestrator service.

It watches user claims whose ``dataSourceRef`` names one of Hoist's populator kinds
(``OvirtVolumePopulator``, ``OpenstackVolumePopulator``), runs a populator pod per claim
into a prime claim, hands the filled volume to the user claim, and reports through the
CR's status, Kubernetes Events on the claim, and ``populator.pod.*`` events on NATS.
Modules: ``manifests`` (CRDs and VolumePopulators as data), ``registering``, ``watching``,
``reconciling`` and ``ending`` (the mechanism), ``pods`` (prime claim and pod manifests),
``status``, ``announcing``, ``recording``, ``running`` (``Controller``), ``health``.
"""

from services.orchestrator.controller.running import Controller

__all__ = ["Controller"]
