"""The orchestrator's view of a source provider: re-check a VM, power it off and on, and
(OpenStack) turn its disks into Glance images the populator can read.

``contract`` declares what the pipeline calls; ``ovirt`` and ``openstack`` implement it with
ovirtsdk4 and openstacksdk; ``connecting.connect()`` picks one by the provider's type;
``errors`` spells the reasons of ``SourceError``.
"""
