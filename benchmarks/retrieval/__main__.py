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
* ``scenes_text``: image:caption only, the captions read in order by ``text_transformer`` (a bag of
  words cannot tell which colour goes with which shape), batches of 256, patience 10, at most 10
  minutes of training (the issue's limit per run).
* ``digits_av``: image:audio (a handwritten digit and the spoken digit, each corrupted on its own
  rows).

With ``--transfer``, the pre-trained model is then put to work on the same seed: zero-shot
classification of the large shape on scenes' test pictures (classes by name through a prompt
ensemble, one template per colour: "a large red {}", "a large blue {}", ...: every caption names a
shape with its colour, so a colourless "a large {}" lies off the captions the model aligned), and
fine-tuning with 10% of the labels (``shape`` of the large shape and ``count`` of the shapes from
the picture on scenes, the digit from picture and recording on digits-av; 10% of the training and
validation rows drawn with the seed, every test row): ``fit`` from the pre-trained encoders
(``init_from``) against ``fit``
from scratch with the same encoders, options and rows.

Writes ``results/retrieval.csv`` (one row per dataset, seed, query and gallery modality) and ``.md``;
with ``--transfer`` also ``results/transfer.csv`` and ``.md`` (one row per dataset, seed and label).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import code_version, commit_list, machine_line, mean_std, seeds
from polyfuse.data.datasets.scenes import COLOURS

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "retrieval"
COLOUR_PROMPTS = [f"a large {colour} {{}}" for colour in COLOURS]  # scenes' zero-shot prompt ensemble
SCENES_IGNORED = ["question", "answer", "question_type", "shape", "colour", "count", "content"]
DATASETS: dict[str, dict[str, Any]] = {
    "scenes": {
        "roles": {**{c: "ignore" for c in SCENES_IGNORED}, "caption": "text"},
        "encoders": {"caption": "text_bag"},
        "pairs": "image:caption,audio:caption",
        "relevant_by": "content",
        "scored": [("caption", "image"), ("image", "caption"), ("audio", "image"), ("audio", "caption")],
        "labels": ["shape", "count"],
        "inputs": ["image"],
        "zero_shot": ("image", COLOUR_PROMPTS, "shape"),
    },
    "scenes_text": {  # pictures and written captions only, the captions read in order
        "dataset": "scenes",
        "roles": {**{c: "ignore" for c in [*SCENES_IGNORED, "audio"]}, "caption": "text"},
        "encoders": {"caption": "text_transformer"},
        "pairs": "image:caption",
        "relevant_by": "content",
        "scored": [("caption", "image"), ("image", "caption")],
        "labels": ["shape", "count"],
        "inputs": ["image"],
        "zero_shot": ("image", COLOUR_PROMPTS, "shape"),
        "train": {"batch_size": 256, "patience": 10, "time_limit_s": 600},
    },
    "digits_av": {
        "roles": {"text": "ignore", "digit": "ignore"},
        "encoders": {},
        "pairs": "image:audio",
        "relevant_by": "digit",
        "scored": [("image", "audio"), ("audio", "image")],
        "labels": ["digit"],
        "inputs": ["image", "audio"],
    },
}


def run(name: str, seed: int, max_epochs: int, gallery: int) -> tuple[list[dict[str, Any]], Any]:
    import torch

    import polyfuse
    from polyfuse.data.datasets import build_dataset
    from polyfuse.eval.retrieval import relevance, retrieval_scores
    from polyfuse.models.inference import aligned_table

    spec = DATASETS[name]
    table = build_dataset(spec.get("dataset", name.replace("_", "-")))
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
        **{"batch_size": 128, **spec.get("train", {})},
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
    return out, done


LABELLED_SHARE = 0.1


