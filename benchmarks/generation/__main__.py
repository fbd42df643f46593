"""Captioning and visual question answering on scenes.

    python -m benchmarks.generation [--tasks caption,vqa_generate,vqa_classify,vqa_many,vqa_relation]
                                    [--seeds 0-2]
                                    [--max-epochs 30] [--append] [--captioners DIR]

Per task and seed, on scenes' own split (7,000 / 1,500 / 1,500 rows; every choice on validation):

* ``caption``: ``polyfuse.fit_text`` writes the caption from the image (``image_cnn`` from scratch;
  the decoder attends to its 4x4 feature map); the test split is written with beam search and
  scored with BLEU-1..4, CIDEr and ROUGE-L against the captions of every test picture of the same
  content (``references_by="content"``: the templates and paraphrases of one picture).
* ``vqa_generate``: ``polyfuse.fit_text`` writes the answer from the image and the question,
  the image encoder starting from the same seed's captioner (``init_from``: one question per
  picture is too little to learn what the pictures hold from scratch); accuracy (exact match) per
  question type.
* ``vqa_classify``: ``polyfuse.fit`` with the answer as a label (image and question in, fusion
  ``cross_attention`` over the image's feature map and the question's words), the image encoder
  from the captioner too; accuracy per question type.
* ``vqa_many``: the same classifier on many questions per picture (``scenes.questions``, up to
  ``PER_PICTURE`` each, about 67,000 training rows; Sort-of-CLEVR asks 20 per image), the question
  read in order by ``text_transformer`` (a bag of words cannot tell "is the red square left of the
  blue cross?" from its converse), the captioner's image encoder frozen (its feature maps computed
  once), at most ``TIME_LIMIT`` seconds of training; accuracy per question type on the test
  pictures' questions.
* ``vqa_relation``: the same as ``vqa_many`` but through a relation network (Santoro et al., 2017;
  fusion ``relation``): every pair of positions of the captioner's 4x4 feature map, with the
  question's pooled tokens as the condition of each pair.

Writes ``results/generation.csv`` (one row per task and seed) and ``.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import code_version, commit_list, machine_line, mean_std, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "generation"
ENCODERS = {"image": "image_cnn", "question": "text_bag"}
TASKS = ("caption", "vqa_generate", "vqa_classify", "vqa_many", "vqa_relation")
PER_PICTURE = 10  # vqa_many: questions per picture (scenes.questions)
TIME_LIMIT = 600  # vqa_many: seconds of training at most (the 10 minutes per run)


def run(task: str, seed: int, max_epochs: int, captioner: Path) -> dict[str, Any]:
    import polyfuse
    from polyfuse.data.datasets import build_dataset

    table = build_dataset("scenes")
    frame = pd.read_csv(table, keep_default_na=False)
    test = frame[frame["split"] == "test"]
    common = {"split_column": "split", "seed": seed, "max_epochs": max_epochs, "batch_size": 64}
    start = time.perf_counter()
    row: dict[str, Any] = {"task": task, "seed": seed, "test_rows": len(test)}
    if task == "caption":
        done = polyfuse.fit_text(
            str(table),
            "caption",
            inputs="image",
            encoders={"image": "image_cnn"},
            references_by="content",
            out=captioner,
            **common,
        )
        row.update(done.test)
        row["example"] = done.examples[0]["written"]
    else:
        if task == "vqa_generate":
            done = polyfuse.fit_text(
                str(table),
                "answer",
                inputs="image,question",
                encoders=ENCODERS,
                max_words=4,
                init_from=captioner,
                **common,
            )
            answers = done.write((test, table.parent))
        elif task in ("vqa_many", "vqa_relation"):
            from polyfuse.data.datasets.scenes import questions

            asked = questions(table, per_picture=PER_PICTURE, seed=seed)
            test = asked[asked["split"] == "test"]
            fusion: dict[str, Any] = {"fusion": "cross_attention"}
            if task == "vqa_relation":
                fusion = {"fusion": "relation", "fusion_params": {"objects": ["image"]}}
            predictor = polyfuse.fit(
                (asked, table.parent),
                "answer",
                roles={"question": "text", "question_type": "ignore"},
                encoders={"image": "image_cnn", "question": "text_transformer"},
                freeze={"image": True},
                baselines=False,
                init_from=captioner,
                time_limit_s=TIME_LIMIT,
                **fusion,
                **common,
            )
            answers = predictor.predict((test, table.parent))
            fused = predictor.metrics["fused"]
            epochs, train_seconds = fused["epochs"], fused["train_seconds"]
            row["test_rows"] = len(test)
        else:
            ignored = [c for c in frame.columns if c not in ("image", "question", "answer", "split")]
            predictor = polyfuse.fit(
                str(table),
                "answer",
                roles={**{c: "ignore" for c in ignored}, "question": "text"},
                encoders=ENCODERS,
                fusion="cross_attention",
                baselines=False,
                init_from=captioner,
                **common,
            )
            answers = predictor.predict((test, table.parent))
            fused = predictor.metrics["fused"]
            epochs, train_seconds = fused["epochs"], fused["train_seconds"]
        right = answers.astype(str).reindex(test.index) == test["answer"].astype(str)
        row["accuracy"] = float(right.mean())
        for kind, rows in test.groupby("question_type"):
            row[f"accuracy_{kind}"] = float(right[rows.index].mean())
    if task in ("vqa_classify", "vqa_many", "vqa_relation"):
        row["epochs"], row["train_seconds"] = epochs, train_seconds
    else:
        row["epochs"], row["train_seconds"] = done.summary["epochs"], done.summary["seconds"]
    row["seconds"] = round(time.perf_counter() - start, 1)
    print(row, flush=True)
    return row


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    commits = commit_list(frame)
    lines = [
        "# Captioning and visual question answering on scenes",
        "",
        f"Machine: {machine_line()}; commit {commits}. Command: `python -m benchmarks.generation "
        f"--tasks {args.tasks} --seeds {args.seeds} --max-epochs {args.max_epochs}`.",
        "",
        "Mean ± std over seeds, on scenes' test split (`test rows`: its pictures, or for `vqa_many` their "
        "questions). `train_seconds`: training; `seconds`: the whole run (reading the table, training, "
        "writing the test split). Earlier rows' commands: their commits in the CSV, docs/cross-modal.md.",
        "",
    ]
    columns = {
        "caption": ["bleu_1", "bleu_4", "cider", "rouge_l", "exact_match"],
        "vqa_generate": ["accuracy", "accuracy_attribute", "accuracy_relational"],
        "vqa_classify": ["accuracy", "accuracy_attribute", "accuracy_relational"],
        "vqa_many": ["accuracy", "accuracy_attribute", "accuracy_relational"],
        "vqa_relation": ["accuracy", "accuracy_attribute", "accuracy_relational"],
    }
    for task, g in frame.groupby("task", sort=False):
        shown = [c for c in columns[str(task)] if c in g]
        lines += [
            f"**{task}**",
            "",
            "| seeds | test rows | " + " | ".join(shown) + " | epochs | train_seconds | seconds |",
            "|---" * (len(shown) + 5) + "|",
            f"| {len(g)} | {int(g['test_rows'].iloc[0]):,} | "
            + " | ".join(mean_std(g[c]) for c in shown)
            + f" | {g['epochs'].mean():.1f} | {g['train_seconds'].mean():.0f} | {g['seconds'].mean():.0f} |",
            "",
        ]
        if "example" in g and g["example"].notna().any():
            lines += [f"Example (seed {g['seed'].iloc[0]}): “{g['example'].iloc[0]}”", ""]
    STEM.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--append", action="store_true", help="add to the CSV (same task and seed replaced)")
    parser.add_argument(
        "--captioners", default=None, help="keep each seed's captioner here (and reuse one found there)"
    )
    args = parser.parse_args()
    csv = STEM.with_suffix(".csv")
    frame = pd.read_csv(csv, dtype={"commit": str}) if args.append and csv.is_file() else pd.DataFrame()
    commit = code_version()
    tasks = args.tasks.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds(args.seeds):
            captioner = Path(args.captioners or scratch) / f"captioner-{seed}"
            if tasks[0] != "caption" and not captioner.is_dir():
                parser.error("question answering starts from the seed's captioner: list caption first")
            for task in tasks:
                row = pd.DataFrame([run(task, seed, args.max_epochs, captioner)])
                frame = pd.concat([frame, row.assign(commit=commit)]).drop_duplicates(
                    ["task", "seed"], keep="last"
                )
                write(frame, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
