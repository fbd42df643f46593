"""The modality contract: everything kind-specific about one kind of input, in one object.

Each ``data/modalities/<kind>.py`` registers one ``Modality`` in ``MODALITIES``. The rest of the
code asks it instead of branching on the kind: which column roles it owns and how role inference
recognises them, its processor and default encoder, how ``explain`` attributes inside it, how the
server validates, documents and renders its fields, and how training augments it.

Role inference runs the ``rules`` of every modality (plus the schema's own) in increasing rank; the
first that answers decides. The ranks reproduce the order the rules had as one function, so
inference is unchanged; a new kind slots its rules in between.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polyfuse.config import InputSpec, Schema
from polyfuse.data.batch import Inputs
from polyfuse.data.table import missing_mask, resolve_path
from polyfuse.registry import MODALITIES, PROCESSORS

_SNIFF_ROWS = 200  # values looked at when sniffing file extensions


class Column:
    """One table column as role inference sees it; the string views are computed once, on demand."""

    def __init__(self, series: pd.Series) -> None:
        self.series = series
        self.values = series.dropna()

    @functools.cached_property
    def strings(self) -> pd.Series:
        """The present values as stripped text."""
        return self.values.astype(str).str.strip()

    @functools.cached_property
    def sample(self) -> pd.Series:
        """The first present values, lower-cased: enough to recognise file extensions."""
        return self.strings.iloc[:_SNIFF_ROWS].str.lower()


Rule = Callable[[Column], "str | None"]  # a column -> its role, or None: not decided by this rule


class BadValue(Exception):
    """A served value that cannot be used; ``status`` is the HTTP status (413: over a limit)."""

    def __init__(self, problem: str, status: int = 422) -> None:
        super().__init__(problem)
        self.problem, self.status = problem, status


def utf8(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced by "?"."""
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class Upload:
    """A file sent by a client: its bytes and, for messages only, the name it gave."""

    data: bytes
    filename: str = ""


@dataclass
class Field:
    """One input column of a model as a client sends it."""

    name: str  # the table column
    modality: str  # the model input it feeds
    kind: str  # its column role: image, audio, text, numeric or categorical
    categories: list[str] | None = None  # known values of a categorical column

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "modality": self.modality, "kind": self.kind}
        out["type"] = owner(self.kind).field_type(self)
        if self.categories is not None:
            out["categories"] = self.categories
        return out


class Modality:
    """Defaults of the contract; a kind overrides what differs. One instance per kind is registered."""

    kind: str = ""  # the InputSpec kind, and the processor's name in PROCESSORS
    roles: tuple[str, ...] = ()  # the column roles it owns (what users declare)
    grouped = False  # all its columns form one input named after the kind (else one input per column)
    default_encoder: str = ""  # encoder used unless the user names one
    pretrained_encoder: str | None = None  # encoder of ``--pretrained`` without ``--encoder``
    attribution: str = ""  # explain's method inside it: a name in eval.attribution.METHODS
    default_augmentation: tuple[str, ...] = ()  # AUGMENTATIONS names of augment="default"
    served_type = "string"  # JSON type of its served fields in ``GET /model``: file, number or string

    def rules(self) -> list[tuple[int, Rule]]:
        """(rank, rule) pairs that recognise its roles in a column without a declared role."""
        return []

    def inputs(self, columns: list[str]) -> list[InputSpec]:
        """The model inputs of the columns (in table order) that have one of its roles."""
        if self.grouped:
            return [InputSpec(self.kind, self.kind, list(columns))] if columns else []
        return [InputSpec(c, self.kind, [c]) for c in columns]

    def processor(self, spec: InputSpec, schema: Schema, options: dict[str, Any]) -> Any:
        """A new (unfitted) processor for ``spec`` with the user's options."""
        return PROCESSORS.build(self.kind, columns=spec.columns, **options)

    def detail(self, series: pd.Series, role: str, base_dir: str | Path | None) -> str:
        """One line about a column of one of its roles, for ``describe_schema``."""
        return f"{series.dropna().nunique()} distinct values"

    def augment(
        self, values: Inputs, generator: torch.Generator, names: Sequence[str] | None = None
    ) -> Inputs:
        """Training-time augmentation of a batch's inputs: the ``AUGMENTATIONS`` entries ``names``
        (default: ``default_augmentation``) in turn, each drawing from ``generator``."""
        import polyfuse.data.augmentations  # noqa: F401  (registers them)
        from polyfuse.registry import AUGMENTATIONS

        for name in self.default_augmentation if names is None else names:
            values = AUGMENTATIONS.get(name)(values, generator)
        return values

    # --- serving: validating a client's value, documenting and rendering its field ---

    def fields(self, spec: InputSpec, processor: Any) -> list[Field]:
        """The fields a client sends for ``spec``: one per column."""
        return [Field(c, spec.name, self.roles[0]) for c in spec.columns]

    def field_type(self, field: Field) -> str:
        return self.served_type

    def decode(self, field: Field, value: Any, limits: Any) -> Any:
        """A client's present value -> the table cell; raises ``BadValue`` naming the problem."""
        raise NotImplementedError

    def example(self, field: Field) -> Any:
        """A valid value for the server's warm-up request."""
        raise NotImplementedError

    def field_schema(self, field: Field, limits: Any, multipart: bool) -> dict[str, Any]:
        """The OpenAPI schema of the field."""
        return {"type": "string"}

    def form(self, field: Field, limits: Any) -> dict[str, Any]:
        """How the web page renders the field: ``input`` (file, textarea, number or select), and
        optionally ``accept`` and ``preview`` (file inputs), ``max_length`` and a ``hint``."""
        return {"input": "textarea"}


