"""The leaderboard: one CSV row per finished run, a summary per configuration, a rich table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.eval.metrics import LOWER_IS_BETTER
from polyfuse.sweep.grid import NO_BALANCE

FIRST_COLUMNS = ["run_id", "modalities", "n_modalities", "fusion", "balance", "encoders", "seed", "status"]
FIRST_COLUMNS += ["metric", "params_json"]
CONFIG_COLUMNS = ["modalities", "n_modalities", "fusion", "balance", "encoders", "params_json"]


def read_board(path: Path) -> list[dict[str, Any]]:
    """Rows already written (an interrupted comparison resumes after them); a board written before
    balancing was a grid axis has no ``balance`` column: its runs trained without balancing."""
    if not path.is_file():
        return []
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    rows = [{k: None if _missing(v) else v for k, v in row.items()} for row in frame.to_dict("records")]
    return [{**row, "balance": row.get("balance") or NO_BALANCE} for row in rows]


def write_board(rows: list[dict[str, Any]], path: Path) -> None:
    """Rewrite the whole CSV (atomically: a kill mid-write leaves the previous version)."""
    frame = pd.DataFrame(rows)
    ordered = [c for c in FIRST_COLUMNS if c in frame] + [c for c in frame if c not in FIRST_COLUMNS]
    tmp = path.with_suffix(".tmp")
    frame[ordered].to_csv(tmp, index=False)
    tmp.replace(path)


def summarize(rows: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    """One row per configuration: mean and std of the test metric over seeds, best first."""
    ok = pd.DataFrame([r for r in rows if r.get("status") == "ok"])
    if ok.empty:
        return pd.DataFrame()
    ok = ok.assign(
        params_json=ok.get("params_json", pd.Series("", index=ok.index)).fillna(""),
        balance=ok.get("balance", pd.Series(NO_BALANCE, index=ok.index)).fillna(NO_BALANCE),
    )
    column = f"test_{metric}"
    grouped = ok.groupby(CONFIG_COLUMNS, sort=False, dropna=False)
    summary = grouped.agg(
        seeds=("seed", "count"),
        **{f"{metric}_mean": (column, "mean"), f"{metric}_std": (column, "std")},
        val_score_mean=("val_score", "mean"),
        params=("params", "first"),
        train_seconds_mean=("train_seconds", "mean"),
        latency_ms=("latency_ms", "mean"),
    ).reset_index()
    summary[f"{metric}_std"] = summary[f"{metric}_std"].fillna(0.0)
    ascending = metric in LOWER_IS_BETTER
    return summary.sort_values(f"{metric}_mean", ascending=ascending, kind="stable").reset_index(drop=True)


def board_table(summary: pd.DataFrame, metric: str, title: str = "Leaderboard") -> Any:
    """The summary as a rich table (test metric mean ± std over seeds); a balance column when a
    balancing strategy was compared."""
    from rich.table import Table

    balanced = "balance" in summary and bool((summary["balance"].fillna(NO_BALANCE) != NO_BALANCE).any())
    table = Table(title=title)
    names = ["#", "modalities", "fusion", *(["balance"] if balanced else []), f"test {metric}", "seeds"]
    for name in [*names, "params", "train s", "ms/sample"]:
        table.add_column(name, justify="left" if name in ("modalities", "fusion", "balance") else "right")
    for i, row in summary.iterrows():
        multi = row["n_modalities"] > 1
        table.add_row(
            str(int(str(i)) + 1),
            str(row["modalities"]),
            str(row["fusion"]) if multi else "-",
            *([str(row["balance"]) if multi else "-"] if balanced else []),
            f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}",
            str(int(row["seeds"])),
            f"{int(row['params']):,}",
            f"{row['train_seconds_mean']:.1f}",
            f"{row['latency_ms']:.3f}",
        )
    return table


def _missing(value: Any) -> bool:
    return isinstance(value, float) and value != value
