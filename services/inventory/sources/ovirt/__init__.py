"""The oVirt/RHV source: an engine's inventory through ovirtsdk4 (``OvirtSource``)."""

from services.inventory.sources.ovirt.source import OvirtSource

__all__ = ["OvirtSource"]
