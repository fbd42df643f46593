"""Client fields -> one validated table row, in memory: uploads stay bytes, never paths.

Every problem raises ``InputError`` naming the field: a wrong type, a corrupt or oversized file, an
unknown category, an unknown field. The row then goes through the model's own preprocessor, so a
served prediction sees exactly what training saw (an absent field is a masked modality).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyfuse.data.modalities.modality import BadValue, Field, Upload, owner, utf8
from polyfuse.data.preprocess import Preprocessor
from polyfuse.registry import MODALITIES
from polyfuse.serve.config import Limits

__all__ = ["Field", "InputError", "RowDecoder", "Upload", "describe_field", "model_fields"]


class InputError(Exception):
    """A client error: HTTP ``status`` with a JSON body naming ``field`` and the ``problem``."""

    def __init__(self, field: str | None, problem: str, status: int = 422):
        # A client's field name may hold lone surrogates (JSON "\\ud800"), which the UTF-8 JSON
        # response cannot encode: without this, the error body itself would fail with a 500.
        field, problem = (None if field is None else utf8(field)), utf8(problem)
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem, self.status = field, problem, status

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "problem": self.problem, "status": self.status}}


def model_fields(pre: Preprocessor) -> list[Field]:
    """The fields a request may carry: one per input column of the model."""
    return [
        field
        for spec in pre.schema.inputs
        for field in MODALITIES.get(spec.kind).fields(spec, pre.processors[spec.name])
    ]


def describe_field(field: Field, limits: Limits) -> dict[str, Any]:
    """A field as ``GET /model`` lists it, with how the page renders it (``form``)."""
    return {**field.describe(), "form": owner(field.kind).form(field, limits)}


class RowDecoder:
    """Validates a request's fields into a row (column -> bytes, text, number, category or None)."""

    def __init__(self, fields: list[Field], limits: Limits):
        self.fields = {f.name: f for f in fields}
        self.modalities = {f.name: owner(f.kind) for f in fields}  # looked up once, not per request
        self.limits = limits

    def row(self, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """One row from field values (multipart: ``str`` or ``Upload``; JSON: any JSON value)."""
        unknown = sorted(set(values) - set(self.fields))
        if unknown:
            known = ", ".join(self.fields)
            raise InputError(prefix + unknown[0], f"unknown field; this model's fields are: {known}")
        row = {name: self._value(f, values.get(name), prefix + name) for name, f in self.fields.items()}
        if all(v is None for v in row.values()):
            where = prefix.rstrip(".") or None  # "rows[3]" in a batch
            raise InputError(where, f"no input: send at least one of {', '.join(self.fields)}")
        return row

    def _value(self, field: Field, value: Any, where: str) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # absent: the modality is masked, as in training
        try:
            return self.modalities[field.name].decode(field, value, self.limits)
        except BadValue as bad:
            raise InputError(where, bad.problem, bad.status) from None
