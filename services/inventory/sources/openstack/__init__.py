"""The OpenStack source: Keystone v3, Nova, Cinder, Glance and Neutron through openstacksdk.

``shared.sources.openstack_connect`` (Secret -> authenticated session, TLS, failures as
reasons), ``credentials`` (checks before connecting),
``collecting`` (listings), ``normalizing`` (raw JSON -> items), ``concerns`` (per VM),
``source`` (load and incremental refresh).
"""

from services.inventory.sources.openstack.source import OpenStackSource

__all__ = ["OpenStackSource"]
