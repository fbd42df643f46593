"""The state of one comparison directory while it runs: the board so far, the best run, the clock.

``runner`` (the grid) and ``search`` (optuna trials) both drive a ``Session`` one run at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.fitting import model_metrics
from polyfuse.predictor import Predictor
from polyfuse.reporting import Reporter
from polyfuse.sweep.board import read_board, write_board
from polyfuse.sweep.engine import (
    CompareRequest,
    RunOutput,
    Workspace,
    better,
    latency_ms,
    result_row,
    train_run,
)
from polyfuse.sweep.grid import RunSpec


class Session:
    """The state of one comparison directory: the board so far, the best run, the clock."""

    def __init__(self, ws: Workspace, req: CompareRequest, out: Path, rep: Reporter, data: Any):
        self.ws, self.req, self.out, self.rep, self.data = ws, req, out, rep, data
        self.board_path = out / "leaderboard.csv"
        self.rows = read_board(self.board_path)
        self.done = {r["run_id"] for r in self.rows}
        ok = [r for r in self.rows if r.get("status") == "ok"]
        self.best = best_of(ok, ws.val_metric)
        self.start = time.perf_counter()

    def time_left(self) -> float | None:
        if self.req.budget_s is None:
            return None
        return self.req.budget_s - (time.perf_counter() - self.start)

    def run(self, spec: RunSpec, callbacks: list[Any] | None = None) -> dict[str, Any] | None:
        """Train one run unless it is on the board already; returns its row (None if skipped).

        ``callbacks`` go to the trainer; a run one of them stopped early (``stopped_early``, a pruned
        search trial) is recorded as "pruned" and never becomes the best model.
        """
        if spec.run_id in self.done:
            return None
        try:
            done = train_run(self.ws, spec, self.req.fit.train, self.time_left(), callbacks)
        except (RuntimeError, ValueError) as err:  # a fusion that cannot train here must not end the sweep
            row = {**spec.row(), "status": "failed", "metric": self.ws.metric, "error": str(err)[:300]}
            self._record(row)
            return row
        row = result_row(
            spec, self.ws.metric, done.trained, latency_ms(done.trained.model, done.tables["test"])
        )
        write_history(done.trained.history, self.out / "runs" / spec.run_id / "history.csv")
        if any(getattr(cb, "stopped_early", False) for cb in callbacks or []):
            row["status"] = "pruned"
        elif better(row["val_score"], self.best.get("val_score") if self.best else None, self.ws.val_metric):
            self._save_best(spec, row, done)
        self._record(row)
        return row

    def _record(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.done.add(row["run_id"])
        write_board(self.rows, self.board_path)
        shown = f"test {row['metric']} {row.get('test_' + row['metric'], float('nan')):.4f}"
        took = f"{row.get('train_seconds', 0):.1f}s"
        self.rep.line(f"  [{len(self.rows)}] {row['run_id']}: {row['status']} {shown} ({took})")

    def _save_best(self, spec: RunSpec, row: dict[str, Any], done: RunOutput) -> None:
        metrics = {
            **model_metrics(self.ws.schema, done.config, done.trained, done.tables),
            "data": self.data,
            "compare": {"run_id": spec.run_id, "out": str(self.out)},
        }
        Predictor(done.pre, done.config, done.train, done.trained.model, metrics).save(self.out / "best")
        self.best = row


def best_of(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The row with the best ``val_score``, read as ``metric`` (the workspace's ``val_metric``)."""
    best: dict[str, Any] | None = None
    for row in rows:
        if better(row.get("val_score"), best.get("val_score") if best else None, metric):
            best = row
    return best


def write_history(history: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(history).to_csv(path, index=False)
