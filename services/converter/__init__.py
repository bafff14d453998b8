"""The conversion pod's program: ``virt-v2v-in-place`` on a VM's volumes, all at once.

Not a service (no API, no database, no bus): a program the ConvertGuest step runs in a
pod, as ``services/populators`` is the populator pods'. It is a folder of its own, not a
third populator beside oVirt and OpenStack, because it runs from another image (one with
virt-v2v, libguestfs and nbdkit: ``HOIST_ORCHESTRATOR_CONVERTER_IMAGE``), reads no source
and fills no claim; like a populator pod it imports only a stdlib contract from
``shared`` (``shared.conversion``).

* ``__main__``: ``python -m services.converter <ConvertArgs.argv()>``;
* ``converting``: overlays, the domain XML, the run, the commit, the result.
"""
