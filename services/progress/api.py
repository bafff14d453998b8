"""HTTP API of the progress service.

Owns ``/api/v1/progress``: per plan, VM and disk the latest bytes, rate and ETA, with
history and a server-sent-events stream. Every route requires a bearer token (added by the
runner).
"""

from fastapi import APIRouter

router = APIRouter(tags=["progress"])
