"""Telling an id from a name in an API path (``/plans/{id or name}``).

Hoist's ids are UUIDs and its names are DNS-1123 labels, which a UUID never parses as
unless it is one, so one path segment can take either.
"""

from __future__ import annotations

import uuid


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
