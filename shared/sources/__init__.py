"""Talking to source providers (oVirt engines, OpenStack clouds), shared by the services that
do: the inventory reads them, the orchestrator powers VMs off and converts their disks.

- ``problems``: why a provider cannot be used (``ConnectionProblem`` and its ``Reason``),
  and the TLS check made before any SDK connects;
- ``blocking``: the bounded thread pool every blocking SDK call runs in;
- ``ovirt_connect``: ovirtsdk4 connections (TLS files, SSO, a small pool);
- ``openstack_connect``: a keystoneauth session from a provider Secret (TLS, discovery,
  authentication, the catalog check).
"""
