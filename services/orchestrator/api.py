"""HTTP API of the orchestrator service.

Owns ``/api/v1/migrations``: the execution state of each VM's pipeline and the Kubernetes
objects created for it. Every route requires a bearer token (added by the runner).
"""

from fastapi import APIRouter

router = APIRouter(tags=["orchestrator"])
