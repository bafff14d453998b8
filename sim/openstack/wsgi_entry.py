"""gunicorn entry points for the real Keystone and Glance (run in ``.venv-openstack``).

Why a wrapper: both build their WSGI app at import time and parse ``sys.argv`` through
oslo.config, which would choke on gunicorn's own arguments. So the factories below reset
``sys.argv`` first, then import the project's stock WSGI module. This file is loaded by
gunicorn with ``--pythonpath`` pointing here: it must import nothing of Hoist.

Why transactions on SQLite begin ``IMMEDIATE``: oslo.db opens every transaction with a
plain (deferred) ``BEGIN``, so two of them that both read, then write (Glance's image save
does) deadlock on SQLite's lock upgrade, and one fails at once with "database is locked",
without waiting. Under a loaded machine 1 upload in 12 failed that way (a 500, or the image
left ``saving`` when the delete after it failed too). Taking the write lock at ``BEGIN``
makes SQLite queue transactions on its busy timeout instead; a deployment on MySQL or
PostgreSQL gets the same serial outcome from row locks. Glance's code is unchanged.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def _begin_immediate_on_sqlite() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine

    # A class-level listener runs before the engine's own, so oslo.db's "begin" listener
    # sees the transaction already open (its ``in_transaction`` marker) and adds none.
    @event.listens_for(Engine, "begin")
    def begin(conn: Connection) -> None:
        if conn.dialect.name == "sqlite" and "in_transaction" not in conn.info:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.info["in_transaction"] = True


def _app(module: str) -> Any:
    sys.argv = sys.argv[:1]
    _begin_immediate_on_sqlite()
    return importlib.import_module(module).application


def keystone() -> Any:
    """Keystone's public v3 API (config from ``OS_KEYSTONE_CONFIG_FILES``)."""
    return _app("keystone.wsgi.api")


def glance() -> Any:
    """Glance's v2 API (config from ``OS_GLANCE_CONFIG_DIR``)."""
    return _app("glance.wsgi.api")
