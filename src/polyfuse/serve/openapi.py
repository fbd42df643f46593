"""OpenAPI request bodies built from the model's fields, so that ``/docs`` shows what to send.

The routes parse their bodies themselves (the fields depend on the model), so FastAPI cannot infer
these schemas from type hints.
"""

from __future__ import annotations

from typing import Any

from polyfuse.data.modalities import Field, owner
from polyfuse.serve.config import Limits


def field_schema(field: Field, limits: Limits, multipart: bool) -> dict[str, Any]:
    return owner(field.kind).field_schema(field, limits, multipart)


def object_schema(fields: list[Field], limits: Limits, multipart: bool) -> dict[str, Any]:
    properties = {f.name: field_schema(f, limits, multipart) for f in fields}
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "description": "Any subset of the fields (at least one); an absent one is a masked modality.",
    }


def request_bodies(fields: list[Field], limits: Limits) -> dict[str, dict[str, Any]]:
    """``openapi_extra`` of the single-row routes and of ``/predict/batch``."""
    json_row = object_schema(fields, limits, multipart=False)
    single = {
        "multipart/form-data": {"schema": object_schema(fields, limits, multipart=True)},
        "application/json": {"schema": json_row},
    }
    batch_schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": json_row, "maxItems": limits.max_batch_rows}},
        "required": ["rows"],
    }
    return {
        "single": {"requestBody": {"required": True, "content": single}},
        "batch": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": batch_schema}}}
        },
    }
