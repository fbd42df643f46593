"""The JSON sidecar beside an exported ``model.onnx`` (``model.onnx.json``), and the export extra.

The sidecar says what the graph's inputs and outputs are and how to turn its logits into
predictions; its layout is specified in docs/format.md. ``onnx`` writes it, ``runtime`` and
``quantize`` read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyfuse import extras
from polyfuse.errors import PolyfuseError
from polyfuse.formats import read_versioned

SIDECAR_FORMAT = 1  # model.onnx.json "format"


def require(module: str) -> Any:
    """Import an optional dependency of export / ONNX serving, or say which extra brings it."""
    return extras.require(module, "export", "ONNX export and serving")


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (beside it, so copying both keeps them together)."""
    return Path(f"{onnx_path}.json")


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise PolyfuseError(f"{path} not found: it is written by `polyfuse export` beside {onnx_path}")
    return read_versioned(path, SIDECAR_FORMAT)


def write_sidecar(info: dict[str, Any], onnx_path: str | Path) -> Path:
    path = sidecar_path(onnx_path)
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path
