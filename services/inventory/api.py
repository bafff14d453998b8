"""HTTP API of the inventory service.

Owns ``/api/v1/providers`` (providers, their credentials as Kubernetes Secrets, connection
tests and status) and the inventory each provider exposes beneath it (VMs, disks, networks,
storage, concerns). Every route here requires a bearer token (added by the runner).
"""

from fastapi import APIRouter

router = APIRouter(tags=["inventory"])
