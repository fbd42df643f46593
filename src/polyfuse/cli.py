"""The ``polyfuse`` command line: thin wrappers over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from polyfuse.cli_options import with_config_options
from polyfuse.config import COMPARE_DEFAULTS, CompareOptions, GenerateOptions, PretrainOptions, TrainConfig
from polyfuse.sweep.grid import DEFAULT_FUSIONS

app = typer.Typer(
    help="polyfuse: multimodal deep learning from a table.", no_args_is_help=True, add_completion=False
)
datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

ON_ERROR_HELP = "raise: stop at the first bad cell; skip: drop bad rows and report them"
BUDGET_HELP = (
    "encoder milliseconds per row to aim for: run modalities cheapest first and stop each row once "
    "confident (the model's cascade curve, measured on validation at fit time); default: every modality"
)


def _roles(**columns: list[str]) -> dict[str, str]:
    return {col: role for role, cols in columns.items() for col in cols}


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise typer.BadParameter(f"expected KEY=VALUE for {what}, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def _number_or_text(value: str) -> int | float | str:
    """An option's value from the command line: a number where it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@app.command()
@with_config_options(TrainConfig, into="train")
def fit(
    table: Optional[Path] = typer.Argument(
        None, help="CSV / Parquet / JSONL table; default: the built-in digits-av"
    ),
    label: Optional[list[str]] = typer.Option(
        None, "--label", "-l", help="label column (repeat for several heads)"
    ),
    out: Path = typer.Option(Path("runs/model"), help="where to save the model directory"),
    text: list[str] = typer.Option([], help="declare a text column"),
    image: list[str] = typer.Option([], help="declare an image-path column"),
    audio: list[str] = typer.Option([], help="declare an audio-path column"),
    numeric: list[str] = typer.Option([], help="declare a numeric column"),
    categorical: list[str] = typer.Option([], help="declare a categorical column"),
    ignore: list[str] = typer.Option([], help="ignore a column"),
    split_column: Optional[str] = typer.Option(None, help="column with train / val / test values"),
    fusion: str = typer.Option("concat", help="fusion strategy (polyfuse fusions)"),
    fusion_option: list[str] = typer.Option(
        [], help="KEY=VALUE option of the fusion, e.g. hidden_dim=64 or objects=image (relation)"
    ),
    encoder: list[str] = typer.Option([], help="MODALITY=ENCODER, e.g. text=text_bag (polyfuse encoders)"),
    encoder_option: list[str] = typer.Option(
        [], help="MODALITY.KEY=VALUE option of a modality's encoder, e.g. image.dropout=0.2"
    ),
    head_option: list[str] = typer.Option(
        [], help="KEY=VALUE option of every label's head, e.g. dropout=0.3 or hidden_dim=64"
    ),
    pretrained: list[str] = typer.Option([], help="MODALITY=NAME_OR_PATH of a HuggingFace model"),
    freeze: list[str] = typer.Option([], help="modality whose pretrained encoder stays frozen"),
    finetune: list[str] = typer.Option([], help="modality whose pretrained encoder is fine-tuned"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only errors"),
    init_from: Optional[Path] = typer.Option(
        None,
        help="pre-trained model (polyfuse pretrain) or text generator (fit-text) to start the encoders from",
    ),
    train: Optional[dict[str, Any]] = None,  # every TrainConfig field, from with_config_options
) -> None:
    """Train a multimodal model on TABLE; print schema, progress and test metrics; save it to OUT."""
    import polyfuse

    encoders = _pairs(encoder, "--encoder")
    params: dict[str, dict[str, Any]] = {
        m: {"pretrained": p} for m, p in _pairs(pretrained, "--pretrained").items()
    }
    for m in params:
        encoders.setdefault(m, _hf_encoder_for(m))
    for key, value in _pairs(encoder_option, "--encoder-option").items():
        modality, dot, name = key.partition(".")
        if not dot or not name:
            raise typer.BadParameter(f"expected MODALITY.KEY=VALUE for --encoder-option, got {key}={value}")
        params.setdefault(modality, {})[name] = _number_or_text(value)
    polyfuse.fit(
        str(table) if table else None,
        label=(label[0] if len(label) == 1 else label) if label else None,
        out=out,
        roles=_roles(
            text=text, image=image, audio=audio, numeric=numeric, categorical=categorical, ignore=ignore
        ),
        split_column=split_column,
        fusion=fusion,
        fusion_params={k: _number_or_text(v) for k, v in _pairs(fusion_option, "--fusion-option").items()},
        encoders=encoders,
        encoder_params=params,
        head_params={k: _number_or_text(v) for k, v in _pairs(head_option, "--head-option").items()},
        freeze={**{m: True for m in freeze}, **{m: False for m in finetune}},
        on_error=on_error,
        verbose=not quiet,
        init_from=init_from,
        **(train or {}),
    )


@app.command()
@with_config_options(
    TrainConfig, into="train", defaults=COMPARE_DEFAULTS, skip=("baselines", "ensemble", "progress")
)
@with_config_options(CompareOptions, into="options")
def compare(
    table: Optional[Path] = typer.Argument(
        None, help="CSV / Parquet / JSONL table; default: the built-in digits-av"
    ),
    label: Optional[list[str]] = typer.Option(None, "--label", "-l", help="label column"),
    out: Path = typer.Option(Path("runs/compare"), help="comparison directory (resumed if it exists)"),
    fusions: str = typer.Option(",".join(DEFAULT_FUSIONS), help="comma-separated fusions to try"),
    encoder: list[str] = typer.Option(
        [], help="MODALITY=ENC1,ENC2: encoders to try for a modality, e.g. text=hf_text,text_bag"
    ),
    balances: Optional[str] = typer.Option(
        None,
        help="comma-separated balancing strategies to try on runs of 2+ modalities, e.g. none,aux,ogm_ge "
        "(default: --balance)",
    ),
    seeds: int = typer.Option(1, help="seeds per configuration"),
    role: list[str] = typer.Option([], help="COLUMN=ROLE (text, image, audio, numeric, categorical, ignore)"),
    split_column: Optional[str] = typer.Option(None, help="column with train / val / test values"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only errors"),
    train: Optional[
        dict[str, Any]
    ] = None,  # TrainConfig's fields but those of fit's own models (runs set them)
    options: Optional[dict[str, Any]] = None,  # every CompareOptions field, from with_config_options
) -> None:
    """Train modality subsets x fusions (x balancing strategies x encoders) x seeds; write leaderboard.csv
    and best/ to OUT."""
    import polyfuse

    choices = {m: names.split(",") for m, names in _pairs(encoder, "--encoder").items()}
    result = polyfuse.compare(
        str(table) if table else None,
        label=(label[0] if len(label) == 1 else label) if label else None,
        out=out,
        fusions=[f.strip() for f in fusions.split(",") if f.strip()],
        encoder_choices=choices,
        balances=[b.strip() for b in balances.split(",") if b.strip()] if balances else None,
        seeds=seeds,
        **(options or {}),
        roles=_pairs(role, "--role"),
        split_column=split_column,
        on_error=on_error,
        verbose=not quiet,
        **(train or {}),
    )
    state = "finished" if result.finished else "stopped by the budget (run again to resume)"
    typer.echo(f"comparison {state}: {out / 'leaderboard.csv'}, best model in {result.best_dir}")
    typer.echo(f"HTML report: polyfuse report {out}")


def _hf_encoder_for(modality: str) -> str:
    # A --pretrained without --encoder means the HuggingFace adapter of the kind the modality is
    # named after (the table is not read yet); other names get the text adapter.
    import polyfuse.data.modalities  # noqa: F401  (registers the modalities)
    from polyfuse.registry import MODALITIES

    known = MODALITIES.get(modality).pretrained_encoder if modality in MODALITIES else None
    return known or "hf_text"


@app.command()
@with_config_options(TrainConfig, into="train", skip=("baselines", "ensemble", "progress"))
@with_config_options(PretrainOptions, into="options")
def pretrain(
    table: Path = typer.Argument(..., help="CSV / Parquet / JSONL table (no label needed)"),
    out: Path = typer.Option(Path("runs/pretrained"), help="where to save the pre-trained model directory"),
    text: list[str] = typer.Option([], help="declare a text column"),
    image: list[str] = typer.Option([], help="declare an image-path column"),
    audio: list[str] = typer.Option([], help="declare an audio-path column"),
    numeric: list[str] = typer.Option([], help="declare a numeric column"),
    categorical: list[str] = typer.Option([], help="declare a categorical column"),
    ignore: list[str] = typer.Option([], help="ignore a column (e.g. a label)"),
    split_column: Optional[str] = typer.Option(None, help="column with train / val / test values"),
    encoder: list[str] = typer.Option([], help="MODALITY=ENCODER, e.g. text=text_bag (polyfuse encoders)"),
    freeze: list[str] = typer.Option([], help="modality whose pretrained encoder stays frozen (LiT)"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    train: Optional[dict[str, Any]] = None,  # every TrainConfig field, from with_config_options
    options: Optional[dict[str, Any]] = None,  # every PretrainOptions field
) -> None:
    """Align TABLE's modalities in one embedding space without labels; print retrieval scores on its
    test split; save the encoders and projections to OUT."""
    import polyfuse

    done = polyfuse.pretrain(
        str(table),
        out=out,
        roles=_roles(
            text=text, image=image, audio=audio, numeric=numeric, categorical=categorical, ignore=ignore
        ),
        split_column=split_column,
        encoders=_pairs(encoder, "--encoder"),
        freeze={m: True for m in freeze},
        on_error=on_error,
        **(options or {}),
        **(train or {}),
    )
    summary = done.summary
    typer.echo(
        f"aligned {', '.join(f'{a}:{b}' for a, b in done.pairs)} in {summary['epochs']} epochs "
        f"(kept epoch {summary['best_epoch']}, validation Recall@1 {summary['val_recall_at_1']:.4f})"
    )
    for direction, scores in done.test.items():
        typer.echo(f"test {direction}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    typer.echo(f"saved to {out}")


@app.command("index")
def index_command(
    model: Path = typer.Argument(..., help="pre-trained model directory (polyfuse pretrain)"),
    table: Path = typer.Argument(..., help="table whose rows to index"),
    modality: str = typer.Option(..., help="the modality to index, e.g. image"),
    out: Path = typer.Option(Path("runs/index"), help="folder to save the index to"),
    kind: str = typer.Option("flat", help="flat (exact), hnsw or ivf (approximate, for large tables)"),
    id_column: Optional[str] = typer.Option(
        None, help="column naming the rows in results (default: row number)"
    ),
    param: list[str] = typer.Option(
        [], help="KEY=VALUE option of the kind: hnsw m, ef_search; ivf nlist, nprobe"
    ),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
) -> None:
    """Index one modality of TABLE's rows in MODEL's shared space, for polyfuse search."""
    import polyfuse

    params = {k: int(v) for k, v in _pairs(param, "--param").items()}
    made = polyfuse.index(
        model, str(table), modality, out=out, kind=kind, id_column=id_column, on_error=on_error, **params
    )
    typer.echo(f"indexed {len(made)} rows of {modality!r} ({kind}) to {out}")


@app.command("search")
def search_command(
    index: Path = typer.Argument(..., help="index folder (polyfuse index)"),
    text: Optional[str] = typer.Option(None, help="a text query"),
    image: Optional[Path] = typer.Option(None, help="an image file to query with"),
    audio: Optional[Path] = typer.Option(None, help="an audio file to query with"),
    modality: Optional[str] = typer.Option(
        None, help="the model's modality that reads the query, if several"
    ),
    k: int = typer.Option(10, "-k", "--k", help="how many rows"),
) -> None:
    """Print the K indexed rows nearest to a text, picture or recording: row id and cosine similarity."""
    import polyfuse

    for row, score in polyfuse.search(index, text=text, image=image, audio=audio, modality=modality, k=k):
        typer.echo(f"{row}\t{score:.4f}")


@app.command("zero-shot")
def zero_shot_command(
    model: Path = typer.Argument(..., help="pre-trained model directory (polyfuse pretrain)"),
    table: Path = typer.Argument(..., help="table whose rows to classify"),
    modality: str = typer.Option(..., help="the modality to classify, e.g. image"),
    template: list[str] = typer.Option(
        ["{}"],
        "--template",
        "--zero-shot",
        help='the text each class becomes, e.g. "a picture of a {}"; repeat for a prompt ensemble',
    ),
    classes: Optional[str] = typer.Option(
        None, help="comma-separated class names (default: the label's values)"
    ),
    label: Optional[str] = typer.Option(None, help="column with the true class: accuracy is printed"),
    out: Optional[Path] = typer.Option(None, help="CSV to write the predictions to"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
) -> None:
    """Classify MODALITY of TABLE's rows by the class names alone, through MODEL's shared space."""
    import polyfuse

    names = [c.strip() for c in classes.split(",")] if classes else None
    done = polyfuse.zero_shot(
        model, str(table), modality, names, template=template, label=label, on_error=on_error
    )
    if out is not None:
        done.predictions.to_csv(out)
    counts = done.predictions["prediction"].value_counts().to_dict()
    typer.echo(f"classified {len(done.predictions)} rows: {counts}")
    if done.accuracy is not None:
        typer.echo(f"accuracy against {label!r}: {done.accuracy:.4f}")


@app.command("fit-text")
@with_config_options(TrainConfig, into="train", skip=("baselines", "ensemble", "progress"))
@with_config_options(GenerateOptions, into="options")
def fit_text_command(
    table: Path = typer.Argument(..., help="CSV / Parquet / JSONL table"),
    out: Path = typer.Option(Path("runs/generator"), help="where to save the model directory"),
    text: list[str] = typer.Option([], help="declare a text column"),
    image: list[str] = typer.Option([], help="declare an image-path column"),
    audio: list[str] = typer.Option([], help="declare an audio-path column"),
    numeric: list[str] = typer.Option([], help="declare a numeric column"),
    categorical: list[str] = typer.Option([], help="declare a categorical column"),
    ignore: list[str] = typer.Option([], help="ignore a column"),
    split_column: Optional[str] = typer.Option(None, help="column with train / val / test values"),
    encoder: list[str] = typer.Option([], help="MODALITY=ENCODER, e.g. image=image_cnn (polyfuse encoders)"),
    freeze: list[str] = typer.Option([], help="modality whose pretrained encoder stays frozen"),
    init_from: Optional[Path] = typer.Option(
        None, help="start the encoders from a pre-trained model (polyfuse pretrain) or another generator"
    ),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    train: Optional[dict[str, Any]] = None,  # every TrainConfig field, from with_config_options
    options: Optional[dict[str, Any]] = None,  # every GenerateOptions field
) -> None:
    """Train a model that writes TABLE's --target text column (captions, answers) from its other
    columns (--inputs); print its scores on the test split; save it to OUT."""
    import polyfuse

    done = polyfuse.fit_text(
        str(table),
        out=out,
        roles=_roles(
            text=text, image=image, audio=audio, numeric=numeric, categorical=categorical, ignore=ignore
        ),
        split_column=split_column,
        encoders=_pairs(encoder, "--encoder"),
        freeze={m: True for m in freeze},
        init_from=init_from,
        on_error=on_error,
        **(options or {}),
        **(train or {}),
    )
    summary = done.summary
    typer.echo(
        f"trained in {summary['epochs']} epochs (kept epoch {summary['best_epoch']}, validation loss "
        f"{summary['val_loss']:.4f}); vocabulary {summary['vocabulary']} words"
    )
    if done.test:
        typer.echo("test: " + ", ".join(f"{k} {v:.4f}" for k, v in done.test.items()))
    for example in done.examples[:3]:
        typer.echo(f"  wrote {example['written']!r} for {example['reference']!r}")
    typer.echo(f"saved to {out}")


@app.command("caption")
def caption_command(
    model: Path = typer.Argument(..., help="text generator directory (polyfuse fit-text)"),
    file: str = typer.Argument(..., help="the input: an image or audio file (or a value of --column)"),
    column: Optional[str] = typer.Option(None, help="the input column, when the model reads several"),
    beam: Optional[int] = typer.Option(None, help="beam width (1: greedy; default: the model's)"),
) -> None:
    """Write the text MODEL gives one input: a caption for an image or a recording."""
    import polyfuse

    typer.echo(polyfuse.caption(model, file, column=column, beam=beam))


@app.command("ask")
def ask_command(
    model: Path = typer.Argument(..., help="a question-answering model: polyfuse fit-text or fit"),
    image: Path = typer.Argument(..., help="the image (or other file) asked about"),
    question: str = typer.Argument(..., help='the question, e.g. "what colour is the circle?"'),
    beam: Optional[int] = typer.Option(None, help="beam width of a generator (1: greedy)"),
) -> None:
    """Answer QUESTION about IMAGE with MODEL: written word by word by a generator (fit-text
    --target answer), or the most probable answer of a classifier (fit --label answer)."""
    import polyfuse

    typer.echo(polyfuse.ask(model, image, question, beam=beam))


@app.command()
def evaluate(
    model: Path = typer.Argument(..., help="saved model directory"),
    table: Path = typer.Argument(..., help="labelled table"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Metrics of a saved model on a labelled table."""
    import polyfuse

    metrics = polyfuse.load(model).evaluate(str(table), on_error=on_error)
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    _print_metrics(metrics)


def _print_metrics(metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif key == "confusion_matrix":
            table.add_row(key, "\n".join(" ".join(f"{v:4d}" for v in row) for row in value))
    Console().print(table)
    for row in metrics.get("skipped_rows", []):
        typer.echo(f"skipped: {row}", err=True)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="saved model directory"),
    table: Path = typer.Argument(..., help="table with the model's input columns"),
    out: Path = typer.Option(Path("predictions.csv"), help="CSV to write: row, label(s) and probabilities"),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
    budget_ms: float | None = typer.Option(None, help=BUDGET_HELP),
) -> None:
    """Predict labels (and class probabilities) for every row of TABLE."""
    import polyfuse

    frame = polyfuse.load(model).predictions(str(table), on_error=on_error, budget_ms=budget_ms)
    frame.index.name = "row"
    frame.to_csv(out)
    typer.echo(f"wrote {len(frame)} predictions to {out}")


@app.command()
def info(model: Path = typer.Argument(..., help="saved model directory")) -> None:
    """Inputs, encoders, fusion, labels and test metrics of a saved model."""
    import polyfuse

    p = polyfuse.load(model)
    typer.echo(f"model: {model}")
    for spec in p.schema.inputs:
        enc = p.model_config.encoders.get(spec.name)
        used = f"encoder {enc.name}" if enc else "not used by the final model"
        typer.echo(f"  input {spec.name} ({spec.kind}, columns {spec.columns}): {used}")
    typer.echo(f"  fusion: {p.model_config.fusion.name}")
    for member in p.model_config.members:
        typer.echo(f"  member {member.name} (weight {member.weight:.2f}): fusion {member.model.fusion.name}")
    for spec in p.schema.labels:
        kind = f"{len(spec.classes)} classes" if spec.classes else "values"
        typer.echo(f"  label {spec.column} ({spec.task}): {kind}")
    typer.echo(f"  test: {_scores(p.metrics.get('test', {}))}")
    for name, base in p.metrics.get("baselines", {}).items():
        typer.echo(f"  {name} only: {_scores(base['test'])}")


def _scores(test: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))


@app.command()
def export(
    model: Path = typer.Argument(..., help="saved model directory"),
    onnx: Optional[Path] = typer.Option(None, help="ONNX file to write; default: MODEL/model.onnx"),
    quantize: Optional[str] = typer.Option(None, help="int8: also write <stem>.int8.onnx (dynamic)"),
    data: Optional[Path] = typer.Option(
        None, help="labelled table for the parity check and int8 accuracy; default: the model's test split"
    ),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
) -> None:
    """Export MODEL to ONNX (preprocessed tensors in, logits out) for `polyfuse serve --backend onnx`."""
    from polyfuse.export import export_dir

    done = export_dir(model, onnx, quantize, str(data) if data else None, on_error=on_error)
    typer.echo(f"wrote {done['onnx']} ({done['bytes'] / 2**20:.2f} MB, {done['exporter']} exporter)")
    typer.echo(f"  parity with torch on {done['rows']}: max |difference| {done['parity']:.2e}")
    if "int8" in done:
        ratio = done["int8_bytes"] / done["bytes"]
        typer.echo(f"wrote {done['int8']} ({done['int8_bytes'] / 2**20:.2f} MB, {ratio:.0%} of fp32)")
        cmp = done["comparison"]
        if cmp is None:
            typer.echo("  accuracy not compared: no labelled rows (pass --data)")
        else:
            for one in (cmp.get("by_label") or {cmp["label"]: cmp}).values():  # every label's
                typer.echo(
                    f"  {one['label']} {one['metric']}: fp32 {one['fp32']:.4f}, int8 {one['int8']:.4f} "
                    f"({one['change']:+.4f}) on {cmp['rows']} rows"
                )


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="compare, model or explain directory"),
    out: Optional[Path] = typer.Option(None, help="HTML file to write; default: RUN_DIR/report.html"),
) -> None:
    """Write a self-contained HTML report (tables, figures) of a compare, model or explain directory."""
    import polyfuse

    typer.echo(str(polyfuse.report(run_dir, out=out)))


@app.command()
def explain(
    model: Path = typer.Argument(..., help="saved model directory"),
    table: Optional[Path] = typer.Argument(None, help="labelled table; default: the model's own test split"),
    out: Path = typer.Option(..., help="folder to write shapley.json, explain.json and the figures"),
    compare: Optional[Path] = typer.Option(None, help="compare directory: Shapley over retrained subsets"),
    samples: int = typer.Option(8, help="rows per modality explained by integrated gradients"),
    steps: int = typer.Option(24, help="integration steps of integrated gradients"),
    seed: int = typer.Option(0),
    on_error: str = typer.Option("raise", help=ON_ERROR_HELP),
) -> None:
    """Modality Shapley values, feature attributions, robustness and fusion errors of a saved model."""
    import polyfuse

    result = polyfuse.explain(
        model,
        str(table) if table else None,
        out=out,
        compare_dir=compare,
        seed=seed,
        samples=samples,
        steps=steps,
        on_error=on_error,
    )
    first = {result["label"]: {"metric": result["metric"], "shapley": result["shapley"]}}
    per_label = result.get("labels") or first  # every label's, with several
    for label, found in per_label.items():
        shapley = found["shapley"]
        named = f"{label} " if len(per_label) > 1 else ""
        typer.echo(
            f"{named}{found['metric']}: {shapley['metric_all']:.4f} with every modality, "
            f"{shapley['metric_none']:.4f} with none ({result['rows']} rows)"
        )
        for name, value in sorted(shapley["values"].items(), key=lambda kv: -kv[1]):
            typer.echo(f"  Shapley {name:12s} {value:+.4f}")
    typer.echo(f"wrote {out}")


@app.command()
def serve(
    model: Path = typer.Argument(..., help="saved model directory"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="server processes, each with its own model and batcher"),
    max_batch: int = typer.Option(32, help="rows grouped into one forward pass (1: no batching)"),
    max_wait_ms: float = typer.Option(5.0, help="how long a request waits for others to batch with"),
    backend: str = typer.Option("torch", help="torch, or onnx (needs `polyfuse export MODEL` first)"),
    onnx: Optional[Path] = typer.Option(
        None, help="exported model for --backend onnx; default MODEL/model.onnx"
    ),
    api_key_env: Optional[str] = typer.Option(None, help="environment variable holding the X-API-Key"),
    threads: Optional[int] = typer.Option(None, help="torch / onnxruntime threads per process"),
    max_upload_mb: float = typer.Option(10.0, help="largest image or audio file"),
    max_image_pixels: int = typer.Option(4096 * 4096, help="largest image, width x height"),
    max_audio_seconds: float = typer.Option(30.0, help="longest audio clip"),
    max_text_chars: int = typer.Option(10_000, help="longest text field"),
    timeout_s: float = typer.Option(30.0, help="longest wait for the model before a 503"),
    budget_ms: Optional[float] = typer.Option(None, help=BUDGET_HELP + " (torch backend)"),
    index: Optional[Path] = typer.Option(
        None, help="search index (polyfuse index) that POST /search answers from"
    ),
) -> None:
    """Serve a saved model over HTTP: /predict, /predict/batch, /explain, /model, /metrics, a page at /;
    /search with --index."""
    import os

    from polyfuse.errors import PolyfuseError
    from polyfuse.serve import Limits, ServeConfig
    from polyfuse.serve.app import serve as run

    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise PolyfuseError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
    limits = Limits(
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_request_bytes=max(Limits().max_request_bytes, 2 * int(max_upload_mb * 2**20)),
        max_image_pixels=max_image_pixels,
        max_audio_seconds=max_audio_seconds,
        max_text_chars=max_text_chars,
        request_timeout_s=timeout_s,
    )
    config = ServeConfig(
        max_batch,
        max_wait_ms,
        backend,
        str(onnx) if onnx else None,
        key,
        threads,
        limits,
        budget_ms,
        str(index) if index else None,
    )
    typer.echo(f"serving {model} on http://{host}:{port} (page at /, API docs at /docs)")
    run(model, host, port, workers, config)


@app.command("encoders")
def list_encoders() -> None:
    """List registered encoders."""
    import polyfuse

    for item in polyfuse.list_encoders():
        typer.echo(f"{item['name']:18s} {item['modality']:8s} {item['doc']}")


fusions_app = typer.Typer(help="Fusion strategies.", invoke_without_command=True)
app.add_typer(fusions_app, name="fusions")


@fusions_app.callback()
def list_fusions(ctx: typer.Context) -> None:
    """List registered fusion strategies (`polyfuse fusions list`: with sizes and speeds)."""
    import polyfuse

    if ctx.invoked_subcommand is None:
        for item in polyfuse.list_fusions():
            typer.echo(f"{item['name']:18s} {item['doc']}")


@fusions_app.command("list")
def fusions_table(
    dims: str = typer.Option(
        "image=128,audio=128,text=128", help="MODALITY=SIZE,... embedding sizes the fusions are built for"
    ),
    output_dim: Optional[int] = typer.Option(None, help="output size of every fusion (default: its own)"),
    batch_size: int = typer.Option(64, help="rows per timed forward pass"),
    repeats: int = typer.Option(5, help="timed forward passes per fusion (the median is shown)"),
) -> None:
    """Table of every fusion: first doc line, parameters, forward latency (eval, no grad, CPU)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from polyfuse.fusions import profile_fusions

    in_dims = _dims(dims)
    rows = profile_fusions(in_dims, output_dim=output_dim, batch_size=batch_size, repeats=repeats)
    shown = ", ".join(f"{m}={d}" for m, d in in_dims.items())
    table = Table(title=f"fusions for {shown}; ms per batch of {batch_size} (median of {repeats})")
    for column in ("fusion", "description", "params", "output", "ms / batch"):
        table.add_column(column, justify="left" if column in ("fusion", "description") else "right")
    for row in rows:
        cells = (escape(row["doc"]), f"{row['params']:,}", str(row["output_dim"]), f"{row['latency_ms']:.3g}")
        table.add_row(row["name"], *cells)
    Console(width=max(120, Console().width)).print(table)


def _dims(text: str) -> dict[str, int]:
    """``image=64,audio=64`` -> {"image": 64, "audio": 64}."""
    pairs = _pairs([item for item in text.split(",") if item], "--dims")
    if not pairs or not all(size.isdigit() and int(size) > 0 for size in pairs.values()):
        raise typer.BadParameter(f"expected MODALITY=SIZE,... with positive integer sizes, got {text!r}")
    return {name: int(size) for name, size in pairs.items()}


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets."""
    from polyfuse.data.datasets import list_datasets

    for item in list_datasets():
        typer.echo(f"{item['name']:12s} {item.get('description', '')}")


@datasets_app.command("build")
def datasets_build(
    name: str = typer.Argument(..., help="dataset name (polyfuse datasets list)"),
    out: Optional[Path] = typer.Option(None, help="folder to write; default: the user cache"),
    seed: int = typer.Option(0),
    force: bool = typer.Option(False, help="rebuild even if a complete build exists"),
    limit: Optional[int] = typer.Option(None, help="build only about this many rows, for a quick look"),
) -> None:
    """Build a built-in dataset as a table with files on disk."""
    from polyfuse.data.datasets import build_dataset

    typer.echo(f"table written to {build_dataset(name, out=out, seed=seed, force=force, limit=limit)}")


def main() -> None:
    """Entry point: user mistakes print one clear line and exit 2, never a traceback."""
    from polyfuse.errors import PolyfuseError

    try:
        app()
    except PolyfuseError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
    except KeyError as err:  # unknown registry names
        typer.secho(f"error: {err.args[0]}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
