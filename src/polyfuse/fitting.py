"""The fit pipeline: schema -> splits -> preprocessing -> fused model + single-modality baselines.

``prepare`` is the part before training that ``fit`` and ``compare`` share; ``model_metrics`` is the
``metrics.json`` of any trained model directory.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polyfuse.config import (
    FEATURE_GATES,
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    Schema,
    TrainConfig,
    plain,
    without_modality_dropout,
)
from polyfuse.data.batch import EncodedTable
from polyfuse.data.errors import DataError, SchemaError
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.schema import infer_schema
from polyfuse.data.split import split_indices
from polyfuse.errors import PolyfuseError
from polyfuse.eval.evaluate import evaluate_table
from polyfuse.eval.gates import gate_report
from polyfuse.models.build import build_model
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.predictor import DEFAULT_DATASET, Predictor, read_rows
from polyfuse.reporting import Reporter

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
ENSEMBLE_MODES = ("auto", "off")  # TrainConfig.ensemble: see choose_final


@dataclass
class FitRequest:
    """Everything ``fit`` was asked for, as data."""

    label: list[str]
    roles: dict[str, str] = field(default_factory=dict)
    split_column: str | None = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    encoders: dict[str, str] = field(default_factory=dict)  # modality -> encoder name
    encoder_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    head_params: dict[str, Any] = field(default_factory=dict)  # every head's hidden_dim, dropout ...
    freeze: dict[str, bool] = field(default_factory=dict)
    processor_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_error: str = "raise"
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None  # a pre-trained model or text generator directory to start from


@dataclass
class Trained:
    model: MultimodalModel
    test: dict[str, Any]  # test metrics
    summary: dict[str, Any]  # epochs, seconds, validation score
    history: list[dict[str, float]] = field(default_factory=list)  # logged metrics per epoch


@dataclass
class Prepared:
    """A table ready to train on: its schema, fitted preprocessor, encoders and encoded splits."""

    schema: Schema
    pre: Preprocessor
    encoders: dict[str, EncoderConfig]  # modality -> encoder
    tables: dict[str, EncodedTable]  # "train" / "val" / "test"
    heads: list[HeadConfig]  # one per label
    skipped: list[DataError] = field(default_factory=list)  # bad rows dropped under on_error="skip"
    selection: dict[str, Any] = field(default_factory=dict)  # tabular columns kept (select_features)
    init: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> pre-trained encoder weights


def prepare(
    frame: pd.DataFrame,
    base_dir: Path,
    req: FitRequest,
    schema: Schema | None = None,
    splits: dict[str, np.ndarray] | None = None,
) -> Prepared:
    """Schema -> encoders -> split -> preprocessor (fit on train) -> encoded splits -> heads.

    ``schema`` and ``splits`` are inferred / drawn from ``req`` unless given (a comparison infers
    them once and prepares once per encoder assignment).
    """
    if schema is None:
        schema = infer_schema(frame, req.label, base_dir, declared=req.roles, split_column=req.split_column)
    if splits is None:
        splits = split_indices(frame, schema, req.train.seed, req.train.val_fraction, req.train.test_fraction)
    if req.train.augment.strip().lower() not in ("off", "none", ""):
        from polyfuse.train.augment import augment_plan

        augment_plan(req.train.augment, {s.name: s.kind for s in schema.inputs})  # a wrong name fails now
    selection: dict[str, Any] = {}
    keep, t = req.train.select_features, req.train
    if keep is not None:
        from polyfuse.data.feature_selection import select_columns

        schema, selection = select_columns(frame, schema, splits["train"], keep, t.seed, t.select_features_by)
    encoders, options = choose_encoders(schema, req)
    fitted: dict[str, Any] = {}
    init: dict[str, dict[str, Any]] = {}
    if req.init_from is not None:
        encoders, fitted, init = pretrained_parts(schema, req, encoders)
    pre = Preprocessor(schema, options).fit(frame.iloc[splits["train"]], base_dir, fitted)
    tables, skipped = encode_splits(pre, frame, base_dir, splits, req.on_error)
    heads = [
        HeadConfig(s.column, s.task, pre.num_outputs(s.column), dict(req.head_params)) for s in schema.labels
    ]
    return Prepared(schema, pre, encoders, tables, heads, skipped, selection, init)


def pretrained_parts(
    schema: Schema, req: FitRequest, encoders: dict[str, EncoderConfig]
) -> tuple[dict[str, EncoderConfig], dict[str, Any], dict[str, dict[str, Any]]]:
    """``req.init_from``'s parts for the modalities it shares with ``schema``: the encoders (its own
    configs, so that its weights fit), its fitted processors (the same vocabulary, sizes and
    statistics) and its encoders' weights. A modality of the table that it lacks keeps ``encoders``'.
    The source is a pre-trained model (``pretrain``) or a text generator (``fit_text``: a captioner's
    image encoder has learnt what the pictures hold)."""
    from polyfuse.generator import Generator, is_generator, load_generator
    from polyfuse.pretrained import Pretrained, load_pretrained

    path = str(req.init_from)
    source: Pretrained | Generator = load_generator(path) if is_generator(path) else load_pretrained(path)
    shared = [spec for spec in schema.inputs if spec.name in source.encoders]
    if not shared:
        raise SchemaError(
            f"init_from: the pre-trained model has modalities {sorted(source.encoders)}, none of this "
            f"table's {schema.modalities}"
        )
    theirs = {spec.name: spec for spec in source.pre.schema.inputs}
    chosen, fitted, init = dict(encoders), {}, {}
    for spec in shared:
        named = req.encoders.get(spec.name)
        if named is not None and named != source.encoders[spec.name].name:
            raise SchemaError(
                f"init_from: {spec.name!r} was pre-trained with encoder "
                f"{source.encoders[spec.name].name!r}, not {named!r}"
            )
        if (theirs[spec.name].kind, theirs[spec.name].columns) != (spec.kind, spec.columns):
            raise SchemaError(
                f"init_from: {spec.name!r} was pre-trained on {theirs[spec.name].kind} columns "
                f"{theirs[spec.name].columns}, here it is {spec.kind} {spec.columns}"
            )
        freeze = req.freeze.get(spec.name, source.encoders[spec.name].freeze)
        chosen[spec.name] = dataclasses.replace(source.encoders[spec.name], freeze=freeze)
        fitted[spec.name] = source.pre.processors[spec.name]
        init[spec.name] = source.model.encoders[spec.name].state_dict()
    return chosen, fitted, init


def run_fit(
    frame: pd.DataFrame, base_dir: Path, req: FitRequest, rep: Reporter, log_dir: Path | None
) -> Predictor:
    """Train the fused model (and the baselines), evaluate on the test split, return a Predictor."""
    from polyfuse.train.balancers.base import needs_teachers
    from polyfuse.train.dropout import check_dropout

    if not rep.verbose:
        req.train = dataclasses.replace(req.train, progress=False)
    schema = infer_schema(frame, req.label, base_dir, declared=req.roles, split_column=req.split_column)
    check_dropout(req.train, schema.modalities)  # a misspelt modality fails before any data work
    req.fusion = gated_fusion(req.fusion, req.train)
    rep.schema(schema, frame, base_dir)
    prep = prepare(frame, base_dir, req, schema)
    rep.skipped(prep.skipped)
    rep.feature_selection(prep.selection)
    config = ModelConfig(prep.encoders, req.fusion, prep.heads)
    watched = _watched(req.train, prep)
    # A strategy taught by single-modality models (balance="umt") gets the baselines, trained first.
    taught = needs_teachers(req.train.balance) and req.train.baselines
    baselines = train_baselines(req, prep, rep) if taught else {}
    teachers = {name: c.trained.model for name, c in baselines.items()} or None
    fused = train_and_test(
        config, prep.pre, prep.tables, watched, log_dir, rep, "fused", init=prep.init, teachers=teachers
    )
    if not taught and req.train.baselines:
        baselines = train_baselines(req, prep, rep)
    final, chosen = choose_final(
        schema, [Candidate("fused", config, fused), *baselines.values()], prep.tables, req.train.ensemble
    )
    rep.final(final.name, chosen)
    imbalance = diagnose(schema, fused, baselines, prep.tables)
    rep.imbalance(imbalance)
    gates = gate_report(fused.model, prep.tables["val"], prep.pre.processors)
    rep.gates(gates)
    cascade = plan_final_cascade(schema, final.trained.model, prep.tables)
    rep.cascade(cascade)
    metrics = {
        **model_metrics(schema, final.config, final.trained, prep.tables),
        "final_model": final.name,
        "balance": req.train.balance,
        "fused": {"fusion": req.fusion.name, "test": fused.test, **fused.summary},
        **({"ensemble": chosen} if chosen else {}),
        **({"imbalance": imbalance} if imbalance else {}),
        **({"cascade": cascade} if cascade else {}),
        **({"feature_selection": prep.selection} if prep.selection else {}),
        **({"feature_gates": gates} if gates else {}),
        **({"init_from": {"path": str(req.init_from), "modalities": sorted(prep.init)}} if prep.init else {}),
        "baselines": {name: {"test": c.trained.test, **c.trained.summary} for name, c in baselines.items()},
        "skipped_rows": skipped_rows(prep.skipped),
    }
    rep.results(metrics)
    return Predictor(prep.pre, final.config, req.train, final.trained.model, metrics)


def train_baselines(req: FitRequest, prep: Prepared, rep: Reporter) -> dict[str, Candidate]:
    """One single-modality model per modality (none for a single modality), without modality dropout."""
    baselines: dict[str, Candidate] = {}
    if len(prep.encoders) < 2:
        return baselines
    solo = without_modality_dropout(req.train)
    for name, encoder in prep.encoders.items():
        one = ModelConfig({name: encoder}, req.fusion, prep.heads)
        only = {k: t.select([name]) for k, t in prep.tables.items()}
        trained = train_and_test(one, prep.pre, only, solo, None, rep, name, init=prep.init)
        baselines[name] = Candidate(name, one, trained)
    return baselines


def gated_fusion(fusion: FusionConfig, cfg: TrainConfig) -> FusionConfig:
    """The fusion config with gates on every embedding when ``cfg.feature_gates`` asks for them."""
    if cfg.feature_gates not in FEATURE_GATES:
        raise PolyfuseError(f"feature_gates must be one of {FEATURE_GATES}, got {cfg.feature_gates!r}")
    return dataclasses.replace(fusion, gates=fusion.gates or cfg.feature_gates in ("embeddings", "both"))


def _watched(cfg: TrainConfig, prep: Prepared) -> TrainConfig:
    """The fused model's training config, with each modality's gradient share logged (2+ modalities)."""
    if len(prep.encoders) < 2 or "modality_grad_share" in cfg.callbacks:
        return cfg
    return dataclasses.replace(cfg, callbacks=[*cfg.callbacks, "modality_grad_share"])


def diagnose(
    schema: Schema, fused: Trained, baselines: dict[str, Candidate], tables: dict[str, EncodedTable]
) -> dict[str, Any]:
    """``metrics.json``'s ``imbalance``: per modality, linear probes on the fused model's and the
    single-modality model's embeddings (``eval.imbalance``, with baselines), and its gradient share
    per epoch; empty for one modality."""
    from polyfuse.eval.imbalance import grad_shares, probe_gaps

    out: dict[str, Any] = {}
    shares = grad_shares(fused.history)
    if shares:
        out["grad_share"] = shares
    if baselines:
        singles = {name: c.trained.model for name, c in baselines.items()}
        out["probe"] = probe_gaps(schema.labels, fused.model, singles, tables)
    return out


def plan_final_cascade(
    schema: Schema, model: MultimodalModel, tables: dict[str, EncodedTable]
) -> dict[str, Any]:
    """``metrics.json``'s ``cascade``: the final model's modality cascade measured on the validation
    rows (``eval.cascade.plan_cascade``), which a compute budget at prediction reads; empty for one
    modality, no validation rows, or only regression labels."""
    from polyfuse.eval.cascade import plan_cascade

    if len(model.modalities) < 2 or len(tables["val"]) == 0:
        return {}
    if all(spec.task == "regression" for spec in schema.labels):  # no confidence to stop on
        return {}
    return plan_cascade(model, tables["val"], schema.labels)


@dataclass
class Candidate:
    """A trained model that may become (part of) the final one."""

    name: str  # "fused", a modality (its single-modality model) or "ensemble"
    config: ModelConfig
    trained: Trained


def choose_final(
    schema: Schema, candidates: list[Candidate], tables: dict[str, EncodedTable], mode: str
) -> tuple[Candidate, dict[str, Any] | None]:
    """The final model: with ``mode`` "auto", the greedy validation ensemble of the candidates
    (``eval.selection``), which may be one of them alone; with "off", the first (the fused model).

    Returns the final model and, for "auto", the record of the choice that metrics.json keeps.
    """
    from polyfuse.eval.selection import ROUNDS, greedy_ensemble, selection_score
    from polyfuse.models.inference import predict_table

    if mode == "off" or len(candidates) == 1:
        return candidates[0], None
    val = tables["val"]
    targets = {s.column: val.targets[s.column].numpy() for s in schema.labels}
    outputs = {c.name: _numpy(predict_table(c.trained.model, val)) for c in candidates}
    mixable = _mixable(candidates)
    present = {  # the rows where a candidate has one of its modalities: it votes only there
        c.name: np.logical_or.reduce([val.mask[m].numpy() for m in c.config.encoders]) for c in mixable
    }
    picked = greedy_ensemble(
        {c.name: outputs[c.name] for c in mixable}, schema.labels, targets, present=present
    )
    alone = {c.name: selection_score(schema.labels, targets, outputs[c.name]) for c in candidates}
    record: dict[str, Any] = {"weights": picked.weights, "val_score": round(picked.score, 6)}
    best_alone = max(alone, key=lambda n: alone[n])
    # A token-level model, which the ensemble cannot hold, or a model whose rows without its modalities
    # count against it inside an ensemble but not alone: kept alone when it beats the mixture.
    if alone[best_alone] > picked.score:
        record = {"weights": {best_alone: 1.0}, "val_score": round(alone[best_alone], 6)}
    record |= {"candidates": {n: round(v, 6) for n, v in alone.items()}, "rounds": ROUNDS}
    if len(record["weights"]) == 1:
        return next(c for c in candidates if c.name in record["weights"]), record
    return _ensemble(
        schema, [c for c in mixable if c.name in record["weights"]], record["weights"], tables
    ), record


def _numpy(outputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in outputs.items()}


def _mixable(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates an ensemble can hold: embedding-level fusions (a token-level fusion's inputs are
    not one vector per modality) whose frozen encoders equal those of earlier candidates with the
    same config (the ensemble keeps one copy of those: ``models.ensemble.unit_key``)."""
    from polyfuse.models.ensemble import unit_key

    kept: list[Candidate] = []
    frozen: dict[tuple[str, object], torch.nn.Module] = {}
    for i, c in enumerate(candidates):
        model = c.trained.model
        if model.wants_tokens:
            continue
        keys = {m: unit_key(i, cfg) for m, cfg in c.config.encoders.items()}
        if any(
            (m, k) in frozen and not _same_weights(frozen[m, k], model.encoders[m]) for m, k in keys.items()
        ):
            continue
        for m, k in keys.items():
            frozen.setdefault((m, k), model.encoders[m])
        kept.append(c)
    return kept


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _ensemble(
    schema: Schema, members: list[Candidate], weights: dict[str, float], tables: dict[str, EncodedTable]
) -> Candidate:
    """The weighted ensemble of ``members`` as one model, evaluated on the validation and test splits."""
    from polyfuse.config import MemberConfig
    from polyfuse.models.ensemble import assemble, ensemble_config

    heads = members[0].config.heads
    configs = [MemberConfig(c.name, c.config, weights[c.name]) for c in members]
    model = assemble(configs, [c.trained.model for c in members], heads).eval()
    start = time.perf_counter()
    test = evaluate_table(model, schema, tables["test"])
    seconds = time.perf_counter() - start
    summary = {
        "train_seconds": round(sum(c.trained.summary["train_seconds"] for c in members), 2),
        "test_seconds": round(seconds, 3),
        "val": validation_summary(model, schema, tables["val"]),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    return Candidate("ensemble", ensemble_config(configs, heads), Trained(model, test, summary))


def validation_summary(model: MultimodalModel, schema: Schema, val: EncodedTable) -> dict[str, float]:
    """A model's ``{metric: validation score}`` as training reports it (``eval.selection.validation_metric``):
    the first label's primary metric with one label, ``{"score": selection_score}`` with several."""
    from polyfuse.eval.selection import SCORE, selection_score, validation_metric
    from polyfuse.models.inference import predict_table

    metric = validation_metric([s.task for s in schema.labels])
    if metric != SCORE:
        return {metric: evaluate_table(model, schema, val)[metric]}  # type: ignore[arg-type]
    targets = {s.column: val.targets[s.column].numpy() for s in schema.labels}
    return {SCORE: selection_score(schema.labels, targets, _numpy(predict_table(model, val)))}


def choose_encoders(
    schema: Schema, req: FitRequest
) -> tuple[dict[str, EncoderConfig], dict[str, dict[str, Any]]]:
    """An EncoderConfig per modality, and the processor options those encoders need."""
    import polyfuse.encoders  # noqa: F401  (registers the encoders)
    from polyfuse.registry import ENCODERS, MODALITIES

    unknown = (set(req.encoders) | set(req.encoder_params) | set(req.freeze)) - set(schema.modalities)
    if unknown:
        raise SchemaError(
            f"encoder options for unknown modalities {sorted(unknown)} (known: {schema.modalities})"
        )
    encoders: dict[str, EncoderConfig] = {}
    options = {k: dict(v) for k, v in req.processor_options.items()}
    for spec in schema.inputs:
        # Unless the user names one, the modality's default ("auto": see _text_encoder).
        name = req.encoders.get(spec.name, MODALITIES.get(spec.kind).default_encoder)
        params = dict(req.encoder_params.get(spec.name, {}))
        freeze = req.freeze.get(spec.name)
        if name == "auto":
            name, params, auto_freeze = _text_encoder(params)
            freeze = auto_freeze if freeze is None else freeze
        cls = ENCODERS.get(name)
        if cls.modality != spec.kind:
            raise SchemaError(
                f"encoder {name!r} takes {cls.modality} input, but {spec.name!r} is {spec.kind}"
            )
        opts = options.setdefault(spec.name, {})
        if name == "hf_text":
            opts.setdefault("tokenizer", params.get("pretrained") or _default_text_path())
        if spec.kind == "tabular" and req.train.feature_gates in ("tabular", "both"):
            params.setdefault("column_gates", True)
        features = getattr(cls, "features", None)  # the input features an encoder asks for, e.g. "waveform"
        if isinstance(features, str):
            opts.setdefault("features", features)
        encoders[spec.name] = EncoderConfig(name, params, bool(freeze))
    return encoders, {k: v for k, v in options.items() if v}


def _text_encoder(params: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """The offline MiniLM (frozen: its outputs are computed once) when installed, else a bag of words."""
    if _default_text_path() is not None:
        return "hf_text", params, True
    return "text_bag", params, False


def _default_text_path() -> str | None:
    from polyfuse.encoders import default_text_model_path

    return default_text_model_path()


def encode_splits(
    pre: Preprocessor, frame: pd.DataFrame, base_dir: Path, splits: dict[str, np.ndarray], on_error: str
) -> tuple[dict[str, EncodedTable], list[DataError]]:
    tables, skipped = {}, []
    for name, rows in splits.items():
        if len(rows) == 0:
            raise SchemaError(f"the {name} split is empty; give more rows or a split column with {name} rows")
        tables[name], errors = pre.transform(frame.iloc[rows], base_dir, on_error=on_error)
        skipped += errors
        if len(tables[name]) == 0:
            raise SchemaError(f"every row of the {name} split was skipped")
    return tables, skipped


def train_and_test(
    config: ModelConfig,
    pre: Preprocessor,
    tables: dict[str, EncodedTable],
    cfg: TrainConfig,
    log_dir: Path | None,
    rep: Reporter,
    title: str,
    callbacks: list[Any] | None = None,
    init: dict[str, dict[str, Any]] | None = None,
    teachers: dict[str, MultimodalModel] | None = None,
) -> Trained:
    from polyfuse.losses import training_losses
    from polyfuse.train.loop import cache_frozen_outputs, train_model

    torch.manual_seed(cfg.seed)  # initial weights follow the seed too
    model = build_model(config, pre)
    for name, weights in (init or {}).items():  # pre-trained encoders (fit(init_from=...))
        if name in model.encoders:
            model.encoders[name].load_state_dict(weights)
    losses = training_losses({h.label: h.task for h in config.heads}, cfg.label_smoothing)
    rep.start(title, model)
    result = train_model(
        model, config.heads, losses, tables["train"], tables["val"], cfg, log_dir, callbacks, teachers
    )
    start = time.perf_counter()
    cache_frozen_outputs(model, [tables["test"]])  # kept on the table: later models reuse it
    test = evaluate_table(model, pre.schema, tables["test"])
    summary = {
        "train_seconds": round(result.seconds, 2),
        "test_seconds": round(time.perf_counter() - start, 3),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "val": {result.monitor.removeprefix("val_"): result.best_score},
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **({"modality_weights": result.modality_weights} if result.modality_weights else {}),
    }
    rep.trained(title, test, summary)
    return Trained(model, test, summary, result.history)


def skipped_rows(errors: list[DataError]) -> list[dict[str, Any]]:
    """metrics.json's record of the rows ``on_error="skip"`` dropped."""
    return [{"row": plain(e.row), "column": e.column, "problem": e.problem} for e in errors]


def model_metrics(
    schema: Schema, config: ModelConfig, trained: Trained, tables: dict[str, EncodedTable]
) -> dict[str, Any]:
    """The common part of a model directory's metrics.json (fit and compare add their own keys)."""
    return {
        "task": schema.labels[0].task,
        "label": schema.labels[0].column,
        "modalities": list(config.encoders),
        "fusion": config.fusion.name,
        "encoders": {name: enc.name for name, enc in config.encoders.items()},
        "test": trained.test,
        **trained.summary,
        "rows": {name: len(table) for name, table in tables.items()},
    }


def fit_inputs(
    data: Any,
    label: str | list[str] | None,
    *,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    fusion: FusionConfig | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    train_options: dict[str, Any] | None = None,
    head_params: dict[str, Any] | None = None,
    init_from: str | Path | None = None,
) -> tuple[pd.DataFrame, Path, Any, dict[str, str] | None]:
    """The table, its folder, a ``FitRequest`` and the table's source, from ``fit``'s arguments.

    ``data=None`` means the built-in digits-av with its label and split column.
    """
    from polyfuse.train import check_names

    train_options = dict(train_options or {})
    unknown = set(train_options) - TRAIN_FIELDS
    if unknown:
        raise TypeError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(TRAIN_FIELDS)}")
    train = TrainConfig(**train_options)
    check_names(train)  # an unknown optimizer, scheduler or callback fails now, before any data work
    if train.ensemble not in ENSEMBLE_MODES:
        raise PolyfuseError(f"ensemble must be one of {', '.join(ENSEMBLE_MODES)}, not {train.ensemble!r}")
    source = _source(data)
    if data is None:
        from polyfuse.data.datasets import load_dataset

        data, label = load_dataset(DEFAULT_DATASET), label or "digit"
        split_column = split_column or "split"
    if label is None:
        raise PolyfuseError("a label column is needed (label=...)")
    request = FitRequest(
        label=[label] if isinstance(label, str) else list(label),
        roles=roles or {},
        split_column=split_column,
        fusion=fusion or FusionConfig(),
        encoders=dict(encoders or {}),
        encoder_params={k: dict(v) for k, v in (encoder_params or {}).items()},
        head_params=dict(head_params or {}),
        freeze=dict(freeze or {}),
        processor_options={k: dict(v) for k, v in (processor_options or {}).items()},
        on_error=on_error,
        train=train,
        init_from=None if init_from is None else str(init_from),
    )
    frame, base_dir = read_rows(data)
    return frame, base_dir, request, source


def _source(data: Any) -> dict[str, str] | None:
    """Where the training table came from, so that ``data_split`` can find its test rows later."""
    if data is None:
        return {"dataset": DEFAULT_DATASET}
    if isinstance(data, (str, Path)):
        return {"table": str(Path(data).resolve())}
    return None  # an in-memory frame: the caller passes it again
