"""Alembic environment of the orchestrator service (see shared.db.migrating)."""

from services.orchestrator.db import metadata
from shared.db.migrating import run_env

run_env(metadata)
