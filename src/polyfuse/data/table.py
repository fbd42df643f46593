"""Reading a user's table (CSV, Parquet, JSON lines or a DataFrame) and finding its folder.

Relative file paths in cells (images, audio) are resolved against the folder the table lives in,
so a table and its files can be moved together.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.errors import SchemaError

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def read_table(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, Path]:
    """Read a table and return it with the folder its relative paths are resolved against.

    Args:
        source: A path to a ``.csv``, ``.tsv``, ``.parquet`` or JSON-lines (``.jsonl``, ``.ndjson``,
            ``.json``) file, or a DataFrame (its base folder is the current directory).

    Returns:
        The frame and the base folder.

    Raises:
        SchemaError: The file does not exist, has an unknown extension or cannot be parsed.
    """
    if isinstance(source, pd.DataFrame):
        return source, Path.cwd()
    path = Path(source).expanduser()
    if not path.is_file():
        raise SchemaError(f"table not found: '{path}'")
    fmt = _READERS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_READERS))
        raise SchemaError(f"cannot read table '{path}': unknown extension '{path.suffix}' (known: {known})")
    try:
        frame = _read(path, fmt)
    except Exception as exc:  # parsers raise many types; the user needs the file and the reason
        raise SchemaError(f"cannot read table '{path}' as {fmt}: {exc}") from exc
    if frame.shape[1] == 0:
        raise SchemaError(f"table '{path}' has no columns")
    return frame, path.resolve().parent


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "tsv":
        return pd.read_csv(path, sep="\t")
    if fmt == "parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_json(path, lines=True)
    except ValueError:
        if path.suffix.lower() != ".json":
            raise
        return pd.read_json(path)  # a plain JSON array of records


def is_missing(value: Any) -> bool:
    """True for a cell with no value: None, NaN or a blank string (lists are values)."""
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        return False
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def missing_mask(series: pd.Series) -> np.ndarray:
    """bool [N]: True where ``is_missing``."""
    return np.fromiter((is_missing(v) for v in series), dtype=bool, count=len(series))


def media_source(value: Any, base_dir: Path) -> Path | io.BytesIO | None:
    """Where an image or audio cell's content is: its raw bytes, decoded in memory (what a server
    passes, so that it never opens a client's path), or a file path; None for a missing file."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(value))
    path = resolve_path(value, base_dir)
    return path if path.is_file() else None


def describe_cell(value: Any) -> str:
    """A cell as error messages name it: the path, or the size of in-memory content."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return str(value)


def shown_value(value: Any, kind: str, base_dir: Path) -> str:
    """A cell as a report shows it: a media file's absolute path (so that it is found from anywhere),
    else the value as text; "" when missing."""
    if is_missing(value):
        return ""
    if kind in ("image", "audio") and not isinstance(value, (bytes, bytearray, memoryview)):
        return str(resolve_path(value, base_dir).resolve())
    return describe_cell(value)


def resolve_path(value: Any, base_dir: Path) -> Path:
    """A cell's file path, relative paths taken from the table's folder."""
    path = Path(str(value).strip()).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path
