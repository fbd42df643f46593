"""Versions of the saved directories, specified in docs/format.md.

Writers stamp a top-level ``"format"`` key into the directory's main JSON file (``config.json`` of a
model directory, ``compare.json`` of a comparison, ``explain.json`` of an explanation); readers call
``check_format`` and refuse a version they do not know instead of misreading it. A file written
before the key existed counts as version 1, the layout the key was introduced with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyfuse.errors import FormatError, PolyfuseError

MODEL_FORMAT = 1  # config.json
COMPARE_FORMAT = 1  # compare.json
EXPLAIN_FORMAT = 1  # explain.json
ALIGNED_FORMAT = 1  # config.json of a pre-trained (aligned) model directory
GENERATOR_FORMAT = 1  # config.json of a text generator directory (polyfuse fit-text)


def check_format(data: dict[str, Any], supported: int, path: str | Path) -> int:
    """The format version of ``data`` (read from ``path``); ``FormatError`` unless this version reads it.

    Args:
        data: The parsed JSON file.
        supported: The newest version this polyfuse reads (it reads every older one).
        path: The file, for the message.
    """
    found = data.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise FormatError(f"{path}: 'format' must be a positive integer, found {found!r}")
    if found > supported:
        from polyfuse import __version__

        raise FormatError(
            f"{path} has format {found}, newer than this polyfuse ({__version__}) reads (up to {supported}): "
            "upgrade polyfuse to read it"
        )
    return found


def read_versioned(path: str | Path, supported: int) -> dict[str, Any]:
    """A saved directory's main JSON file, read and its format checked (``check_format``).

    Raises:
        PolyfuseError: the file cannot be read or does not hold a JSON object.
        FormatError: its format is newer than ``supported``.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise PolyfuseError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise PolyfuseError(f"{path} should hold a JSON object")
    check_format(data, supported, path)
    return data
