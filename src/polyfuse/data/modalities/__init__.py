"""One file per kind of input: each registers its ``Modality`` in ``MODALITIES`` and its processor in
``PROCESSORS`` on import."""

from polyfuse.data.modalities import audio, image, tabular, text, timeseries  # noqa: F401  (registers)
from polyfuse.data.modalities.base import Encoded, Processor
from polyfuse.data.modalities.modality import BadValue, Column, Field, Modality, Upload, input_roles, owner

__all__ = [
    "BadValue",
    "Column",
    "Encoded",
    "Field",
    "Modality",
    "Processor",
    "Upload",
    "input_roles",
    "owner",
]
