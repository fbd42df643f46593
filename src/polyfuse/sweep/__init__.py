"""The multi-combination engine behind ``compare``: modality subsets x fusions x encoders x seeds."""

from __future__ import annotations

from polyfuse.sweep.grid import DEFAULT_FUSIONS, RunSpec, build_grid, modality_subsets

__all__ = ["DEFAULT_FUSIONS", "RunSpec", "build_grid", "modality_subsets"]
