"""Size and speed of every registered fusion for given embedding sizes (``polyfuse fusions list``)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from polyfuse.registry import FUSIONS

DEFAULT_DIMS = {"image": 128, "audio": 128, "text": 128}


def count_parameters(module: nn.Module) -> int:
    """Number of parameter values (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def forward_ms(
    module: nn.Module, in_dims: dict[str, int], batch_size: int, repeats: int, seed: int = 0
) -> float:
    """Median wall-clock milliseconds of one eval-mode forward pass over ``repeats`` timed runs
    (after one untimed warm-up), on random embeddings with every modality present."""
    gen = torch.Generator().manual_seed(seed)
    embeddings = {m: torch.randn(batch_size, d, generator=gen) for m, d in in_dims.items()}
    mask = {m: torch.ones(batch_size, dtype=torch.bool) for m in in_dims}
    module.eval()
    module(embeddings, mask)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        module(embeddings, mask)
        times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))


def profile_fusions(
    in_dims: dict[str, int] | None = None,
    output_dim: int | None = None,
    batch_size: int = 64,
    repeats: int = 5,
    names: list[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Build each registered fusion for ``in_dims`` and measure it.

    Fusions see one embedding per modality (token-level fusions: one token per modality), so the
    latencies compare the fusions themselves, not encoders. Timings depend on the machine and on
    whatever else runs on it; use them to compare fusions measured together.

    Args:
        in_dims: Modality -> embedding size (default 128 each for image, audio and text).
        output_dim: Passed to every fusion when given; otherwise each fusion's default.
        batch_size: Rows per forward pass.
        repeats: Timed forward passes; the median is reported.
        names: Fusions to measure (default: every registered one, sorted).
        seed: Seeds the weights and the random inputs.

    Returns:
        One dict per fusion: ``name``, ``doc`` (first docstring line), ``params`` (number of
        parameter values), ``output_dim`` and ``latency_ms`` (median ms per batch).
    """
    dims = dict(in_dims or DEFAULT_DIMS)
    options = {"output_dim": output_dim} if output_dim is not None else {}
    rows = []
    for name in names or FUSIONS.names():
        torch.manual_seed(seed)
        fusion = FUSIONS.build(name, in_dims=dims, **options)
        doc = (FUSIONS.get(name).__doc__ or "").strip()
        rows.append(
            {
                "name": name,
                "doc": doc.splitlines()[0] if doc else "",
                "params": count_parameters(fusion),
                "output_dim": int(fusion.output_dim),
                "latency_ms": forward_ms(fusion, dims, batch_size, repeats, seed),
            }
        )
    return rows
