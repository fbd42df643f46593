"""Per-modality processors, registered in ``PROCESSORS`` by kind on import."""

from polyfuse.data.modalities import audio, image, tabular, text  # noqa: F401  (registers)
from polyfuse.data.modalities.base import Encoded, Processor

__all__ = ["Encoded", "Processor"]
