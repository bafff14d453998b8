"""The KubeVirt target source: namespaces, storage classes, StorageProfiles and NADs."""

from services.inventory.sources.kubevirt.source import KubeVirtSource

__all__ = ["KubeVirtSource"]
