"""``polyfuse explain``: who contributes what, and where fusion fails; writes an explain directory.

OUT/shapley.json, OUT/shapley_per_sample.csv, OUT/explain.json and the PNG figures it lists (the
formats are in the project's notes: "An explain directory"). The top level is the model's first
label; with several labels, ``labels`` repeats every label-dependent analysis for each of them (feature
attributions stay the first label's: they need gradients or permutations per label).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from polyfuse.data.batch import EncodedTable
from polyfuse.eval.attribution import attribute, method_of
from polyfuse.eval.contributions import ModalityShapley, modality_shapley, shapley_record
from polyfuse.eval.correlation import similarity_matrices
from polyfuse.eval.errors import (
    REGRESSION_TOLERANCE,
    attention_weights,
    confusion,
    fix_break,
    presence_patterns,
)
from polyfuse.eval.gradients import Attribution, require_captum
from polyfuse.eval.probe import Probe, value_metric
from polyfuse.eval.robustness import NoisyFeatures, robustness
from polyfuse.formats import EXPLAIN_FORMAT


def explain_table(
    predictor: Any,
    table: EncodedTable,
    out: str | Path | None = None,
    compare_dir: str | Path | None = None,
    *,
    seed: int = 0,
    samples: int = 8,
    steps: int = 24,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Explain a Predictor on encoded, labelled rows; write the explain directory when ``out`` is set.

    Returns explain.json's content, with shapley.json's under "shapley".
    """
    kinds = {spec.name: spec.kind for spec in predictor.schema.inputs}
    if any(getattr(method_of(kind), "gradients", False) for kind in kinds.values()):
        require_captum()  # fail before the work, with the extra's name
    if out is not None:
        from polyfuse.eval.figures import pyplot

        pyplot()
    spec = predictor.schema.labels[0]
    probe = Probe.build(predictor.model, table, spec, batch_size)
    contributions = modality_shapley(probe)
    shapley = shapley_record(contributions, probe)
    if compare_dir is not None:
        from polyfuse.eval.subsets import subset_shapley

        shapley.update(subset_shapley(compare_dir, spec.task, probe.targets, len(spec.classes)))
    attributions = attribute(probe, kinds, predictor.preprocessor.processors, samples, steps, seed)
    encoded: NoisyFeatures = {}  # the robustness curves' noisy encodings, shared by every label
    first = label_record(probe, contributions, seed, encoded)
    result = _analyses(probe, first)
    result["features"] = {m: a.summary for m, a in attributions.items()}
    result["shapley"] = shapley
    if len(predictor.schema.labels) > 1:
        result["labels"] = {spec.column: first} | every_label(
            predictor.model, table, predictor.schema.labels[1:], probe, seed, encoded
        )
    if predictor.metrics.get("imbalance"):  # measured at fit time, where the baselines were at hand
        result["imbalance"] = predictor.metrics["imbalance"]
    if predictor.metrics.get("cascade"):
        result["cascade"] = cascade_record(predictor, table)
    if out is not None:
        write_directory(Path(out), result, contributions, attributions, kinds)
    return result


def every_label(
    model: Any,
    table: EncodedTable,
    specs: list[Any],
    first: Probe,
    seed: int,
    encoded: NoisyFeatures | None = None,
) -> dict[str, dict[str, Any]]:
    """explain.json's ``labels`` entries of ``specs``: per label, the analyses that depend on the label
    (``label_record``). The fusion inputs are ``first``'s, computed once, and the robustness curves'
    noisy encodings are shared through ``encoded``: a further label costs fusion and head passes only.
    Correlation and attention do not depend on the label, and feature attributions are kept to the
    first label (one gradient or permutation pass per label would multiply their cost)."""
    out = {}
    for spec in specs:
        probe = Probe(model, spec, table, first.features, first.batch_size)
        out[spec.column] = label_record(probe, modality_shapley(probe), seed, encoded)
    return out


def label_record(
    probe: Probe, contributions: ModalityShapley, seed: int, encoded: NoisyFeatures | None = None
) -> dict[str, Any]:
    """One label's entry of explain.json's ``labels``: its modality Shapley values, metric by presence
    pattern, fix / break, robustness and confusion (the top level holds the first label's)."""
    everyone = contributions.outputs[frozenset(probe.modalities)]
    singles = {m: contributions.outputs[frozenset({m})] for m in probe.modalities}
    rule = (
        "predicted label correct"
        if probe.task != "regression"
        else (f"|error| <= {REGRESSION_TOLERANCE} x std of the label")
    )
    return {
        "task": probe.task,
        "metric": value_metric(probe.task),
        "shapley": shapley_record(contributions, probe),
        "presence": presence_patterns(probe, everyone),
        "fix_break": fix_break(probe, everyone, singles),
        "fix_break_rule": rule,
        "robustness": robustness(probe, seed=seed, encoded=encoded),
        "confusion": confusion(probe, everyone),
    }


