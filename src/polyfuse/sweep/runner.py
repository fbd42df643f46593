"""The comparison loop: train each run of the grid (or of a search), write the board, keep the best."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.config import save_json
from polyfuse.errors import PolyfuseError
from polyfuse.eval.metrics import LOWER_IS_BETTER
from polyfuse.eval.subsets import read_compare_json
from polyfuse.formats import COMPARE_FORMAT
from polyfuse.predictor import load
from polyfuse.reporting import Reporter
from polyfuse.sweep.board import summarize
from polyfuse.sweep.engine import (
    CompareRequest,
    Workspace,
    default_grid,
    limit_threads,
)
from polyfuse.sweep.grid import RunSpec
from polyfuse.sweep.session import Session, best_of


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


def run_compare(
    frame: pd.DataFrame, base_dir: Path, req: CompareRequest, out: Path, rep: Reporter, data: Any = None
) -> CompareResult:
    """Train every run of the grid (or of the search) under the budget; write the comparison directory."""
    out.mkdir(parents=True, exist_ok=True)
    threads = limit_threads()
    read_compare_json(out)  # refuse to resume a comparison of a newer format before any data work
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
    ws = session.ws
    rows = (ws.frame.iloc[ws.splits["test"]], ws.base_dir)
    try:
        best = load(session.out / "best")
        result = best.explain(rows, out=session.out / "explain", compare_dir=session.out)
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
        "format": COMPARE_FORMAT,
        "metric": ws.metric,
        "higher_is_better": ws.metric not in LOWER_IS_BETTER,
        "val_metric": ws.val_metric,
        "label": ws.schema.labels[0].column,
        "modalities": ws.schema.modalities,
        "fusions": sorted({r["fusion"] for r in session.rows if r["n_modalities"] > 1}),
        "balances": sorted({r["balance"] for r in session.rows if r["n_modalities"] > 1}),
        "seeds": sorted({int(r["seed"]) for r in session.rows}),
        "best": _brief(session.best, ws.metric),
        "best_single": _brief(best_of([r for r in ok if r["n_modalities"] == 1], ws.val_metric), ws.metric),
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


def _brief(row: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("run_id", "modalities", "fusion", "balance", "encoders", "seed", "val_score")
    return {**{k: row.get(k) for k in keys}, metric: row.get(f"test_{metric}")}
