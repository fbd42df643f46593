"""Generic compositions of already-built parts."""

from polyfuse.models.multimodal import MultimodalModel

__all__ = ["MultimodalModel"]
