"""Sections drawn from an explain directory (and the model's confusion matrix): Shapley, robustness,
confusion, error analysis, correlation and attention.
"""

from __future__ import annotations

from typing import Any

from polyfuse.htmlreport import figures
from polyfuse.htmlreport.html import Section, esc, facts, figure, fmt, note, table
from polyfuse.htmlreport.sources import RunData, float_items

EXAMPLES = 8  # example row ids shown per fix / break cell


def explain_metric(run: RunData) -> str:
    """The metric explain measured (higher is better: e.g. r2 for regression, not the model's mse)."""
    for source in (run.explain, run.shapley):
        if source and source.get("metric"):
            return str(source["metric"])
    return run.metric


def shapley(run: RunData) -> Section | None:
    data = run.shapley or {}
    values = float_items(data.get("values"))
    if not values:
        return None
    metric = explain_metric(run)
    subsets = float_items(data.get("subsets"))
    subsets_metric = str(data.get("subsets_metric", metric))
    # Subsets may span more modalities than the explained model has (compare tried them all).
    order = sorted(values, key=lambda k: -values[k]) + [m for m in subsets if m not in values]
    body = _efficiency(data, values, metric)
    body += _shapley_figure(order, values, subsets, metric, subsets_metric)
    body += _shapley_table(run, order, values, subsets, _gap(data), subsets_metric)
    if data.get("subsets_note"):
        body += note(str(data["subsets_note"]))
    body += _coalitions(data.get("coalitions"), metric, "Coalitions of this model (others masked)")
    body += _coalitions(data.get("subsets_coalitions"), subsets_metric, "Retrained subsets (compare runs)")
    body += _every_label((run.explain or {}).get("labels") or {})
    return Section("shapley", "Modality Shapley values", body)


def _every_label(labels: dict[str, Any]) -> str:
    """With several labels: each label's Shapley values by masking, as bars (a colour per label) and
    as a table (a column per label, then each label's metric with every modality and with none)."""
    if len(labels) < 2:
        return ""
    shapleys = {label: found["shapley"] for label, found in labels.items()}
    modalities = list(next(iter(shapleys.values()))["values"])
    heads = [f"{label} ({found['metric']})" for label, found in labels.items()]
    nan = float("nan")
    series = {
        head: [float(v) if isinstance(v := sh["values"].get(m), (int, float)) else nan for m in modalities]
        for head, sh in zip(heads, shapleys.values(), strict=True)
    }
    uri = figures.grouped_bars(modalities, series, "Shapley value (each label's metric)")
    caption = "Each label's modality Shapley values by masking, each in its own label's metric"
    rows = [[m, *[fmt(sh["values"].get(m)) for sh in shapleys.values()]] for m in modalities]
    rows += [["all modalities", *[fmt(sh["metric_all"]) for sh in shapleys.values()]]]
    rows += [["no modality", *[fmt(sh["metric_none"]) for sh in shapleys.values()]]]
    return (
        "<h3>Every label</h3>"
        + note("The figure above is the first label's; here every label's.")
        + figure(uri, "modality Shapley values of every label", caption + ".")
        + table(["modality", *heads], rows, numeric=range(1, len(heads) + 1))
    )


def _shapley_figure(
    order: list[str], values: dict[str, float], subsets: dict[str, float], metric: str, subsets_metric: str
) -> str:
    nan = float("nan")
    series = {"masking (this model)": [values.get(m, nan) for m in order]}
    if subsets:
        name = "retrained subsets" + ("" if subsets_metric == metric else f" ({subsets_metric})")
        series[name] = [subsets.get(m, nan) for m in order]
    caption = "Each modality's average contribution to the metric over all orders of adding modalities"
    if subsets:
        caption += ": by masking it in this model, and from the compare runs trained on each subset"
    uri = figures.grouped_bars(order, series, f"Shapley value ({metric})")
    return figure(uri, "modality Shapley values", caption + ".")


