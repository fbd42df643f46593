"""Does the default ``fit`` keep its promise? Balancing strategies and the final model, per table.

    python -m benchmarks.balance [--tables spoken_digits,complementary,...] [--seeds 5]
        [--strategies none,aux,...] [--rows N] [--max-epochs 30]

For each table and seed: the table is prepared once (``fitting.prepare``: schema, split, encoders
as ``fit`` chooses them unless the table names one); one single-modality model per
modality is trained once; then for each balancing strategy the fused network is trained and
``fitting.choose_final`` (what ``fit`` runs, ``ensemble="auto"``) picks the final model on
validation. A row records, on the test split, the final model's score, the fused network's, and
the best single modality's (the single-modality model with the best validation score; choices on
validation only), plus the oracle best single test score, and each modality's linear-probe gap
(``eval.imbalance.probe_gaps``: validation score of a probe on its single-modality model's
embedding minus that on the fused network's, as ``probe_gap_<modality>``). Scores: accuracy, R²
for regression, the mean over labels with several (``eval.selection.selection_score``). Seconds
per epoch of the fused network are recorded too (meaningful only on an otherwise idle machine).

Writes ``results/balance.csv`` (columns ``table, strategy, seed, test_score,
best_single_test_score, ...``) and ``results/balance.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.balance import tables
from benchmarks.common import code_version, commit_list, machine_line, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"


@dataclasses.dataclass
class Table:
    make: Callable[[Path, int, int], Any]  # (folder, rows, seed) -> DataFrame or CSV path
    labels: list[str]
    rows: int
    what: str
    encoders: dict[str, str] = dataclasses.field(default_factory=dict)  # modality -> encoder, else fit's
    split_column: str | None = None  # the table's own split, else fit's seeded 70/15/15
    fractions: tuple[float, float] | None = None  # (validation, test) shares instead of 0.15 / 0.15
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # more FitRequest fields
    train: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig fields of this table


def _avmnist_hard(rows: int | None, epochs: int, what: str) -> Table:
    """avmnist-hard as a balance table: ``rows`` of the build (None: all 70,000) in its own split,
    both columns grey images at their own size encoded by MultiBench's LeNets, ``epochs`` at most
    (the options ``benchmarks.avmnist.compare`` gives ``compare``)."""
    from benchmarks.avmnist.compare import SIZES
    from benchmarks.avmnist.models import AUDIO_LENET, IMAGE_LENET

    return Table(
        lambda d, n, s: tables.avmnist_hard(None if rows is None else n, s),
        ["digit"],
        rows or 70000,
        what + AVMNIST_WHAT.format(epochs=epochs),
        encoders={m: "lenet" for m in SIZES},
        split_column="split",
        options={
            "roles": {m: "image" for m in SIZES},
            "encoder_params": {"image": IMAGE_LENET, "audio": AUDIO_LENET},
            "processor_options": {m: {"image_size": size, "channels": "L"} for m, size in SIZES.items()},
        },
        train={"max_epochs": epochs},
    )


AVMNIST_WHAT = (
    "MNIST digits with 4 PCA components kept and spectrograms of spoken digits (FSDD) with noise, "
    "speakers split; MultiBench's LeNets as encoders, the build's own split (validation: one held-out "
    "speaker), at most {epochs} epochs"
)
# The synthetic notes are a few template words: a bag of words reads them as well as MiniLM, in far
# less time; the table of real files keeps fit's default encoders (its few distinct notes are read
# as a categorical column).
BAG = {"text": "text_bag"}
TABLES = {
    "spoken_digits": Table(
        lambda d, n, s: tables.spoken_digits(d, n, s),
        ["digit"],
        3400,
        "real PNG + WAV files: mostly hidden MNIST digits, clean spoken digits (FSDD), a sparse note, "
        "a weak number, one corrupt PNG",
    ),
    "spoken_digits_600": Table(
        lambda d, n, s: tables.spoken_digits(d, n, s, split=(480, 120)),
        ["digit"],
        1600,
        "the same kind of table with 600 labelled rows (480 train, 120 validation; the situation of issue "
        "#16) and 1,000 test rows",
        split_column="split",
    ),
    "digits_av": Table(
        lambda d, n, s: tables.digits_av(),
        ["digit"],
        1797,
        "the built-in digits-av (8x8 digits, synthetic speech, a hint note), re-split 55/15/30 for 539 "
        "test rows, fit's default encoders (MiniLM text)",
        fractions=(0.15, 0.3),
    ),
    "avmnist_hard_10k": _avmnist_hard(
        10000, 10, "a 10k-row build of avmnist-hard (7,857 / 714 / 1,429 rows with seed 0): "
    ),
    "avmnist_hard": _avmnist_hard(None, 4, "the full avmnist-hard build: "),
    "complementary": Table(
        lambda d, n, s: tables.complementary(n, s),
        ["kind"],
        3400,
        "the note names the class on 70% of rows, the numbers place every row noisily",
        BAG,
    ),
    "dominated": Table(
        lambda d, n, s: tables.dominated(n, s),
        ["kind"],
        3400,
        "the note names the class every time, the numbers only hint at it",
        BAG,
    ),
    "two_scales": Table(
        lambda d, n, s: tables.two_scales(n, s),
        ["kind", "price"],
        3400,
        "two labels, cross-entropy ~1 and raw squared error ~100",
        BAG,
    ),
    "prices": Table(
        lambda d, n, s: tables.prices(n, s), ["price"], 3400, "regression from a dominant note", BAG
    ),
}


def run_seed(
    name: str, table: Table, seed: int, strategies: list[str], rows: int, max_epochs: int
) -> list[dict]:
    """One seed of one table: baselines once, then the fused network and final model per strategy."""
    from polyfuse.config import ModelConfig
    from polyfuse.eval.imbalance import probe_gaps
    from polyfuse.eval.selection import selection_score
    from polyfuse.fitting import Candidate, FitRequest, choose_final, prepare, train_and_test, train_baselines
    from polyfuse.models.inference import predict_table
    from polyfuse.predictor import read_rows
    from polyfuse.reporting import Reporter
    from polyfuse.train.balancers.base import needs_teachers

    with tempfile.TemporaryDirectory() as folder:
        frame, base_dir = read_rows(table.make(Path(folder), rows, seed))
        request = FitRequest(
            label=table.labels,
            encoders=dict(table.encoders),
            split_column=table.split_column,
            on_error="skip",
            **table.options,
        )
        fields = {"seed": seed, "max_epochs": max_epochs, "progress": False, **table.train}
        request.train = dataclasses.replace(request.train, **fields)
        if table.fractions:
            val, test_share = table.fractions
            request.train = dataclasses.replace(request.train, val_fraction=val, test_fraction=test_share)
        prep = prepare(frame, base_dir, request)
    test = prep.tables["test"]
    targets = {s.column: test.targets[s.column].numpy() for s in prep.schema.labels}

    def score(model: Any) -> float:
        outputs = {k: v.numpy() for k, v in predict_table(model, test).items()}
        return selection_score(prep.schema.labels, targets, outputs)

    quiet = Reporter(False)
    singles = list(train_baselines(request, prep, quiet).values())  # what fit trains beside the fused one
    chosen_single = max(singles, key=lambda c: _val_score(c, prep))
    out = []
    for strategy in strategies:
        cfg = dataclasses.replace(request.train, balance=strategy)
        config = ModelConfig(prep.encoders, request.fusion, prep.heads)
        start = time.perf_counter()
        teachers = {c.name: c.trained.model for c in singles} if needs_teachers(strategy) else None
        fused = train_and_test(config, prep.pre, prep.tables, cfg, None, quiet, "fused", teachers=teachers)
        seconds = time.perf_counter() - start
        gaps = probe_gaps(
            prep.schema.labels, fused.model, {c.name: c.trained.model for c in singles}, prep.tables
        )
        final, chosen = choose_final(
            prep.schema, [Candidate("fused", config, fused), *singles], prep.tables, "auto"
        )
        out.append(
            {
                "table": name,
                "strategy": strategy,
                "seed": seed,
                "test_score": score(final.trained.model),
                "best_single_test_score": score(chosen_single.trained.model),
                "fused_test_score": score(fused.model),
                "oracle_single_test_score": max(score(c.trained.model) for c in singles),
                "best_single": chosen_single.name,
                "final_model": final.name,
                "weights": chosen["weights"] if chosen else {},
                "fused_epochs": fused.summary["epochs"],
                "fused_seconds_per_epoch": seconds / max(1, fused.summary["epochs"]),
                "test_rows": len(test),
                **{f"probe_gap_{m}": g["gap"] for m, g in gaps.items()},  # single - fused, validation
            }
        )
        print(out[-1], flush=True)
    return out


def _val_score(candidate: Any, prep: Any) -> float:
    from polyfuse.eval.selection import selection_score
    from polyfuse.models.inference import predict_table

    val = prep.tables["val"]
    outputs = {k: v.numpy() for k, v in predict_table(candidate.trained.model, val).items()}
    targets = {s.column: val.targets[s.column].numpy() for s in prep.schema.labels}
    return selection_score(prep.schema.labels, targets, outputs)


def summarise(frame: pd.DataFrame) -> list[str]:
    """Markdown rows: mean ± std over seeds per table and strategy."""
    head = "| table | strategy | seeds | final | fused | best single (by val) | final − best single | final |"
    lines = [
        head,
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, strategy), g in frame.groupby(["table", "strategy"], sort=False):
        gap = _pm(g["test_score"] - g["best_single_test_score"], "+")
        kinds = ", ".join(f"{k} ×{v}" for k, v in g["final_model"].value_counts().items())
        lines.append(
            f"| {name} | {strategy} | {len(g)} | {_pm(g['test_score'])} | {_pm(g['fused_test_score'])} | "
            f"{_pm(g['best_single_test_score'])} | {gap} | {kinds} |"
        )
    return lines


def probe_table(frame: pd.DataFrame) -> list[str]:
    """Markdown rows: each modality's linear-probe gap (single minus fused), per table and strategy."""
    columns = [c for c in frame.columns if c.startswith("probe_gap_")]
    measured = frame.dropna(subset=columns, how="all") if columns else frame.iloc[0:0]
    if not len(measured):
        return []
    names = [c.removeprefix("probe_gap_") for c in columns]
    lines = [
        "",
        "Linear-probe gap per modality (validation score of a probe on the single-modality model's",
        "embedding minus that on the fused network's encoder; > 0: the fused training starved it):",
        "",
        "| table | strategy | seeds | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for (name, strategy), g in measured.groupby(["table", "strategy"], sort=False):
        cells = [_pm(g[c]) if g[c].notna().any() else "–" for c in columns]
        lines.append(f"| {name} | {strategy} | {len(g)} | " + " | ".join(cells) + " |")
    return lines


def _pm(values: pd.Series, sign: str = "") -> str:
    """Mean ± std over seeds (``sign="+"``: the mean signed); one seed says so instead of a std."""
    mean = format(values.mean(), f"{sign}.4f")
    return f"{mean} ± {values.std():.4f}" if len(values) > 1 else f"{mean} (1 seed)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--strategies", default=None, help="default: every BALANCERS name")
    parser.add_argument("--seeds", default="0-4", help="a range (0-4) or a comma list of seeds")
    parser.add_argument("--rows", type=int, default=None, help="rows per table (default: each table's own)")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS / "balance"), help="results stem (.csv, .md)")
    parser.add_argument(
        "--append", action="store_true", help="add to the CSV (new rows replace the same table/strategy/seed)"
    )
    parser.add_argument("--report-only", action="store_true", help="only rewrite the markdown from the CSV")
    args = parser.parse_args()
    stem = Path(args.out)
    if args.report_only:
        write_markdown(pd.read_csv(stem.with_suffix(".csv"), dtype={"commit": str}), stem, args)
        return
    import polyfuse.train  # noqa: F401  (registers the strategies)
    from polyfuse.registry import BALANCERS

    strategies = args.strategies.split(",") if args.strategies else BALANCERS.names()
    commit = code_version()
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv = stem.with_suffix(".csv")
    frame = pd.read_csv(csv, dtype={"commit": str}) if args.append and csv.is_file() else pd.DataFrame()
    for name in args.tables.split(","):
        for seed in seeds(args.seeds):
            rows = pd.DataFrame(run_seed(name, TABLES[name], seed, strategies, args.rows or TABLES[name].rows,
                                         args.max_epochs)).assign(commit=commit)  # fmt: skip
            frame = pd.concat([frame, rows]).drop_duplicates(["table", "strategy", "seed"], keep="last")
            frame.to_csv(csv, index=False)  # after every seed: a long run keeps what it finished
    write_markdown(frame, stem, args)


def _size(table: Table) -> str:
    test_share = table.fractions[1] if table.fractions else 0.15
    return f"{table.rows} rows" + ("" if table.split_column else f", test split {100 * test_share:.0f}%")


def write_markdown(frame: pd.DataFrame, stem: Path, args: argparse.Namespace) -> None:
    commits = commit_list(frame)
    names = list(dict.fromkeys(frame["table"]))
    lines = [
        "# Balancing strategies and the final model",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.balance` (per table: `--tables NAME",
        f"--seeds ...`, `--max-epochs {args.max_epochs}`, `--append`) at {commits} (rows: {stem.name}.csv).",
        "",
        "Test scores (accuracy; R² for regression; the mean over labels with two), mean ± std over seeds.",
        '`final` is what `fit` keeps by default (`ensemble="auto"`: the validation-chosen ensemble of',
        "the fused network and the single-modality models); `fused` the fused network (concat fusion)",
        "trained with the strategy; `best single` the single-modality model with the best validation",
        "score. Tables:",
        "",
        *[f"- `{n}` ({_size(TABLES[n])}): {TABLES[n].what}" for n in names],
        "",
        *summarise(frame),
        *probe_table(frame),
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
