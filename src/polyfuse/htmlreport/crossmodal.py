"""The report of a pre-trained (aligned) model or a text generator directory.

A pre-trained model's page: its retrieval scores on the test split per direction, Recall@K curves,
and test queries next to their nearest gallery rows (pictures as thumbnails). A text generator's
page: its test scores and test rows' inputs next to what it wrote and the truth. Both read only
the directory's ``config.json`` and ``metrics.json`` (and the example rows' files, when still on
disk, for thumbnails).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from polyfuse.config import load_json
from polyfuse.htmlreport.figures import line_panels, png_uri
from polyfuse.htmlreport.html import Section, esc, facts, figure, note, table

KINDS = {"aligned": "pre-trained model", "generator": "text generator"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
THUMBNAIL = 64  # pixels, the longer side


def crossmodal_kind(path: Path) -> str | None:
    """``"aligned"`` or ``"generator"`` when ``path`` is such a directory, else None."""
    try:
        kind = load_json(path / "config.json").get("kind")
    except (OSError, ValueError):
        return None
    return kind if kind in KINDS else None


def sections(root: Path, kind: str) -> tuple[str, list[Section]]:
    """The page's summary line and sections."""
    config = load_json(root / "config.json")
    metrics = load_json(root / "metrics.json") if (root / "metrics.json").is_file() else {}
    if kind == "aligned":
        return _aligned(config, metrics)
    return _generator(config, metrics)


def _aligned(config: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, list[Section]]:
    summary, test = metrics.get("pretrain", {}), metrics.get("test", {})
    pairs = ", ".join(f"{a}:{b}" for a, b in config.get("pairs", []))
    overview = facts(
        [
            ("aligned pairs", pairs),
            ("shared space", f"{config.get('dim')} dimensions"),
            ("epochs", f"{summary.get('epochs')} (kept {summary.get('best_epoch')})"),
            ("validation Recall@1", summary.get("val_recall_at_1")),
            ("rows", ", ".join(f"{k} {v}" for k, v in summary.get("rows", {}).items())),
        ]
    )
    out = [Section("overview", "Overview", overview)]
    if test:
        names = ["recall_at_1", "recall_at_5", "recall_at_10", "mrr", "map"]
        rows = [[d, *(s.get(n) for n in names)] for d, s in test.items()]
        body = table(
            ["query → gallery", "Recall@1", "Recall@5", "Recall@10", "MRR", "mAP"], rows, range(1, 6)
        )
        ks = [int(n.rsplit("_", 1)[1]) for n in names if n.startswith("recall_at_")]
        curves = {d: (ks, [s.get(f"recall_at_{k}") for k in ks]) for d, s in test.items()}
        body += figure(
            line_panels([("Recall@K on the test split", "K", "Recall@K", curves)]),
            "Recall at K per direction",
            "The share of test queries with a matching row among their K nearest.",
        )
        out.append(Section("retrieval", "Retrieval", body))
    if metrics.get("examples"):
        out.append(Section("examples", "Nearest rows", _retrieval_examples(metrics["examples"])))
    recalls = ", ".join(f"{d} {s.get('recall_at_1', 0):.3f}" for d, s in test.items())
    line = f"aligns {esc(pairs)}" + (f"; test Recall@1 {esc(recalls)}" if test else "")
    return line, out


def _retrieval_examples(examples: dict[str, list[dict[str, Any]]]) -> str:
    parts = [note("Test queries and their three nearest gallery rows; ✓ marks a match (same row or group).")]
    for direction, queries in examples.items():
        rows = [
            [
                cell_html(q["query"]),
                *(_hit(h) for h in q["hits"]),
            ]
            for q in queries
        ]
        width = max((len(q["hits"]) for q in queries), default=0)
        parts.append(f"<h3>{esc(direction)}</h3>")
        parts.append(table(["query", *(f"#{i + 1}" for i in range(width))], rows, raw=range(width + 1)))
    return "".join(parts)


def _hit(hit: dict[str, Any]) -> str:
    mark = "✓" if hit["match"] else "✗"
    return f"{cell_html(hit['value'])}<br>{hit['score']:.3f} {mark}"


def _generator(config: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, list[Section]]:
    options, summary, test = config.get("options", {}), metrics.get("generate", {}), metrics.get("test", {})
    overview = facts(
        [
            ("writes", options.get("target")),
            ("from", options.get("inputs") or "every other column"),
            ("epochs", f"{summary.get('epochs')} (kept {summary.get('best_epoch')})"),
            ("validation loss", summary.get("val_loss")),
            ("vocabulary", summary.get("vocabulary")),
            ("rows", ", ".join(f"{k} {v}" for k, v in summary.get("rows", {}).items())),
            (
                "decoder",
                f"{options.get('layers')} layers, width {options.get('d_model')}, "
                f"memory {options.get('memory')}",
            ),
        ]
    )
    out = [Section("overview", "Overview", overview)]
    if test:
        body = table(["score", "test"], [[k.replace("_", "-"), v] for k, v in test.items()], [1])
        out.append(Section("scores", "Scores", body))
    examples = metrics.get("examples", [])
    if examples:
        columns = list(examples[0].get("inputs", {}))
        rows = [
            [
                *(cell_html(e.get("inputs", {}).get(c, "")) for c in columns),
                esc(e["written"]),
                esc(e["reference"]),
            ]
            for e in examples
        ]
        out.append(
            Section(
                "written",
                "Written next to the truth",
                table([*columns, "written", "truth"], rows, raw=range(len(columns) + 2)),
            )
        )
    line = f"writes {esc(options.get('target'))}" + (
        f"; test BLEU-4 {test['bleu_4']:.3f}, exact match {test['exact_match']:.3f}"
        if "bleu_4" in test
        else ""
    )
    return line, out


def cell_html(value: Any) -> str:
    """A cell for the page: an image file as an inline thumbnail (when it is still on disk), else text."""
    text = str(value)
    path = Path(text)
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        try:
            uri = _thumbnail(path)
            return f'<img class="thumb" src="{esc(uri)}" alt="{esc(path.name)}" title="{esc(text)}">'
        except OSError:
            pass
    return esc(path.name if path.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"} else text)


def _thumbnail(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as opened:
        small = opened.convert("RGB")
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return png_uri(buffer.getvalue())