class FileModality(Modality):
    """A kind whose cells are file paths (bytes when served), recognised by their extension."""

    extensions: tuple[str, ...] = ()  # lower-case file name endings
    rank = 0  # where its extension rule sits among the inference rules
    preview = ""  # the page's HTML element that previews a chosen file ("img", "audio"), if any
    served_type = "file"

    def rules(self) -> list[tuple[int, Rule]]:
        return [(self.rank, self._by_extension)]

    def _by_extension(self, column: Column) -> str | None:
        return self.kind if column.sample.str.endswith(self.extensions).mean() > 0.5 else None

    def detail(self, series: pd.Series, role: str, base_dir: str | Path | None) -> str:
        values = series.dropna()
        detail = f"{len(values)} files, {int(missing_mask(series).sum())} missing"
        if base_dir is not None:
            absent = sum(not resolve_path(v, Path(base_dir)).is_file() for v in values)
            detail += f", {absent} not found"
        return detail

    def check(self, data: bytes, limits: Any) -> None:
        """Reads what it needs of a served file's header; raises ``BadValue``."""

    def decode(self, field: Field, value: Any, limits: Any) -> bytes | None:
        data = value.data if isinstance(value, Upload) else file_bytes(value)
        if not data:
            return None  # an empty file input: nothing was chosen
        if len(data) > limits.max_upload_bytes:
            raise BadValue(f"file of {len(data)} bytes; limit {limits.max_upload_bytes}", 413)
        self.check(data, limits)
        return data

    def field_schema(self, field: Field, limits: Any, multipart: bool) -> dict[str, Any]:
        how = "an uploaded file" if multipart else "the file's bytes, base64 (a data: URL works too)"
        return {
            "type": "string",
            "format": "binary" if multipart else "byte",
            "description": f"{field.kind}: {how}",
        }

    def form(self, field: Field, limits: Any) -> dict[str, Any]:
        return {
            "input": "file",
            "accept": f"{self.kind}/*",
            "preview": self.preview,
            "hint": self.hint(limits),
        }

    def hint(self, limits: Any) -> str:
        return ""


def file_bytes(value: Any) -> bytes:
    """A served file given as base64 text or a data: URL -> its bytes."""
    if not isinstance(value, str):
        raise BadValue(f"expected a file (multipart upload or base64 text), got {type(value).__name__}")
    text = value
    if value.startswith("data:"):  # a data: URL, "data:[type][;base64],content"
        if "," not in value:
            raise BadValue("a data: URL without its content (no comma)")
        text = value.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadValue("expected an uploaded file or base64 content (paths are never opened)") from None


def size(n: int) -> str:
    """Bytes as the page shows them: "10 MB", "4 KB"."""
    # int(x + 0.5) rounds halves up, as JavaScript's Math.round did when the page computed this.
    return f"{int(n / 2**20 + 0.5)} MB" if n >= 2**20 else f"{int(n / 1024 + 0.5)} KB"


def owner(role: str) -> Modality:
    """The registered modality that owns a column role; ``KeyError`` for label, split, ignore."""
    for name in MODALITIES:
        modality: Modality = MODALITIES.get(name)
        if role in modality.roles:
            return modality
    raise KeyError(f"no modality owns the column role {role!r}")


def input_roles() -> list[str]:
    """Every column role some modality owns."""
    return [role for name in MODALITIES for role in MODALITIES.get(name).roles]
