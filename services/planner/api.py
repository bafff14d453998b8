"""HTTP API of the planner service.

Owns ``/api/v1/plans``, ``/api/v1/networkmaps`` and ``/api/v1/storagemaps``: maps, plans,
validation, start, cancel, re-run and the status users read. Every route requires a bearer
token (added by the runner).
"""

from fastapi import APIRouter

router = APIRouter(tags=["planner"])
