"""The summary line and the sections about models and comparisons: overview, leaderboard, training.

Each builder takes the ``RunData`` and returns a ``Section`` or None when its data is absent.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from polyfuse.htmlreport import figures
from polyfuse.htmlreport.html import Section, esc, facts, figure, fmt, note, table
from polyfuse.htmlreport.sources import RunData, float_items

CHART_ROWS = 40  # configurations drawn in the leaderboard chart (the table lists all)


def config_name(row: Any, sep: str = " with ") -> str:
    """ "image+audio with gmu" ("... with gmu (aux)" for a balancing strategy), or "image" alone for a
    single modality (fusion and balancing do not apply)."""
    n = _int(row.get("n_modalities"), default=len(str(row.get("modalities", "")).split("+")))
    balance = row.get("balance")
    balanced = f" ({balance})" if isinstance(balance, str) and balance != "none" else ""
    return str(row["modalities"]) if n <= 1 else f"{row['modalities']}{sep}{row.get('fusion', '?')}{balanced}"


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _best(scores: dict[str, float], higher: bool) -> tuple[str, float] | None:
    finite = {k: v for k, v in scores.items() if v == v}  # NaN != NaN
    if not finite:
        return None
    name = (max if higher else min)(finite, key=lambda k: finite[k])
    return name, finite[name]


def summary_line(run: RunData) -> str:
    """One line under the title: the best configuration, the best single modality, the top Shapley value."""
    if run.summary is not None and len(run.summary):
        parts = _compare_summary(run.summary, run.metric) + _saved_model(run)
    else:
        parts = _model_summary(run.metrics or {}, run.metric, run.higher_is_better)
    top = _best(float_items((run.shapley or {}).get("values")), True)
    if top:
        parts.append(f"largest Shapley value: <b>{esc(top[0])}</b> ({top[1]:+.3f})")
    return "; ".join(parts) or "no results found"


def _compare_summary(summary: pd.DataFrame, metric: str) -> list[str]:
    top = summary.iloc[0]
    score = f"{top[f'{metric}_mean']:.3f} ± {top.get(f'{metric}_std', 0.0):.3f}"
    parts = [f"best: <b>{esc(config_name(top))}</b>, {esc(metric)} {esc(score)}"]
    if "n_modalities" in summary:
        single = summary[summary["n_modalities"].astype(int) == 1]
        if len(single):
            row = single.iloc[0]
            parts.append(f"best single modality: <b>{esc(row['modalities'])}</b> {row[f'{metric}_mean']:.3f}")
    return parts


def _saved_model(run: RunData) -> list[str]:
    """compare saves one run as best/ (chosen on validation): name it when it is not the top row."""
    best = (run.compare or {}).get("best") or {}
    if not best.get("modalities") or run.summary is None:
        return []
    top = run.summary.iloc[0]
    if (str(best["modalities"]), str(best.get("fusion"))) == (str(top["modalities"]), str(top.get("fusion"))):
        return []
    name = config_name({**best, "n_modalities": len(str(best["modalities"]).split("+"))})
    return [f"saved model (best/, chosen on validation): <b>{esc(name)}</b>"]


def _model_summary(m: dict[str, Any], metric: str, higher: bool) -> list[str]:
    if not m:
        return []
    name = f"{'+'.join(m.get('modalities', []))} with {m.get('fusion', '?')}"
    score = (m.get("test") or {}).get(metric)
    parts = [f"model: <b>{esc(name)}</b>, test {esc(metric)} {esc(fmt(score, 3))}"]
    baselines = {k: (v.get("test") or {}).get(metric) for k, v in (m.get("baselines") or {}).items()}
    best = _best(float_items(baselines), higher)
    if best:
        parts.append(f"best single modality: <b>{esc(best[0])}</b> {best[1]:.3f}")
    return parts


def overview(run: RunData) -> Section | None:
    m, c, e = run.metrics or {}, run.compare or {}, run.explain or {}
    if not (m or c or e):
        return None
    explained = f"{e['rows']} test rows explained" if e.get("rows") else None
    body = facts(
        [
            ("task", m.get("task") or e.get("task")),
            ("labels" if len(run.labels) > 1 else "label", ", ".join(run.labels)),
            (
                "modalities",
                ", ".join(c.get("modalities") or m.get("modalities") or e.get("modalities") or []),
            ),
            ("primary metric", run.metric),
            ("fusions compared", ", ".join(c.get("fusions") or [])),
            ("seeds", ", ".join(str(s) for s in c.get("seeds") or [])),
            ("runs", _run_counts(run)),
            ("data", _data_source(c.get("data") or m.get("data"), bool(m or c))),
            ("data rows", _rows(m.get("rows")) or explained),
        ]
    )
    if m:
        title = "Best model (best/)" if run.kind == "compare" else "Model"
        body += f"<h3>{esc(title)}</h3>" + facts(
            [
                ("modalities", "+".join(m.get("modalities") or [])),
                ("fusion", m.get("fusion") if len(m.get("modalities") or []) != 1 else None),
                ("chosen by", c.get("selection")),
                ("encoders", ", ".join(f"{k}={v}" for k, v in (m.get("encoders") or {}).items())),
                ("epochs", _epochs(m)),
                ("parameters", fmt(m.get("params"))),
                ("train seconds", fmt(m.get("train_seconds"), 1)),
                ("folder", str(run.model_dir) if run.model_dir else None),
            ]
        )
        body += every_label_metrics(m)
    return Section("overview", "Overview", body)


def _run_counts(run: RunData) -> str | None:
    board = run.leaderboard
    if board is None or "status" not in board:
        return None
    ok = int((board["status"] == "ok").sum())
    text = f"{ok} finished, {len(board) - ok} failed"
    if run.compare and run.compare.get("finished") is False:
        text += " (comparison not finished)"
    return text


def _data_source(data: Any, known: bool) -> str | None:
    if isinstance(data, dict) and data.get("dataset"):
        return f"{data['dataset']} (built-in dataset)"
    if isinstance(data, dict) and data.get("table"):
        return str(data["table"])
    return "an in-memory table" if known and data is None else None


def _rows(rows: Any) -> str | None:
    if isinstance(rows, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in rows.items())
    return None if rows is None else fmt(rows)


def _epochs(m: dict[str, Any]) -> str | None:
    if m.get("epochs") is None:
        return None
    best = m.get("best_epoch")
    return f"{m['epochs']}" + (f" (best epoch {best})" if best is not None else "")


def every_label_metrics(m: dict[str, Any]) -> str:
    """The test metrics table; with several labels (``by_label`` in metrics.json) one per label."""
    by_label = (m.get("test") or {}).get("by_label")
    if not isinstance(by_label, dict) or len(by_label) < 2:
        return test_metrics_table(m)
    return "".join(
        f"<h3>Test metrics: {esc(label)}</h3>" + test_metrics_table(m, str(label)) for label in by_label
    )


def test_metrics_table(m: dict[str, Any], label: str | None = None) -> str:
    """Test metrics of the final model, the fused network (when it is not the final one) and each
    single-modality baseline: one row per metric. ``label``: that label's metrics (``by_label``)
    rather than the first label's."""

    def pick(test: Any) -> dict[str, Any]:
        test = test or {}
        return (test.get("by_label") or {}).get(label) or {} if label is not None else test

    test = pick(m.get("test"))
    final = m.get("final_model", "fused")  # metrics.json before ensembles: the fused model's
    fused = m.get("fused") or {}
    columns = {f"final: {final}" if final != "fused" else f"fused ({m.get('fusion', '?')})": test}
    if final != "fused" and fused.get("test"):
        columns[f"fused ({fused.get('fusion', '?')})"] = pick(fused["test"])
    columns |= {f"{k} alone": pick(v.get("test")) for k, v in (m.get("baselines") or {}).items()}
    names = [k for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not names:
        return ""
    rows = [[name, *[c.get(name) for c in columns.values()]] for name in names]
    return table(["test metric", *columns], rows, numeric=range(1, len(columns) + 1))


def imbalance(run: RunData) -> Section | None:
    """The fused model's modality imbalance: linear probes inside it vs alone, gradient shares per epoch."""
    found = (run.metrics or {}).get("imbalance") or {}
    probe, shares = found.get("probe") or {}, found.get("grad_share") or {}
    body = ""
    scored = {m: p for m, p in probe.items() if p.get("fused") is not None and p.get("single") is not None}
    if scored:
        series = {
            "in the fused model": [p["fused"] for p in scored.values()],
            "alone": [p["single"] for p in scored.values()],
        }
        body += figure(
            figures.grouped_bars(list(scored), series, "probe score"),
            "linear probes",
            "Validation score of a linear probe on each modality's embedding, from the fused model's encoder "
            "and from that modality's own single-modality model. A probe well below its twin means the fused "
            "training starved that encoder.",
        )
    if shares:
        curves = {m: (list(range(len(v))), v) for m, v in shares.items()}
        body += figure(
            figures.line_panels([("gradient share", "epoch", "share of the encoders' gradient", curves)]),
            "gradient shares",
            "Each modality's share of the encoders' gradient norm per epoch of the fused model's training.",
        )
    return Section("imbalance", "Modality imbalance", body) if body else None


def cascade(run: RunData) -> Section | None:
    """The modality cascade: score against milliseconds per row, on validation (fit's plan) and
    measured end to end on the explained rows (explain.json), with the order and encoder costs."""
    plan = (run.metrics or {}).get("cascade") or (run.explain or {}).get("cascade")
    if not plan:
        return None
    planned = plan.get("curve") or plan["validation"]  # metrics.json's plan, or explain.json's copy of it
    curves = {
        "validation (encoders only)": ([p["ms_per_row"] for p in planned], [p["val_score"] for p in planned])
    }
    measured = ((run.explain or {}).get("cascade") or {}).get("measured")
    if measured:
        curves["measured on the explained rows (end to end)"] = (
            [p["ms_per_row"] for p in measured],
            [p["score"] for p in measured],
        )
    costs = ", ".join(f"{m} {plan['encoder_ms'][m]:.3g} ms" for m in plan["order"])
    body = figure(
        figures.line_panels([("modality cascade", "milliseconds per row", "score", curves)]),
        "cascade curve",
        f"Modalities run cheapest first ({costs} per row for the encoder) and a row stops once its "
        "prediction is confident enough; each point is one confidence threshold, from stopping after the "
        "first modality to running every modality. `polyfuse predict --budget-ms` and `polyfuse serve "
        "--budget-ms` pick the validation point that scores best within the budget.",
    )
    return Section("cascade", "Dynamic modality selection", body)


def leaderboard(run: RunData) -> Section | None:
    summary, metric = run.summary, run.metric
    if summary is None or not len(summary):
        return None
    headers = [
        "#",
        "modalities",
        "fusion",
        "encoders",
        "seeds",
        f"test {metric} (mean ± std)",
        "params",
        "train s",
        "ms / sample",
    ]
    rows = [
        [
            i + 1,
            row["modalities"],
            row.get("fusion") if _int(row.get("n_modalities"), 2) > 1 else "–",
            str(row.get("encoders", "")).replace(";", ", "),
            _int(row.get("seeds"), 1),
            f"{row[f'{metric}_mean']:.4f} ± {row.get(f'{metric}_std', 0.0):.4f}",
            _maybe_int(row.get("params")),
            fmt(row.get("train_seconds_mean"), 1),
            fmt(row.get("latency_ms"), 3),
        ]
        for i, (_, row) in enumerate(summary.iterrows())
    ]
    options = [_options(v) for v in summary.get("params_json", pd.Series([""] * len(summary)))]
    if any(options):  # searched hyper-parameters tell otherwise identical rows apart
        headers.insert(4, "options")
        rows = [[*r[:4], o or "–", *r[4:]] for r, o in zip(rows, options, strict=True)]
    column = summary.get("balance", pd.Series([None] * len(summary)))
    balances = [b if isinstance(b, str) else "none" for b in column]  # boards before the balance axis
    if any(b != "none" for b in balances):  # a comparison of balancing strategies
        headers.insert(3, "balance")
        rows = [[*r[:3], b if r[2] != "–" else "–", *r[3:]] for r, b in zip(rows, balances, strict=True)]
    numeric = [0] + list(range(len(headers) - 5, len(headers)))
    order = "higher is better" if run.higher_is_better else "lower is better"
    body = note(f"{len(summary)} configurations, best first ({metric}: {order}); mean ± std over seeds.")
    body += table(headers, rows, numeric=numeric, highlight_first=True)
    body += figure(
        _leaderboard_chart(summary, metric), f"test {metric} per configuration", _chart_caption(summary)
    )
    return Section("leaderboard", "Leaderboard", body + _failed_runs(run))


def _options(params_json: Any) -> str:
    """'{"fusion": {"hidden_dim": 64}, "lr": 0.001}' -> 'fusion.hidden_dim=64, lr=0.001'; "" for none."""
    if not isinstance(params_json, str) or params_json.strip() in ("", "{}"):
        return ""
    try:
        value = json.loads(params_json)
    except ValueError:
        return params_json
    return ", ".join(f"{k}={v}" for k, v in _flat(value)) if isinstance(value, dict) else str(value)


def _flat(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        items += _flat(item, f"{name}.") if isinstance(item, dict) else [(name, item)]
    return items


def _maybe_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value == value else value


def _leaderboard_chart(summary: pd.DataFrame, metric: str) -> str:
    shown = summary.head(CHART_ROWS)
    counts = [_int(n, 1) for n in shown.get("n_modalities", pd.Series([1] * len(shown)))]
    legend = {f"{n} modalit{'y' if n == 1 else 'ies'}": figures.count_color(n) for n in sorted(set(counts))}
    errors = shown[f"{metric}_std"].fillna(0.0).tolist() if f"{metric}_std" in shown else None
    return figures.hbars(
        [config_name(r, " · ") for _, r in shown.iterrows()],
        shown[f"{metric}_mean"].tolist(),
        [figures.count_color(n) for n in counts],
        xlabel=f"test {metric}",
        errors=errors,
        legend=legend,
        zoom=True,
    )


def _chart_caption(summary: pd.DataFrame) -> str:
    extra = f" (the best {CHART_ROWS} of {len(summary)})" if len(summary) > CHART_ROWS else ""
    return (
        f"Test metric per configuration{extra}, coloured by number of modalities; bars show ± std over seeds."
    )


def _failed_runs(run: RunData) -> str:
    board = run.leaderboard
    if board is None or "status" not in board:
        return ""
    failed = board[board["status"] != "ok"]
    if failed.empty:
        return ""
    rows = [
        [r.get("run_id"), r.get("modalities"), r.get("fusion"), str(r.get("error", ""))[:300]]
        for _, r in failed.iterrows()
    ]
    return "<h3>Failed runs</h3>" + table(["run", "modalities", "fusion", "error"], rows)


def training(run: RunData) -> Section | None:
    body = ""
    log = run.log if run.log is not None else _best_history(run)
    if log is not None and len(log):
        body += _loss_figure(log, run)
    if len(run.histories) > 1:
        body += _runs_figure(run)
    return Section("training", "Training curves", body) if body else None


def _best_history(run: RunData) -> pd.DataFrame | None:
    best = (run.compare or {}).get("best") or {}
    return run.histories.get(str(best.get("run_id"))) if best else None


def _loss_figure(log: pd.DataFrame, run: RunData) -> str:
    epochs = log["epoch"].tolist()
    losses = {c: (epochs, log[c].tolist()) for c in ("train_loss", "val_loss") if c in log}
    scores = {c: (epochs, log[c].tolist()) for c in log if c.startswith("val_") and c != "val_loss"}
    panels = [
        (title, "epoch", title, curves)
        for title, curves in (("loss", losses), ("validation metric", scores))
        if curves
    ]
    if not panels:
        return ""
    best_epoch = (run.metrics or {}).get("best_epoch")
    uri = figures.line_panels(
        panels, vline=float(best_epoch) if best_epoch is not None else None, integer_x=True
    )
    where = "best/logs/metrics.csv" if run.kind == "compare" and run.log is not None else "the training log"
    which = "best model" if run.kind == "compare" else "model"
    caption = f"Per-epoch loss and validation metric of the {which} ({where})"
    return figure(
        uri,
        "training curves",
        caption + ("; dashed: the epoch whose weights were kept." if best_epoch is not None else "."),
    )


def _runs_figure(run: RunData) -> str:
    val_metric = str((run.compare or {}).get("val_metric") or run.metric)  # "score" with several labels
    column = f"val_{val_metric}"
    counts: dict[str, int] = {}
    if run.leaderboard is not None and {"run_id", "n_modalities"} <= set(run.leaderboard):
        counts = {
            str(r): _int(n, 1)
            for r, n in zip(run.leaderboard["run_id"], run.leaderboard["n_modalities"], strict=True)
        }
    curves = {
        rid: (h["epoch"].tolist(), h[column].tolist(), figures.count_color(counts.get(rid, 1)))
        for rid, h in run.histories.items()
        if {"epoch", column} <= set(h)
    }
    if not curves:
        return ""
    used = sorted({counts.get(rid, 1) for rid in curves})
    legend = {f"{n} modalit{'y' if n == 1 else 'ies'}": figures.count_color(n) for n in used}
    uri = figures.colored_lines("epoch", f"validation {val_metric}", curves, legend)
    caption = (
        f"Validation {val_metric} per epoch of every run ({len(curves)} runs/*/history.csv), "
        "coloured by number of modalities."
    )
    return figure(uri, "validation curves of every run", caption)


def explain_hint(run: RunData) -> Section | None:
    """Where explanations would go, and the command that produces them, when there are none."""
    if run.explain is not None or run.shapley is not None or run.model_dir is None:
        return None
    out = run.root / "explain"
    command = f"polyfuse explain {run.model_dir} --out {out}"
    body = (
        note(
            "This run has no explain/ folder, so modality Shapley values, robustness curves, error analysis, "
            "representation correlation, attention and feature attribution are not shown. Produce them with:"
        )
        + f"<p><code>{esc(command)}</code></p>"
        + note(f"then run polyfuse report {run.root} again.")
    )
    return Section("explain-missing", "Explanations", body)
