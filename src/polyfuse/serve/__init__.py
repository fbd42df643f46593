"""``polyfuse serve``: an HTTP service and a web page for a saved model.

FastAPI routes (``app``) decode each request in memory (``inputs``), a micro-batcher groups
concurrent requests (``batching``), and a backend runs the torch or ONNX model (``backend``).
Needs the ``serve`` extra: ``pip install 'polyfuse[serve]'``.
"""

from __future__ import annotations

from polyfuse.extras import require

# Every way in (create_app, ``polyfuse serve``, the submodules) passes here first: a missing extra is
# one clear error naming it, not an ImportError from deep inside.
require("fastapi", "serve", "polyfuse serve")

from polyfuse.serve.config import Limits, ServeConfig  # noqa: E402

__all__ = ["Limits", "ServeConfig", "create_app"]


def create_app(model_dir: str, config: ServeConfig | None = None):  # type: ignore[no-untyped-def]
    """The FastAPI application serving the model directory ``model_dir`` (see ``ServeConfig``)."""
    from polyfuse.serve.app import create_app as build

    return build(model_dir, config or ServeConfig())