def cascade_record(predictor: Any, table: EncodedTable) -> dict[str, Any]:
    """explain.json's ``cascade``: the modality cascade run for real on these rows at a few
    thresholds, timed end to end (score and milliseconds per row), beside fit's validation curve."""
    from polyfuse.eval.cascade import measured_curve

    plan = predictor.metrics["cascade"]
    return {
        "order": plan["order"],
        "encoder_ms": plan["encoder_ms"],
        "measured": measured_curve(predictor.model, table, predictor.schema.labels, plan["order"]),
        "validation": plan["curve"],
        "metric": "selection score (mean over labels)"
        if len(predictor.schema.labels) > 1
        else value_metric(predictor.schema.labels[0].task),
    }


def _analyses(probe: Probe, first: dict[str, Any]) -> dict[str, Any]:
    """Everything in explain.json that needs no gradients: the first label's ``label_record`` and the
    analyses that do not depend on the label."""
    embeddings = {m: e.numpy() for m, e in probe.embeddings().items()}
    present = {m: p.numpy() for m, p in probe.present.items()}
    return {
        "metric": first["metric"],
        "label": probe.spec.column,
        "task": probe.task,
        "modalities": probe.modalities,
        "rows": len(probe),
        "presence": first["presence"],
        "fix_break": first["fix_break"],
        "fix_break_rule": first["fix_break_rule"],
        "robustness": first["robustness"],
        "correlation": similarity_matrices(embeddings, present),
        "attention": attention_weights(probe),
        "confusion": first["confusion"],
        "figures": {},
    }


def write_directory(
    out: Path,
    result: dict[str, Any],
    contributions: ModalityShapley,
    attributions: dict[str, Attribution],
    kinds: dict[str, str],
) -> None:
    """shapley.json, shapley_per_sample.csv, the figures, then explain.json (listing them)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "shapley.json", result["shapley"])
    contributions.per_sample.to_csv(out / "shapley_per_sample.csv", index=False)
    result["figures"] = draw_figures(out, result, attributions, kinds)
    write_json(out / "explain.json", {"format": EXPLAIN_FORMAT, **result})


def draw_figures(
    out: Path, result: dict[str, Any], attributions: dict[str, Attribution], kinds: dict[str, str]
) -> dict[str, str]:
    """Figure name -> PNG file name inside ``out``."""
    from polyfuse.eval import figures

    metric, shapley = result["metric"], result["shapley"]
    drawn = {
        "shapley": figures.shapley_bars(
            out / "shapley.png", shapley["values"], metric, shapley.get("subsets")
        ),
        **_label_figures(out, result),
        "robustness": figures.robustness_curves(out / "robustness.png", result["robustness"], metric),
        "correlation": figures.heatmap(
            out / "correlation.png",
            result["correlation"]["cka"],
            result["modalities"],
            "Linear CKA of embeddings",
        ),
    }
    if result.get("cascade"):
        drawn["cascade"] = figures.cascade_curve(
            out / "cascade.png", result["cascade"], result["cascade"]["metric"]
        )
    if result["confusion"] is not None:
        drawn["confusion"] = figures.confusion_matrix(out / "confusion.png", **result["confusion"])
    if result["attention"] is not None:
        drawn["attention"] = figures.bars(
            out / "attention.png", result["attention"], "Fusion weights", "mean weight"
        )
    for m, found in attributions.items():
        method = method_of(kinds.get(m, ""))
        if "skipped" in found.summary or method is None:
            continue
        name = f"{method.figure}_{m}"
        path = method.draw(out / f"{name}.png", m, found, metric)
        if path is not None:
            drawn[name] = path
    return {name: path.name for name, path in drawn.items()}


def _label_figures(out: Path, result: dict[str, Any]) -> dict[str, Path]:
    """With several labels, each further label's Shapley bars and (classification) confusion matrix:
    ``shapley_<label>`` and ``confusion_<label>`` (the first label's are ``shapley`` and ``confusion``)."""
    from polyfuse.eval import figures

    drawn = {}
    for label, found in list((result.get("labels") or {}).items())[1:]:
        name = safe_name(label)
        values = found["shapley"]["values"]
        drawn[f"shapley_{label}"] = figures.shapley_bars(
            out / f"shapley_{name}.png", values, found["metric"], None
        )
        if found["confusion"] is not None:
            drawn[f"confusion_{label}"] = figures.confusion_matrix(
                out / f"confusion_{name}.png", **found["confusion"]
            )
    return drawn


def safe_name(label: str) -> str:
    """A label column as part of a file name: letters, digits, ``-`` and ``_`` kept, the rest ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def write_json(path: Path, data: Any) -> None:
    """JSON with NaN / infinity written as null (strict JSON) and numpy scalars as numbers."""
    path.write_text(json.dumps(_strict(data), indent=2) + "\n")


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
