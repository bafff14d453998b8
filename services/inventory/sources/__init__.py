"""The sources the inventory collects from, one sub-package per provider type.

Imported lazily: the OpenStack SDK takes a second to import, and a service holding only
oVirt providers need not pay it.
"""

from __future__ import annotations

import importlib

from services.inventory.sources.contract import Source
from shared.payloads import ProviderType

_WHERE = {
    ProviderType.OVIRT: ("services.inventory.sources.ovirt", "OvirtSource"),
    ProviderType.OPENSTACK: ("services.inventory.sources.openstack", "OpenStackSource"),
    ProviderType.KUBEVIRT: ("services.inventory.sources.kubevirt", "KubeVirtSource"),
}


def source_class(provider_type: ProviderType) -> type[Source]:
    module, name = _WHERE[provider_type]
    cls: type[Source] = getattr(importlib.import_module(module), name)
    return cls
