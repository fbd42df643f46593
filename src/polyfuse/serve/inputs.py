"""Client fields -> one validated table row, in memory: uploads stay bytes, never paths.

Every problem raises ``InputError`` naming the field: a wrong type, a corrupt or oversized file, an
unknown category, an unknown field. The row then goes through the model's own preprocessor, so a
served prediction sees exactly what training saw (an absent field is a masked modality).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polyfuse.data.modalities.tabular import category_key
from polyfuse.data.preprocess import Preprocessor
from polyfuse.serve.config import Limits

MEDIA = ("image", "audio")


class InputError(Exception):
    """A client error: HTTP ``status`` with a JSON body naming ``field`` and the ``problem``."""

    def __init__(self, field: str | None, problem: str, status: int = 422):
        # A client's field name may hold lone surrogates (JSON "\\ud800"), which the UTF-8 JSON
        # response cannot encode: without this, the error body itself would fail with a 500.
        field, problem = (None if field is None else _utf8(field)), _utf8(problem)
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem, self.status = field, problem, status

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "problem": self.problem, "status": self.status}}


def _utf8(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class Upload:
    """A file sent by the client: its bytes and, for messages only, the name it gave."""

    data: bytes
    filename: str = ""


@dataclass
class Field:
    """One input column of the model as a client sends it."""

    name: str  # the table column
    modality: str  # the model input it feeds
    kind: str  # image, audio, text, numeric or categorical
    categories: list[str] | None = None  # known values of a categorical column

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "modality": self.modality, "kind": self.kind}
        out["type"] = "file" if self.kind in MEDIA else ("number" if self.kind == "numeric" else "string")
        if self.categories is not None:
            out["categories"] = self.categories
        return out


def model_fields(pre: Preprocessor) -> list[Field]:
    """The fields a request may carry: one per input column of the model."""
    out = []
    for spec in pre.schema.inputs:
        if spec.kind != "tabular":
            out.append(Field(spec.columns[0], spec.name, spec.kind))
            continue
        categories = pre.processors[spec.name].categories
        for column in spec.columns:
            kind = "categorical" if column in categories else "numeric"
            out.append(Field(column, spec.name, kind, categories.get(column)))
    return out


class RowDecoder:
    """Validates a request's fields into a row (column -> bytes, text, number, category or None)."""

    def __init__(self, fields: list[Field], limits: Limits):
        self.fields = {f.name: f for f in fields}
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
        if field.kind in MEDIA:
            return self._media(field.kind, value, where)
        if field.kind == "text":
            return self._text(value, where)
        if field.kind == "numeric":
            return _number(value, where)
        return _category(field, value, where)

    def _media(self, kind: str, value: Any, where: str) -> bytes | None:
        data = value.data if isinstance(value, Upload) else _base64(value, where)
        if not data:
            return None  # an empty file input: nothing was chosen
        if len(data) > self.limits.max_upload_bytes:
            raise InputError(where, f"file of {len(data)} bytes; limit {self.limits.max_upload_bytes}", 413)
        if kind == "image":
            check_image(data, self.limits.max_image_pixels, where)
        else:
            check_audio(data, self.limits.max_audio_seconds, where)
        return data

    def _text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise InputError(where, f"expected text, got {type(value).__name__}")
        if _utf8(value) != value:  # a lone surrogate: not UTF-8 (Arrow strings once failed the batch on it)
            raise InputError(where, "text is not valid Unicode (a lone surrogate)")
        if len(value) > self.limits.max_text_chars:
            raise InputError(
                where, f"text of {len(value)} characters; limit {self.limits.max_text_chars}", 413
            )
        return value


def _base64(value: Any, where: str) -> bytes:
    if isinstance(value, Upload):
        return value.data
    if not isinstance(value, str):
        raise InputError(
            where, f"expected a file (multipart upload or base64 text), got {type(value).__name__}"
        )
    text = value
    if value.startswith("data:"):  # a data: URL, "data:[type][;base64],content"
        if "," not in value:
            raise InputError(where, "a data: URL without its content (no comma)")
        text = value.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            where, "expected an uploaded file or base64 content (paths are never opened)"
        ) from None


def check_image(data: bytes, max_pixels: int, where: str) -> None:
    """Reads the header only: the pixel count is checked before anything is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError:  # Pillow's own bound (far above ours) is still "too large"
        problem = f"image over Pillow's decompression-bomb bound; limit {max_pixels} pixels"
        raise InputError(where, problem, 413) from None
    except Exception as exc:  # Pillow raises many types for bad bytes
        raise InputError(where, f"not a readable image ({exc.__class__.__name__})") from None
    if width * height > max_pixels:
        raise InputError(where, f"image of {width}x{height} pixels; limit {max_pixels} pixels", 413)


def check_audio(data: bytes, max_seconds: float, where: str) -> None:
    """Reads the header only: the duration is checked before anything is decoded."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
        seconds = info.frames / info.samplerate
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
        raise InputError(
            where, f"unsupported audio ({exc.__class__.__name__}); send WAV, FLAC or OGG"
        ) from None
    if info.frames <= 0:
        raise InputError(where, "audio without samples")
    if seconds > max_seconds:
        raise InputError(where, f"audio of {seconds:.1f} s; limit {max_seconds} s", 413)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(where, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer of hundreds of digits
        raise InputError(where, f"expected a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InputError(where, "expected a finite number")
    return number


def _category(field: Field, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(where, f"expected a category, got {type(value).__name__}")
    key = category_key(value)
    if field.categories is not None and key not in field.categories:
        known = ", ".join(field.categories[:20]) + (" ..." if len(field.categories) > 20 else "")
        raise InputError(where, f"unknown category {key[:40]!r}; known: {known}")
    return key
