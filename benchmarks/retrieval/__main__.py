"""Cross-modal retrieval after pre-training without labels, on scenes and digits-av.

    python -m benchmarks.retrieval [--datasets scenes,digits_av] [--seeds 0-2] [--max-epochs 30]
                                   [--gallery 1000] [--append]

Per dataset and seed: ``polyfuse.pretrain`` aligns the pairs below on the dataset's own split (the
kept epoch chosen on validation Recall@1), then every test row's embedding in one modality ranks a
gallery of ``--gallery`` test rows (drawn with the seed) in the other, both ways. Matches: rows of
the same ``content`` on scenes (the pictures a caption describes), of the same digit on digits-av.

* ``scenes``: image:caption and audio:caption (the spoken caption), so audio -> image meets
  through the caption (scored too); ``image_cnn``, ``text_bag`` and the audio CNN, trained from
  scratch.
* ``digits_av``: image:audio (a handwritten digit and the spoken digit, each corrupted on its own
  rows).

Writes ``results/retrieval.csv`` (one row per dataset, seed, query and gallery modality) and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import code_version, machine_line, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "retrieval"
SCENES_IGNORED = ["question", "answer", "question_type", "shape", "colour", "count", "content"]
DATASETS: dict[str, dict[str, Any]] = {
    "scenes": {
        "roles": {**{c: "ignore" for c in SCENES_IGNORED}, "caption": "text"},
        "encoders": {"caption": "text_bag"},
        "pairs": "image:caption,audio:caption",
        "relevant_by": "content",
        "scored": [("caption", "image"), ("image", "caption"), ("audio", "image"), ("audio", "caption")],
    },
    "digits_av": {
        "roles": {"text": "ignore", "digit": "ignore"},
        "encoders": {},
        "pairs": "image:audio",
        "relevant_by": "digit",
        "scored": [("image", "audio"), ("audio", "image")],
    },
}


def run(name: str, seed: int, max_epochs: int, gallery: int) -> list[dict[str, Any]]:
    import torch

    import polyfuse
    from polyfuse.data.datasets import build_dataset
    from polyfuse.eval.retrieval import relevance, retrieval_scores
    from polyfuse.models.inference import aligned_table

    spec = DATASETS[name]
    table = build_dataset(name.replace("_", "-"))
    frame = pd.read_csv(table, keep_default_na=False)
    start = time.perf_counter()
    done = polyfuse.pretrain(
        str(table),
        roles=spec["roles"],
        split_column="split",
        encoders=spec["encoders"],
        pairs=spec["pairs"],
        relevant_by=spec["relevant_by"],
        seed=seed,
        max_epochs=max_epochs,
        batch_size=128,
    )
    seconds = time.perf_counter() - start
    test = done.tables["test"]
    z, present = aligned_table(done.model, test)
    groups = frame.loc[test.row_ids, spec["relevant_by"]].astype(str).tolist()
    rng = np.random.default_rng(seed)
    out = []
    for query, target in spec["scored"]:
        rows = (present[query] & present[target]).nonzero().flatten().numpy()
        picked = np.sort(rng.choice(rows, size=min(gallery, len(rows)), replace=False))
        kept = [groups[i] for i in picked]
        index = torch.as_tensor(picked)
        scores = retrieval_scores(z[query][index], z[target][index], relevance(kept, kept, len(picked)))
        out.append(
            {
                "dataset": name,
                "seed": seed,
                "query": query,
                "gallery": target,
                "gallery_rows": len(picked),
                **scores,
                "chance_at_1": float(np.mean([np.mean(np.array(kept) == g) for g in kept])),
                "epochs": done.summary["epochs"],
                "best_epoch": done.summary["best_epoch"],
                "pretrain_seconds": round(seconds, 1),
            }
        )
        print(out[-1], flush=True)
    return out


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    commits = ", ".join(sorted(frame["commit"].astype(str).unique()))
    lines = [
        "# Cross-modal retrieval after pre-training without labels",
        "",
        f"Machine: {machine_line()}; commit {commits}. Command: `python -m benchmarks.retrieval "
        f"--datasets {args.datasets} --seeds {args.seeds} --max-epochs {args.max_epochs} "
        f"--gallery {args.gallery}`.",
        "",
        "Mean ± std over seeds. A query's match: a gallery row with the same `content` (scenes) or digit "
        "(digits-av); `chance@1` is the share of the gallery that matches a query, on average.",
        "",
        "| dataset | query → gallery | gallery rows | seeds | Recall@1 | Recall@5 | Recall@10 | MRR "
        "| chance@1 | epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, query, gallery), g in frame.groupby(["dataset", "query", "gallery"], sort=False):
        cells = [_pm(g[c]) for c in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr")]
        lines.append(
            f"| {dataset} | {query} → {gallery} | {int(g['gallery_rows'].iloc[0])} | {len(g)} | "
            + " | ".join(cells)
            + f" | {g['chance_at_1'].mean():.4f} | {g['epochs'].mean():.1f} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _pm(values: pd.Series) -> str:
    return f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.mean():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--gallery", type=int, default=1000)
    parser.add_argument(
        "--append", action="store_true", help="add to the CSV (same dataset and seed replaced)"
    )
    args = parser.parse_args()
    csv = STEM.with_suffix(".csv")
    frame = pd.read_csv(csv, dtype={"commit": str}) if args.append and csv.is_file() else pd.DataFrame()
    commit = code_version()
    for name in args.datasets.split(","):
        for seed in seeds(args.seeds):
            rows = pd.DataFrame(run(name, seed, args.max_epochs, args.gallery)).assign(commit=commit)
            frame = pd.concat([frame, rows]).drop_duplicates(
                ["dataset", "seed", "query", "gallery"], keep="last"
            )
            write(frame, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
