"""Encoders, one file per family; importing this package registers them all in ``ENCODERS``."""

from polyfuse.encoders import audio, image, lenet, tabular, text, timeseries  # noqa: F401  (registers the encoders)
from polyfuse.encoders.base import build_encoder, encoders_for
from polyfuse.encoders.text import default_text_model_path

__all__ = ["build_encoder", "default_text_model_path", "encoders_for"]
