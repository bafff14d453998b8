"""Alembic environment of the planner service (see shared.db.migrating)."""

from services.planner.db import metadata
from shared.db.migrating import run_env

run_env(metadata)
