"""The KubeVirt target source: namespaces, storage (classes, CDI StorageProfiles, CSI
capacity), NetworkAttachmentDefinitions, and the VirtualMachines and PVCs already there."""

from services.inventory.sources.kubevirt.source import KubeVirtSource

__all__ = ["KubeVirtSource"]
