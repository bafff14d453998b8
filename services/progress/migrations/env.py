"""Alembic environment of the progress service (see shared.db.migrating)."""

from services.progress.db import metadata
from shared.db.migrating import run_env

run_env(metadata)
