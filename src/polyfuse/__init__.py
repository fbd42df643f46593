"""polyfuse: multimodal deep learning from a table of text, images, audio and numbers.

The public API is imported lazily so that ``import polyfuse`` stays light (no lightning, no
transformers): heavy modules load when a function that needs them is called.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "fit": "polyfuse.api",
    "compare": "polyfuse.api",
    "load": "polyfuse.predictor",
    "Predictor": "polyfuse.predictor",
    "PolyfuseError": "polyfuse.errors",
    "explain": "polyfuse.api",
    "pretrain": "polyfuse.api",
    "load_pretrained": "polyfuse.pretrained",
    "index": "polyfuse.api",
    "search": "polyfuse.api",
    "zero_shot": "polyfuse.api",
    "fit_text": "polyfuse.api",
    "caption": "polyfuse.api",
    "ask": "polyfuse.api",
    "load_generator": "polyfuse.generator",
    "report": "polyfuse.api",
    "read_table": "polyfuse.data.table",
    "infer_schema": "polyfuse.data.schema",
    "list_datasets": "polyfuse.data.datasets",
    "load_dataset": "polyfuse.data.datasets",
    "build_dataset": "polyfuse.data.datasets",
    "list_encoders": "polyfuse.api",
    "list_fusions": "polyfuse.api",
    "list_heads": "polyfuse.api",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'polyfuse' has no attribute {name!r}")
    return getattr(import_module(_API[name]), name)


def __dir__() -> list[str]:
    return __all__
