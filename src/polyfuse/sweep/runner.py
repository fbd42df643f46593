"""The comparison loop: train each run of the grid (or of a search), write the board, keep the best."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.config import save_json
from polyfuse.eval.metrics import LOWER_IS_BETTER
from polyfuse.reporting import Reporter
from polyfuse.sweep.board import read_board, summarize, write_board
from polyfuse.sweep.engine import (
    CompareRequest,
    RunOutput,
    Workspace,
    better,
    default_grid,
    latency_ms,
    limit_threads,
    result_row,
    train_run,
)
from polyfuse.sweep.grid import RunSpec


@dataclass
class CompareResult:
    out: Path
    rows: list[dict[str, Any]]  # the leaderboard, one dict per run
    summary: pd.DataFrame  # one row per configuration, best first
    metric: str
    finished: bool  # False when the budget ran out before every run was trained

    @property
    def best_dir(self) -> Path:
        return self.out / "best"


class Session:
    """The state of one comparison directory: the board so far, the best run, the clock."""

    def __init__(self, ws: Workspace, req: CompareRequest, out: Path, rep: Reporter, data: Any):
        self.ws, self.req, self.out, self.rep, self.data = ws, req, out, rep, data
        self.board_path = out / "leaderboard.csv"
        self.rows = read_board(self.board_path)
        self.done = {r["run_id"] for r in self.rows}
        ok = [r for r in self.rows if r.get("status") == "ok"]
        self.best = _best_of(ok, ws.metric)
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
        _write_history(done.trained.history, self.out / "runs" / spec.run_id / "history.csv")
        if any(getattr(cb, "stopped_early", False) for cb in callbacks or []):
            row["status"] = "pruned"
        elif better(row["val_score"], self.best.get("val_score") if self.best else None, self.ws.metric):
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
        from polyfuse.api import Predictor

        trained = done.trained
        metrics = {
            "task": self.ws.schema.labels[0].task,
            "label": self.ws.schema.labels[0].column,
            "modalities": list(spec.modalities),
            "fusion": spec.fusion,
            "encoders": dict(spec.encoders),
            "test": trained.test,
            **trained.summary,
            "rows": {k: len(t) for k, t in done.tables.items()},
            "data": self.data,
            "compare": {"run_id": spec.run_id, "out": str(self.out)},
        }
        Predictor(done.pre, done.config, done.train, trained.model, metrics).save(self.out / "best")
        self.best = row


def run_compare(
    frame: pd.DataFrame, base_dir: Path, req: CompareRequest, out: Path, rep: Reporter, data: Any = None
) -> CompareResult:
    """Train every run of the grid (or of the search) under the budget; write the comparison directory."""
    out.mkdir(parents=True, exist_ok=True)
    threads = limit_threads()
    ws = Workspace(frame, base_dir, req)
    session = Session(ws, req, out, rep, data)
    rep.line(
        f"comparing on {len(frame)} rows, metric {ws.metric}, {threads} torch thread(s); results in {out}"
    )
    if req.search == "optuna":
        from polyfuse.sweep.search import run_search

        finished = run_search(session)
    else:
        finished = _run_grid(session, default_grid(ws, req))
    result = _finish(session, finished)
    if req.explain and (out / "best" / "config.json").is_file():
        explain_best(session)
    return result


def explain_best(session: Session) -> None:
    """``polyfuse explain`` of best/ on the test split, with Shapley values over the retrained subsets."""
    from polyfuse.api import explain
    from polyfuse.data.errors import PolyfuseError

    ws = session.ws
    rows = (ws.frame.iloc[ws.splits["test"]], ws.base_dir)
    try:
        result = explain(session.out / "best", rows, out=session.out / "explain", compare_dir=session.out)
    except PolyfuseError as err:  # e.g. the explain extra is not installed: the comparison still stands
        session.rep.line(f"explain skipped: {err}")
        return
    values = ", ".join(f"{m} {v:+.3f}" for m, v in result["shapley"]["values"].items())
    session.rep.line(
        f"modality Shapley values of best/ ({result['metric']}): {values}; see {session.out / 'explain'}"
    )


def _run_grid(session: Session, grid: list[RunSpec]) -> bool:
    todo = [s for s in grid if s.run_id not in session.done]
    session.rep.line(f"{len(grid)} runs in the grid, {len(grid) - len(todo)} already on the board")
    for spec in todo:
        left = session.time_left()
        if left is not None and left <= 0:
            session.rep.line(f"budget spent: {len(todo)} run(s) not started; run again to resume")
            return False
        session.run(spec)
        todo = todo[1:]
    return True


def _finish(session: Session, finished: bool) -> CompareResult:
    ws, out = session.ws, session.out
    summary = summarize(session.rows, ws.metric)
    if not summary.empty:
        summary.to_csv(out / "summary.csv", index=False)
    ok = [r for r in session.rows if r.get("status") == "ok"]
    info = {
        "metric": ws.metric,
        "higher_is_better": ws.metric not in LOWER_IS_BETTER,
        "label": ws.schema.labels[0].column,
        "modalities": ws.schema.modalities,
        "fusions": sorted({r["fusion"] for r in session.rows if r["n_modalities"] > 1}),
        "seeds": sorted({int(r["seed"]) for r in session.rows}),
        "best": _brief(session.best, ws.metric),
        "best_single": _brief(_best_of([r for r in ok if r["n_modalities"] == 1], ws.metric), ws.metric),
        "selection": "best validation score of a single run; test metrics are reported, never used to choose",
        "data": session.data,
        "finished": finished,
        "runs": len(session.rows),
    }
    save_json(info, out / "compare.json")
    if not summary.empty:
        from polyfuse.sweep.board import board_table

        session.rep.table(board_table(summary, ws.metric, f"Leaderboard ({ws.metric} on the test split)"))
    return CompareResult(out, session.rows, summary, ws.metric, finished)


def _best_of(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for row in rows:
        if better(row.get("val_score"), best.get("val_score") if best else None, metric):
            best = row
    return best


def _brief(row: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("run_id", "modalities", "fusion", "encoders", "seed", "val_score")
    return {**{k: row.get(k) for k in keys}, metric: row.get(f"test_{metric}")}


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(history).to_csv(path, index=False)
