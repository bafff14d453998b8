"""OpenStack: real Keystone and Glance, simulated Nova, Cinder and Neutron."""