def _efficiency(data: dict[str, Any], values: dict[str, float], metric: str) -> str:
    total = sum(values.values())
    all_, none = data.get("metric_all"), data.get("metric_none")
    pairs = [
        (f"{metric}, all modalities", fmt(all_)),
        (f"{metric}, no modality", fmt(none)),
        ("sum of Shapley values", fmt(total)),
    ]
    html = facts(pairs)
    if isinstance(all_, (int, float)) and isinstance(none, (int, float)):
        gap = float(all_) - float(none)
        if abs(total - gap) <= 1e-6:
            html += note(f"Efficiency holds: the values sum to metric_all − metric_none = {gap:.4f}.")
        else:
            html += note(
                f"The values sum to {total:.6f}, not metric_all − metric_none = {gap:.6f}.", warn=True
            )
    return html


def _shapley_table(
    run: RunData,
    order: list[str],
    values: dict[str, float],
    subsets: dict[str, float],
    gap: float,
    subsets_metric: str,
) -> str:
    per_sample = run.shapley_per_sample
    headers = ["modality", "Shapley value", "share of gain"]
    if subsets:
        headers.append(f"retrained subsets ({subsets_metric})")
    if per_sample is not None:
        headers.append(f"mean |value| per row ({len(per_sample)} rows)")
    rows = []
    for m in order:
        value = values.get(m)
        share = f"{100 * value / gap:.1f}%" if gap and value is not None else "–"
        row: list[Any] = [m, value, share]
        if subsets:
            row.append(subsets.get(m))
        if per_sample is not None:
            row.append(float(per_sample[m].abs().mean()) if m in per_sample else None)
        rows.append(row)
    return table(headers, rows, numeric=range(1, len(headers)))