def transfer(name: str, seed: int, done: Any, max_epochs: int) -> list[dict[str, Any]]:
    """Zero-shot accuracy (where the dataset names a template) and, per label of the dataset,
    10%-label fine-tuning from the pre-trained model ``done`` against training from scratch on the
    same rows: one row per label."""
    import tempfile

    import polyfuse
    from polyfuse.data.datasets import build_dataset

    spec = DATASETS[name]
    table = build_dataset(spec.get("dataset", name.replace("_", "-")))
    frame = pd.read_csv(table, keep_default_na=False)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        pretrained = done.save(Path(scratch) / "pretrained")
        test = frame[frame["split"] == "test"]
        shot: dict[str, Any] = {}
        if "zero_shot" in spec:
            modality, template, label = spec["zero_shot"]
            located = test.assign(**{modality: [str(table.parent / p) for p in test[modality]]})
            classes = sorted(frame[label].unique())
            done_shot = polyfuse.zero_shot(
                pretrained, located, modality, classes, template=template, label=label
            )
            templates = [template] if isinstance(template, str) else template
            shot = {
                label: {
                    "zero_shot_accuracy": done_shot.accuracy,
                    "zero_shot_templates": " | ".join(templates),
                }
            }
        rng = np.random.default_rng(seed)
        few = frame[[s == "test" or rng.random() < LABELLED_SHARE for s in frame["split"]]]
        for label in spec["labels"]:
            row: dict[str, Any] = {"dataset": name, "seed": seed, "label": label, **shot.get(label, {})}
            ignored = [c for c in frame.columns if c not in (*spec["inputs"], label, "split")]
            options = {
                "roles": {c: "ignore" for c in ignored},
                "split_column": "split",
                "encoders": {m: done.encoders[m].name for m in spec["inputs"]},
                "max_epochs": max_epochs,
                "seed": seed,
                "baselines": False,
            }
            for arm, init in (("scratch", None), ("pretrained", pretrained)):
                fitted = polyfuse.fit((few, table.parent), label, init_from=init, **options)
                row[f"{arm}_accuracy"] = fitted.metrics["test"]["accuracy"]
            row["labelled_train_rows"] = int((few["split"] == "train").sum())
            row["gain"] = row["pretrained_accuracy"] - row["scratch_accuracy"]
            print(row, flush=True)
            rows.append(row)
    return rows


def write_transfer(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    stem = RESULTS / "transfer"
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    commits = commit_list(frame)
    lines = [
        "# Pre-trained models at work: zero-shot classification and 10% of the labels",
        "",
        f"Machine: {machine_line()}; commit {commits}. Command: `python -m benchmarks.retrieval "
        f"--datasets {args.datasets} --seeds {args.seeds} --max-epochs {args.max_epochs} --transfer`.",
        "",
        "Test accuracy, mean ± std over seeds. `scratch` and `pretrained`: `fit` on 10% of the training "
        "and validation rows, from scratch or from the pre-trained encoders (`init_from`); `gain` is "
        "their difference, seed by seed.",
        "",
        "| dataset | label | seeds | labelled train rows | zero-shot | scratch | pretrained | gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, label), g in frame.groupby(["dataset", "label"], sort=False):
        shot = (
            mean_std(g["zero_shot_accuracy"])
            if "zero_shot_accuracy" in g and g["zero_shot_accuracy"].notna().all()
            else "–"
        )
        lines.append(
            f"| {dataset} | {label} | {len(g)} | {g['labelled_train_rows'].mean():.0f} | {shot} | "
            f"{mean_std(g['scratch_accuracy'])} | {mean_std(g['pretrained_accuracy'])} | "
            f"{mean_std(g['gain'])} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    commits = commit_list(frame)
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
        cells = [mean_std(g[c]) for c in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr")]
        lines.append(
            f"| {dataset} | {query} → {gallery} | {int(g['gallery_rows'].iloc[0])} | {len(g)} | "
            + " | ".join(cells)
            + f" | {g['chance_at_1'].mean():.4f} | {g['epochs'].mean():.1f} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


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
    parser.add_argument("--transfer", action="store_true", help="also zero-shot and 10%%-label fine-tuning")
    args = parser.parse_args()
    csv, moved = STEM.with_suffix(".csv"), (RESULTS / "transfer").with_suffix(".csv")
    frame = pd.read_csv(csv, dtype={"commit": str}) if args.append and csv.is_file() else pd.DataFrame()
    gains = pd.read_csv(moved, dtype={"commit": str}) if args.append and moved.is_file() else pd.DataFrame()
    commit = code_version()
    for name in args.datasets.split(","):
        for seed in seeds(args.seeds):
            scored, done = run(name, seed, args.max_epochs, args.gallery)
            frame = pd.concat([frame, pd.DataFrame(scored).assign(commit=commit)]).drop_duplicates(
                ["dataset", "seed", "query", "gallery"], keep="last"
            )
            write(frame, args)
            if args.transfer:
                made = pd.DataFrame(transfer(name, seed, done, args.max_epochs)).assign(commit=commit)
                gains = pd.concat([gains, made]).drop_duplicates(["dataset", "seed", "label"], keep="last")
                write_transfer(gains, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
