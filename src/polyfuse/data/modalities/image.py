"""Images: file paths in one column -> uint8 tensors [N, C, H, W].

uint8 keeps a decoded table small (a 70k-image table at 32x32 RGB is 215 MB); encoders convert to
float and normalise on the fly.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import torch

from polyfuse.data.errors import DataError
from polyfuse.data.modalities.base import Encoded, map_files
from polyfuse.data.modalities.modality import BadValue, Field, FileModality, size
from polyfuse.data.table import describe_cell, is_missing, media_source
from polyfuse.registry import MODALITIES, PROCESSORS

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La"}
_FIT_SAMPLE = 200  # images whose mode is looked at to choose the channels


class ImageModality(FileModality):
    """Image files: a CNN by default, per-pixel integrated gradients, header-checked uploads."""

    kind = "image"
    default_augmentation = ("crop", "rotate", "color_jitter", "pixel_noise")  # data.augmentations.image
    roles = ("image",)
    extensions = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
    preview = "img"
    rank = 30
    default_encoder = "image_cnn"
    pretrained_encoder = "hf_image"
    attribution = "pixels"

    def check(self, data: bytes, limits: Any) -> None:
        check_image(data, limits.max_image_pixels)

    def example(self, field: Field) -> bytes:
        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, format="PNG")
        return out.getvalue()

    def hint(self, limits: Any) -> str:
        side = int(math.sqrt(limits.max_image_pixels or 0))
        return f"PNG, JPEG \u2026 up to {size(limits.max_upload_bytes)}" + (
            f", {side}\u00d7{side} pixels" if side else ""
        )


MODALITIES.register("image")(ImageModality())  # one instance per kind


def check_image(data: bytes, max_pixels: int) -> None:
    """Reads the header only: the pixel count is checked before anything is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError:  # Pillow's own bound (far above ours) is still "too large"
        raise BadValue(
            f"image over Pillow's decompression-bomb bound; limit {max_pixels} pixels", 413
        ) from None
    except Exception as exc:  # Pillow raises many types for bad bytes
        raise BadValue(f"not a readable image ({exc.__class__.__name__})") from None
    if width * height > max_pixels:
        raise BadValue(f"image of {width}x{height} pixels; limit {max_pixels} pixels", 413)


@PROCESSORS.register("image")
class ImageProcessor:
    """Read, convert and resize images with Pillow.

    Args:
        columns: The one column holding image paths.
        image_size: Output size, an int (square) or ``[H, W]``.
        channels: ``"L"`` (grey), ``"RGB"`` or ``"auto"``: the majority mode of the training images.
    """

    kind = "image"

    def __init__(self, columns: list[str], image_size: int | list[int] = 32, channels: str = "auto") -> None:
        if channels not in ("auto", "L", "RGB"):
            raise ValueError(f"channels must be 'auto', 'L' or 'RGB', got {channels!r}")
        self.columns = list(columns)
        size = [image_size, image_size] if isinstance(image_size, int) else list(image_size)
        self.image_size = [int(size[0]), int(size[1])]  # [H, W]
        self.channels = channels

    @property
    def column(self) -> str:
        return self.columns[0]

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        if self.channels != "auto":
            return
        from PIL import Image

        grey = colour = 0
        for source in self._sources(frame[self.column], base_dir)[:_FIT_SAMPLE]:
            try:
                with Image.open(source) as img:
                    grey, colour = (grey + 1, colour) if img.mode in _GREY_MODES else (grey, colour + 1)
            except Exception:  # bad files are reported by transform, with their row
                continue
        self.channels = "L" if grey > colour else "RGB"

    def _sources(self, series: pd.Series, base_dir: Path) -> list[Path | BinaryIO]:
        sources = (media_source(v, base_dir) for v in series if not is_missing(v))
        return [src for src in sources if src is not None]

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        mode = "RGB" if self.channels == "auto" else self.channels
        height, width = self.image_size
        series = frame[self.column]
        out = np.zeros((len(series), len(mode), height, width), dtype=np.uint8)  # [N, C, H, W]
        present = np.zeros(len(series), dtype=bool)
        errors: list[DataError] = []
        load = _loader(mode, (width, height))
        sources = [(i, media_source(v, base_dir)) for i, v in enumerate(series) if not is_missing(v)]
        jobs = [(i, src) for i, src in sources if src is not None]  # a file that does not exist is absent
        results = map_files(load, [src for _, src in jobs])
        for (i, _), (pixels, reason) in zip(jobs, results, strict=True):
            if pixels is None:
                value = describe_cell(series.iloc[i])
                errors.append(
                    DataError(f"cannot read image '{value}': {reason}", series.index[i], self.column)
                )
            else:
                out[i], present[i] = pixels, True
        return Encoded(values=torch.from_numpy(out), present=torch.from_numpy(present), errors=errors)

    def encoder_kwargs(self) -> dict[str, Any]:
        height, width = self.image_size
        return {
            "in_channels": 1 if self.channels == "L" else 3,
            "image_size": height if height == width else [height, width],
        }

    def state(self) -> dict[str, Any]:
        return {"columns": self.columns, "image_size": self.image_size, "channels": self.channels}


def _loader(mode: str, size: tuple[int, int]) -> Callable[[Path | BinaryIO], tuple[np.ndarray | None, str]]:
    from PIL import Image

    def load(source: Path | BinaryIO) -> tuple[np.ndarray | None, str]:
        try:
            with Image.open(source) as img:
                img.load()  # decodes fully: truncated files fail here, not later
                converted = _convert(img, mode)
                resized = converted.resize(size, Image.Resampling.BILINEAR)  # antialiased when shrinking
        except Image.DecompressionBombError as exc:
            return None, f"image too large ({exc})"
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError ... for bad files
            return None, str(exc) or type(exc).__name__
        pixels = np.asarray(resized, dtype=np.uint8)  # [H, W] or [H, W, C]
        return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)), ""

    return load


def _convert(img: Any, mode: str) -> Any:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float greyscale: scale to 0..255 instead of clipping.
        array = np.asarray(img, dtype=np.float32)
        top = float(array.max()) or 1.0
        from PIL import Image

        img = Image.fromarray((array / top * 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent pixels do not turn black.
        from PIL import Image

        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)