def _gap(data: dict[str, Any]) -> float:
    try:
        return float(data["metric_all"]) - float(data["metric_none"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def _coalitions(coalitions: Any, metric: str, title: str) -> str:
    """Metric per set of modalities present, smallest sets first (with the fusion when recorded)."""
    if not isinstance(coalitions, list) or not coalitions:
        return ""
    items = [c for c in coalitions if isinstance(c, dict) and isinstance(c.get("metric"), (int, float))]
    items.sort(key=lambda c: (len(c.get("modalities") or []), -float(c["metric"])))
    with_fusion = any("fusion" in c for c in items)
    headers = ["modalities present"] + (["fusion"] if with_fusion else []) + [metric]
    rows = [
        ["+".join(c.get("modalities") or []) or "(none)"]
        + ([c.get("fusion") or "–"] if with_fusion else [])
        + [c["metric"]]
        for c in items
    ]
    return f"<h3>{esc(title)}</h3>" + table(headers, rows, numeric=[len(headers) - 1])


def robustness(run: RunData) -> Section | None:
    data = (run.explain or {}).get("robustness")
    if not isinstance(data, dict) or not data:
        return None
    metric = explain_metric(run)
    panels: list[tuple[str, str, str, figures.Curves]] = []
    for kind, title, xlabel in (
        ("drop", "modality dropped", "drop rate"),
        ("noise", "noise added", "noise level"),
    ):
        curves = {str(m): _xy(v.get(kind)) for m, v in data.items() if isinstance(v, dict)}
        curves = {m: xy for m, xy in curves.items() if xy[0]}
        if curves:
            panels.append((title, xlabel, metric, curves))
    if not panels:
        return None
    on_embedding = [
        str(m) for m, v in data.items() if isinstance(v, dict) and v.get("noise_on") == "embedding"
    ]
    caption = "Test metric as one modality at a time is dropped from a share of rows, or perturbed by noise"
    if on_embedding:
        caption += f" (added to the embedding of {', '.join(on_embedding)}, whose inputs are not numeric)"
    body = figure(figures.line_panels(panels), "robustness curves", caption + ".")
    body += _robustness_table(data, metric)
    further = list(((run.explain or {}).get("labels") or {}).items())[1:]  # the first label's is above
    for label, found in further:
        if isinstance(found, dict) and isinstance(found.get("robustness"), dict):
            body += f"<h3>{esc(label)}</h3>" + _robustness_table(
                found["robustness"], str(found.get("metric"))
            )
    return Section("robustness", "Robustness", body)


def _xy(points: Any) -> tuple[list[float], list[float]]:
    """[[x, y], ...] -> (xs, ys), leaving out points without a value (NaN is written as null)."""
    if not isinstance(points, list):
        return [], []
    pairs = [p for p in points if isinstance(p, (list, tuple)) and len(p) == 2 and None not in p]
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def _robustness_table(data: dict[str, Any], metric: str) -> str:
    rows = []
    for m, kinds in data.items():
        for kind in ("drop", "noise"):
            xs, ys = _xy((kinds or {}).get(kind))
            if ys:
                rows.append([m, kind, ys[0], f"{ys[-1]:.4f} at {xs[-1]:g}", ys[-1] - ys[0]])
    headers = ["modality", "perturbation", f"{metric} unperturbed", f"{metric} at the strongest", "change"]
    return table(headers, rows, numeric=[2, 3, 4])


def confusion(run: RunData) -> Section | None:
    """The fused model's confusion matrix on the test rows; with several labels, one per
    classification label (panels side by side, a recall table each)."""
    found, source = _confusions(run)
    if not found:
        return None
    several = len(found) > 1
    panels = [
        (label if several else "test rows", matrix, names, names) for label, (matrix, names) in found.items()
    ]
    uri = figures.heatmaps(panels, row_normalize=True, fmt="{:.0f}", axis_labels=("predicted", "true"))
    body = figure(
        uri,
        "confusion matrix",
        f"Rows: true class, columns: predicted class; counts from {source}, "
        "shaded by the share of each true class.",
    )
    for label, (matrix, names) in found.items():
        rows = []
        for name, counts in zip(names, matrix, strict=True):
            total, hit = sum(counts), counts[names.index(name)]
            rows.append([name, total, hit, hit / total if total else None])
        title = f"<h3>{esc(label)}</h3>" if several else ""
        body += title + table(["class", "rows", "correct", "recall"], rows, numeric=[1, 2, 3])
    return Section("confusion", "Confusion matrices" if several else "Confusion matrix", body)


def _confusions(run: RunData) -> tuple[dict[str, tuple[list[Any], list[str]]], str]:
    """Label -> (matrix, class names) for every classification label, from explain.json (its
    ``labels``, else its top level: the first label's) or else the test metrics; and that source."""
    explain = run.explain or {}
    first = run.labels[0] if run.labels else ""
    found = {
        label: (data.get("matrix"), data.get("classes"))
        for label, data in _per_label(explain.get("labels"), first, explain, "confusion").items()
        if isinstance(data, dict) and data.get("matrix")
    }
    source = "explain.json"
    if not found:
        test = (run.metrics or {}).get("test") or {}
        found = {
            label: (matrix, run.label_classes.get(label) or run.classes)
            for label, matrix in _per_label(test.get("by_label"), first, test, "confusion_matrix").items()
        }
        source = "metrics.json"
    return {
        label: (matrix, _class_names(classes, matrix))
        for label, (matrix, classes) in found.items()
        if isinstance(matrix, list) and matrix
    }, source


def _per_label(several: Any, first: str, alone: dict[str, Any], key: str) -> dict[str, Any]:
    """Label -> its ``key`` where set: from the per-label blocks ``several`` when a dict, else from
    ``alone`` (the one label's)."""
    blocks = several if isinstance(several, dict) else {first: alone}
    return {str(k): v[key] for k, v in blocks.items() if isinstance(v, dict) and v.get(key)}


def _class_names(classes: Any, matrix: list[Any]) -> list[str]:
    if classes and len(classes) == len(matrix):
        return [str(c) for c in classes]
    return [str(i) for i in range(len(matrix))]


def errors(run: RunData) -> Section | None:
    """Metric by presence pattern and fix / break against each modality alone, for every label
    (explain.json's ``labels``, one heading each; else its top level: the one label's)."""
    explain = run.explain or {}
    several = explain.get("labels")
    blocks = several if isinstance(several, dict) and len(several) > 1 else {"": explain}
    body = ""
    for label, data in blocks.items():
        if not isinstance(data, dict):
            continue
        part = _presence(data.get("presence"), str(data.get("metric") or explain_metric(run)))
        part += _fix_break(data.get("fix_break"), data.get("fix_break_rule"))
        body += (f"<h3>{esc(label)}</h3>" + part) if label and part else part
    return Section("errors", "Error analysis", body) if body else None


def _presence(presence: Any, metric: str) -> str:
    if not isinstance(presence, list) or not presence:
        return ""
    rows = [
        ["+".join(p.get("present") or []) or "(none)", p.get("rows"), p.get("metric")]
        for p in presence
        if isinstance(p, dict)
    ]
    return (
        "<h3>By modalities present</h3>"
        + note("Test rows grouped by which modalities they actually carry.")
        + table(["modalities present", "rows", metric], rows, numeric=[1, 2])
    )


def _fix_break(fix_break: Any, rule: Any) -> str:
    if not isinstance(fix_break, dict) or not fix_break:
        return ""
    rows = []
    for m, v in fix_break.items():
        fixed, broken = int(v.get("fixed") or 0), int(v.get("broken") or 0)
        rows.append(
            [
                m,
                fixed,
                broken,
                v.get("both_right"),
                v.get("both_wrong"),
                fixed - broken,
                _ids(v.get("examples_fixed")),
                _ids(v.get("examples_broken")),
            ]
        )
    headers = [
        "vs modality alone",
        "fixed",
        "broken",
        "both right",
        "both wrong",
        "net",
        "rows fixed (e.g.)",
        "rows broken (e.g.)",
    ]
    return (
        "<h3>Fixed and broken by fusion</h3>"
        + note(
            "Fixed: the fused model is right where the model of that modality alone is wrong; "
            "broken: the reverse." + (f" Right means: {rule}." if rule else "")
        )
        + table(headers, rows, numeric=[1, 2, 3, 4, 5])
    )


def _ids(ids: Any) -> str:
    if not isinstance(ids, list) or not ids:
        return "–"
    shown = ", ".join(str(i) for i in ids[:EXAMPLES])
    return shown + (f" … (+{len(ids) - EXAMPLES})" if len(ids) > EXAMPLES else "")


def correlation(run: RunData) -> Section | None:
    data = (run.explain or {}).get("correlation")
    if not isinstance(data, dict) or not data.get("modalities"):
        return None
    names = [str(m) for m in data["modalities"]]
    maps = [
        (title, data[key], names, names)
        for key, title in (("cka", "linear CKA"), ("cca", "mean CCA"))
        if data.get(key)
    ]
    if not maps:
        return None
    body = figure(
        figures.heatmaps(maps, cmap="Purples"),
        "representation similarity between modalities",
        "Similarity of the modality embeddings on the test rows "
        "(1: the same information up to a linear map).",
    )
    return Section("correlation", "Correlation between modalities", body)


def attention(run: RunData) -> Section | None:
    weights = float_items((run.explain or {}).get("attention"))
    if not weights:
        return None
    order = sorted(weights, key=lambda k: -weights[k])
    uri = figures.hbars(
        order,
        [weights[m] for m in order],
        [figures.series_color(i) for i in range(len(order))],
        "mean weight",
    )
    body = figure(
        uri, "fusion attention per modality", "Mean weight the fusion gives each modality over the test rows."
    )
    return Section("attention", "Fusion attention", body)
