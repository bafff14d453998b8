"""Alembic environment of the inventory service (see shared.db.migrating)."""

from services.inventory.db import metadata
from shared.db.migrating import run_env

run_env(metadata)
