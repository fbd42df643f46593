"""The feature attribution section: per modality, explain's figure (integrated gradients map, permutation
importance) inlined from the explain folder, or bars / a token table drawn from explain.json["features"];
then any other figure explain listed that no section redraws.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from polyfuse.htmlreport import figures
from polyfuse.htmlreport.html import Section, esc, facts, figure, note, table
from polyfuse.htmlreport.sources import RunData, float_items

TOP_FEATURES = 15
# explain.json["figures"] key -> the section that redraws it from data (its PNG is then not embedded).
REDRAWN = {
    "shapley": "shapley",
    "robustness": "robustness",
    "confusion": "confusion",
    "correlation": "correlation",
    "cka": "correlation",
    "attention": "attention",
}
# Further labels' figures ("shapley_<label>", "confusion_<label>") -> the section that redraws them.
REDRAWN_PER_LABEL = {"shapley_": "shapley", "confusion_": "confusion"}
# Figure key prefix -> what it shows ("ig_text" -> "text: integrated gradients").
METHODS = {"ig": "integrated gradients", "importance": "permutation importance"}
# Scalar facts of a gradient summary worth a line under its figure.
SUMMARY_FACTS = (
    "method",
    "on",
    "baseline",
    "input",
    "samples",
    "n_steps",
    "center_share",
    "convergence_delta",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def features(run: RunData, drawn: Collection[str] = ()) -> Section | None:
    """One block per modality of explain.json["features"], then the remaining listed figures.

    ``drawn`` holds the ids of sections already on the page: figures they redraw are not repeated.
    """
    explain = run.explain or {}
    listed = explain.get("figures") if isinstance(explain.get("figures"), dict) else {}
    by_modality: dict[str, list[tuple[str, str]]] = {}
    others = []
    for key, name in (listed or {}).items():
        modality = _method(str(key))[1]
        if modality:
            by_modality.setdefault(modality, []).append((str(key), str(name)))
        elif _redrawn_by(str(key)) not in drawn:
            others.append((str(key), str(name)))
    body = ""
    summaries = explain.get("features") if isinstance(explain.get("features"), dict) else {}
    for modality in dict.fromkeys([*(summaries or {}), *by_modality]):
        block = _modality_block(run, modality, (summaries or {}).get(modality), by_modality.get(modality, []))
        body += f"<h3>{esc(modality)}</h3>{block}" if block else ""
    body += "".join(_embed(run, key, name) for key, name in others)
    return Section("features", "Feature attribution", body) if body else None


def _redrawn_by(key: str) -> str | None:
    """The section that redraws explain's figure ``key`` from data, if any."""
    if key in REDRAWN:
        return REDRAWN[key]
    return next((section for prefix, section in REDRAWN_PER_LABEL.items() if key.startswith(prefix)), None)


def _modality_block(run: RunData, modality: str, summary: Any, pictures: list[tuple[str, str]]) -> str:
    if isinstance(summary, dict) and "skipped" in summary:
        return note(f"No attribution: {summary['skipped']}.")
    html = "".join(_embed(run, key, name) for key, name in pictures)
    if not isinstance(summary, dict):
        return html
    scores = float_items(summary)
    if len(scores) == len(summary) and scores:  # a flat {feature: importance} mapping
        return html or _bars(modality, scores)
    tokens = summary.get("top_tokens")
    if isinstance(tokens, list) and tokens and not pictures:
        rows = [list(t)[:3] for t in tokens[:TOP_FEATURES] if isinstance(t, (list, tuple))]
        html += table(["token", "mean attribution", "occurrences"], rows, numeric=[1, 2])
    return html + facts((k.replace("_", " "), summary[k]) for k in SUMMARY_FACTS if k in summary)


def _bars(modality: str, scores: dict[str, float]) -> str:
    top = sorted(scores, key=lambda k: -abs(scores[k]))[:TOP_FEATURES]
    uri = figures.hbars(top, [scores[k] for k in top], [figures.series_color(0)] * len(top), "importance")
    return figure(
        uri, f"{modality} feature importance", f"{modality}: the {len(top)} most important features."
    )


def _method(key: str) -> tuple[str, str]:
    """ "ig_text" -> ("integrated gradients", "text"); a key without a known prefix -> (key, "")."""
    prefix, _, rest = key.partition("_")
    return (METHODS[prefix], rest) if prefix in METHODS and rest else (key, "")


def _embed(run: RunData, key: str, name: str) -> str:
    """One listed PNG, read from the explain folder and inlined (or a warning when it cannot be)."""
    data = _png(run.explain_dir, name) if run.explain_dir is not None else None
    if data is None:
        return note(f"figure {key} ({name}) is listed in explain.json but is not a readable PNG.", warn=True)
    method, modality = _method(key)
    caption = f"{modality}: {method} ({name})" if modality else f"{key} ({name})"
    return figure(figures.png_uri(data), key, caption)


def _png(folder: Path, name: str) -> bytes | None:
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or not path.is_file():  # only files inside the explain folder
        return None
    data = path.read_bytes()
    return data if data.startswith(PNG_SIGNATURE) else None
