"""gunicorn entry points for the real Keystone and Glance (run in ``.venv-openstack``).

Why a wrapper: both build their WSGI app at import time and parse ``sys.argv`` through
oslo.config, which would choke on gunicorn's own arguments. So the factories below reset
``sys.argv`` first, then import the project's stock WSGI module. This file is loaded by
gunicorn with ``--pythonpath`` pointing here: it must import nothing of Hoist.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def _app(module: str) -> Any:
    sys.argv = sys.argv[:1]
    return importlib.import_module(module).application


def keystone() -> Any:
    """Keystone's public v3 API (config from ``OS_KEYSTONE_CONFIG_FILES``)."""
    return _app("keystone.wsgi.api")


def glance() -> Any:
    """Glance's v2 API (config from ``OS_GLANCE_CONFIG_DIR``)."""
    return _app("glance.wsgi.api")
