"""The multi-combination engine behind ``compare``: modality subsets x fusions x encoders x seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfuse.sweep.grid import DEFAULT_FUSIONS, RunSpec, build_grid, modality_subsets

__all__ = ["DEFAULT_FUSIONS", "RunSpec", "build_grid", "compare", "modality_subsets"]


def compare(
    data: Any = None,
    label: str | list[str] | None = None,
    *,
    out: str | Path = "runs/compare",
    fusions: list[str] | None = None,
    subsets: list[list[str]] | None = None,
    max_modalities: int | None = None,
    encoder_choices: dict[str, list[str]] | None = None,
    seeds: int | list[int] = 1,
    budget_s: float | None = None,
    search: str = "grid",
    trials: int = 20,
    explain: bool = True,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    verbose: bool = True,
    **train_options: Any,
) -> Any:
    """Train every modality subset x fusion (x encoder choice) x seed and write a leaderboard.

    Args:
        data: Table path or DataFrame; ``None`` uses the built-in ``digits-av`` (as ``fit`` does).
        label: Label column(s).
        out: The comparison directory: ``leaderboard.csv``, ``summary.csv``, ``compare.json``,
            ``runs/<run_id>/history.csv`` and ``best/`` (a normal model directory). Running again with
            the same ``out`` resumes: runs already on the board are not trained again.
        fusions: Fusions tried on subsets of two or more modalities (default ``DEFAULT_FUSIONS``).
        subsets: Modality subsets to train; default: every non-empty subset.
        max_modalities: Largest subset size when ``subsets`` is not given.
        encoder_choices: Modality -> encoder names to try, e.g. ``{"text": ["hf_text", "text_bag"]}``.
        seeds: Number of seeds (0, 1, ...) or the seeds themselves.
        budget_s: Wall-clock budget in seconds; runs left when it is spent are not started.
        search: ``"grid"`` (every run) or ``"optuna"`` (TPE over fusions, subsets and hyper-parameters,
            with pruning of weak trials).
        trials: Number of optuna trials.
        explain: Explain the best model into ``out/explain`` (modality Shapley values, including over
            the retrained subsets, attributions, robustness), ready for ``polyfuse report``.
        **train_options: ``TrainConfig`` fields. Defaults differ from ``fit``'s: ``modality_dropout``
            0.2 (single-modality runs use none), ``max_epochs`` 20, ``patience`` 5.

    Returns:
        A ``CompareResult`` (rows, summary frame, metric, whether every run finished).
    """
    from polyfuse.api import fit_inputs
    from polyfuse.reporting import Reporter
    from polyfuse.sweep.engine import (
        DEFAULT_MAX_EPOCHS,
        DEFAULT_MODALITY_DROPOUT,
        DEFAULT_PATIENCE,
        CompareRequest,
    )
    from polyfuse.sweep.runner import run_compare

    train_options.setdefault("modality_dropout", DEFAULT_MODALITY_DROPOUT)
    train_options.setdefault("max_epochs", DEFAULT_MAX_EPOCHS)
    train_options.setdefault("patience", DEFAULT_PATIENCE)
    frame, base_dir, fit_request, source = fit_inputs(
        data,
        label,
        roles=roles,
        split_column=split_column,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options=train_options,
    )
    request = CompareRequest(
        fit=fit_request,
        fusions=list(fusions or DEFAULT_FUSIONS),
        encoder_choices={k: list(v) for k, v in (encoder_choices or {}).items()},
        subsets=[list(s) for s in subsets] if subsets else None,
        max_modalities=max_modalities,
        seeds=list(range(seeds)) if isinstance(seeds, int) else list(seeds),
        budget_s=budget_s,
        search=search,
        trials=trials,
        explain=explain,
    )
    return run_compare(frame, base_dir, request, Path(out), Reporter(verbose), data=source)
