"""What a server is allowed to accept and how it batches: plain dataclasses, listed by ``GET /model``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Limits:
    """Bounds on client input; a request beyond any of them gets a 413 or 422 naming the field."""

    max_request_bytes: int = 20 * 2**20  # whole request body
    max_upload_bytes: int = 10 * 2**20  # one image or audio file
    max_image_pixels: int = 4096 * 4096  # width x height, read from the header: no decompression bomb
    max_audio_seconds: float = 30.0  # duration, read from the header before decoding
    max_text_chars: int = 10_000  # one text field
    max_batch_rows: int = 64  # rows of one /predict/batch request
    request_timeout_s: float = 30.0  # a request waiting longer for the model gets a 503


@dataclass
class ServeConfig:
    """How ``polyfuse serve`` runs a model."""

    max_batch: int = 32  # rows the micro-batcher groups into one forward pass (1: batching off)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    backend: str = "torch"  # "torch" or "onnx" (onnxruntime on the exported model)
    onnx_path: str | None = None  # exported model for the onnx backend; default MODEL_DIR/model.onnx
    api_key: str | None = None  # when set, X-API-Key must carry it (the page and /health stay open)
    threads: int | None = None  # torch / onnxruntime intra-op threads; None: the library default
    limits: Limits = field(default_factory=Limits)
    budget_ms: float | None = None  # encoder ms per row for the modality cascade (torch); None: all
    index: str | None = None  # a search index folder (polyfuse index): POST /search answers from it
