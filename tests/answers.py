"""Real answers checked against the service's own OpenAPI document (issue 24: typed APIs).

The published schemas allow unknown keys, for clients of an older version; here every
object with properties refuses others, so an answer with a key its model does not
document fails, as one missing a required key or of the wrong type does.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import jsonschema
from pydantic import BaseModel

from shared.service.app import create_app
from tests.conftest import make_settings


@cache
def openapi(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, as this checkout's code makes it."""
    settings = make_settings("nats://127.0.0.1:1", "postgresql+asyncpg://x@127.0.0.1:1/x", "t")
    return create_app(importlib.import_module(f"services.{service}").SPEC, settings).openapi()


def closed(schema: Any) -> Any:
    """``schema`` with no property left undocumented."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and out.get("type", "object") == "object":
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


def assert_documented(service: str, body: Any, model: type[BaseModel]) -> None:
    """``body`` is what ``service``'s document says ``model`` is, every key documented."""
    ref = f"#/components/schemas/{model.__name__}"
    schema = {"$ref": ref, "components": closed(openapi(service)["components"])}
    jsonschema.validate(body, schema)
    model.model_validate(body)
