"""Shared by the benchmarks: the machine they ran on, and results as markdown tables."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.date.today().isoformat(),
    }


def machine_line() -> str:
    m = machine()
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ", no GPU"
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads){gpu}, "
        f"torch {m['torch']}, Python {m['python']}, {m['date']}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def code_version() -> str:
    """The commit the benchmark ran from (short hash), ``+dirty`` when ``src/`` had uncommitted changes;
    ``unknown`` outside a git checkout."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    try:
        commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "src")
    except OSError:
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def seeds(spec: str) -> list[int]:
    """Seeds from a command line: a range (``0-4``) or a comma list (``0,2,5``)."""
    if "-" in spec:
        first, last = spec.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in spec.split(",")]


def summary_markdown(summary: Any, metric: str, val: bool = False) -> list[str]:
    """A compare summary (``CompareResult.summary``) as markdown table lines; ``val`` adds the
    validation score, on which a comparison chooses."""
    val_head, val_rule = (" val score |", "---|") if val else ("", "")
    lines = [
        f"| modalities | fusion | test {metric} |{val_head} seeds | params | train s | ms / sample |",
        f"|---|---|---|{val_rule}---|---|---|---|",
    ]
    for _, row in summary.iterrows():
        fusion = row["fusion"] if row["n_modalities"] > 1 else "-"
        val_cell = f" {row['val_score_mean']:.4f} |" if val else ""
        lines.append(
            f"| {row['modalities']} | {fusion} | {row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f} |"
            f"{val_cell} {int(row['seeds'])} | {int(row['params']):,} | {row['train_seconds_mean']:.1f} | "
            f"{row['latency_ms']:.3f} |"
        )
    return lines


def commit_list(frame: Any) -> str:
    """The commits a results frame's rows ran at (its ``commit`` column), sorted, comma-separated."""
    return ", ".join(sorted(frame["commit"].astype(str).unique()))


def mean_std(values: Any, digits: int = 4) -> str:
    """``mean ± std`` of a pandas Series of per-seed results (the mean alone for one value)."""
    mean = f"{values.mean():.{digits}f}"
    return f"{mean} ± {values.std():.{digits}f}" if len(values) > 1 else mean


def earlier_results(stem: Path, append: bool) -> Any:
    """The rows of ``stem``.csv to add to (``--append``), else an empty frame."""
    import pandas as pd

    csv = stem.with_suffix(".csv")
    return pd.read_csv(csv, dtype={"commit": str}) if append and csv.is_file() else pd.DataFrame()


def with_row(frame: Any, row: dict[str, Any], commit: str, keys: list[str]) -> Any:
    """``frame`` with ``row`` (run at ``commit``) added, replacing an earlier row of the same ``keys``."""
    import pandas as pd

    added = pd.DataFrame([row]).assign(commit=commit)
    return pd.concat([frame, added]).drop_duplicates(keys, keep="last")
