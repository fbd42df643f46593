"""Typed configs. Every config is plain data that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

TASKS = ("multiclass", "binary", "multilabel", "regression")


@dataclass
class InputSpec:
    """One model input: a modality fed by one or more table columns."""

    name: str  # key in batches, embeddings and masks ("image", "text", "tabular", ...)
    kind: str  # a registered modality (MODALITIES): image, audio, text, tabular ...
    columns: list[str]  # table columns feeding it (tabular groups several, others take one)


@dataclass
class LabelSpec:
    """One target column and the task it defines."""

    column: str
    task: str  # one of TASKS
    classes: list[Any] = field(default_factory=list)  # class values in index order (not regression)


@dataclass
class Schema:
    """What each column of a table is for."""

    inputs: list[InputSpec]
    labels: list[LabelSpec]
    split_column: str | None = None  # column holding train/val/test, if the user gave one
    ignored: list[str] = field(default_factory=list)  # columns no role was found for
    roles: dict[str, str] = field(default_factory=dict)  # column -> role (numeric, categorical, ...)

    @property
    def modalities(self) -> list[str]:
        return [spec.name for spec in self.inputs]


@dataclass
class EncoderConfig:
    """Which registered encoder a modality uses, with its keyword arguments."""

    name: str  # key in ENCODERS
    params: dict[str, Any] = field(default_factory=dict)  # output_dim, hidden_dim, dropout, ...
    freeze: bool = False  # keep pretrained weights fixed (their outputs are then cached in training)


@dataclass
class FusionConfig:
    name: str = "concat"  # key in FUSIONS
    params: dict[str, Any] = field(default_factory=dict)  # output_dim, hidden_dim, dropout, ...
    gates: bool = False  # per-sample hard-concrete gates on every embedding first (fusions.gates)


@dataclass
class HeadConfig:
    label: str  # label column the head predicts
    task: str  # one of TASKS
    num_outputs: int  # classes (1 for binary and regression)
    params: dict[str, Any] = field(default_factory=dict)  # hidden_dim, dropout


@dataclass
class ModelConfig:
    encoders: dict[str, EncoderConfig]  # modality name -> encoder
    fusion: FusionConfig
    heads: list[HeadConfig]
    members: list[MemberConfig] = field(default_factory=list)  # an ensemble's models (fusion "ensemble")


@dataclass
class MemberConfig:
    """One model of an ensemble (``polyfuse.models.ensemble``) and its weight."""

    name: str  # "fused", or the modality of a single-modality model
    model: ModelConfig
    weight: float  # share of the ensemble's average; the weights sum to 1


def option(
    default: Any, help: str, *, search: tuple[str, Any] | None = None, flags: tuple[str, ...] = ()
) -> Any:
    """A config field with its help text, which the CLI and the docs show (``field_help``).

    Args:
        default: The one default: the API's, the CLI's (``compare`` may override it,
            ``COMPARE_DEFAULTS``) and the config file's; ``list`` / ``dict`` for an empty one.
        help: One line for ``--help``.
        search: ``(kind, choices or bounds)`` when ``compare --search optuna`` tunes the field:
            kind "choice" (a list), "float" or "log" (a (low, high) pair), or "registry" (the name
            of a registry in ``polyfuse.registry``: a choice over its entries).
        flags: The CLI's spellings when they are not ``--field-name`` (older names kept working).
    """
    metadata: dict[str, Any] = {"help": help}
    if search is not None:
        metadata["search"] = search
    if flags:
        metadata["flags"] = flags
    if default is list or default is dict:  # a mutable default: each config gets its own
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def field_help(cls: type, name: str) -> str:
    """The help text of a config field declared with ``option``."""
    found = {f.name: f for f in dataclasses.fields(cls)}[name]  # type: ignore[arg-type]
    return str(found.metadata.get("help", ""))


FEATURE_GATES = ("none", "tabular", "embeddings", "both")  # TrainConfig.feature_gates


@dataclass
class TrainConfig:
    """How a model is trained. Each field is a ``polyfuse fit`` / ``compare`` option and an API keyword."""

    max_epochs: int = option(30, "upper bound on epochs; early stopping usually ends sooner")
    batch_size: int = option(64, "training rows per step", search=("choice", [32, 64]))
    eval_batch_size: int | None = option(
        None, "validation rows per batch (default: min(512, 4 x batch size))"
    )
    lr: float = option(2e-3, "learning rate", search=("log", (3e-4, 5e-3)))
    weight_decay: float = option(
        1e-4, "decoupled weight decay (AdamW) or L2 penalty (others)", search=("log", (1e-5, 1e-2))
    )
    optimizer: str = option(
        "adamw",
        "an OPTIMIZERS name: adamw, adam, sgd (plain), sgd_momentum (Nesterov) or rmsprop",
        search=("choice", ["adamw", "adam", "sgd_momentum", "rmsprop"]),
    )
    scheduler: str = option(
        "cosine",
        "a SCHEDULERS name: cosine (over max epochs), none, linear_warmup_cosine, one_cycle, step (/10 "
        "after each third), exponential (to lr/100) or plateau (halve when val_loss stalls)",
        search=("choice", ["cosine", "linear_warmup_cosine", "one_cycle", "plateau"]),
    )
    l1: float = option(
        0.0,
        "weight of an L1 penalty: the sum of absolute values of the trainable weight matrices and kernels "
        "(not biases or norms), added to the loss",
        search=("choice", [0.0, 1e-6, 1e-5]),
    )
    label_smoothing: float = option(
        0.0,
        "classification labels: this share of the target spread over the classes (binary and "
        "multilabel: moved toward 0.5)",
        search=("float", (0.0, 0.2)),
    )
    swa_start: int | None = option(
        None,
        "stochastic weight averaging: from this epoch (from 0) on, validate, keep and save the equal-weight "
        "average of the weights at the end of each epoch (default: off)",
    )
    accumulate_grad_batches: int = option(
        1, "add up the gradients of this many batches before each optimiser step (a larger effective batch)"
    )
    patience: int = option(6, "epochs without validation improvement before stopping")
    seed: int = option(0, "seeds the split, the initial weights and the batch order")
    precision: str = option("32-true", "Lightning precision, e.g. bf16-mixed or 16-mixed for mixed precision")
    accelerator: str = option("auto", "cpu, gpu or auto")
    modality_dropout: float = option(
        0.0, "chance of masking each present modality of a training row", search=("float", (0.0, 0.4))
    )
    align_sequences: float = option(
        0.0,
        "weight of a soft-DTW alignment loss between the token sequences of each pair of time-series or "
        "audio inputs of a row (0: off)",
    )
    augment: str = option(
        "off",
        "training-time augmentation: off, default (each modality's own list, e.g. image crops, rotations, "
        "colour jitter and noise; audio SpecAugment, shifts and gain) or MODALITY=NAME+NAME,... "
        "(AUGMENTATIONS names, e.g. image=randaugment,audio=specaugment; 'default,image=flip' changes one)",
    )
    mixup: float = option(
        0.0,
        "manifold mixup on the fused representation (Verma et al., 2019): alpha of the Beta(alpha, alpha) "
        "mixing weight; each training row's fused vector and loss mix with another row's (0: off)",
    )
    modality_dropout_rates: dict[str, float] = option(
        dict, "a modality's own dropout rate, replacing modality_dropout for it, e.g. image=0.5,audio=0.1"
    )
    modality_dropout_schedule: str = option(
        "constant",
        "a DROPOUT_SCHEDULES name: the dropout rates per epoch (constant; linear_warmup: from 0 up to "
        "them; cosine_decay: from them down to 0)",
    )
    modality_dropout_epochs: int | None = option(
        None, "epochs a modality dropout schedule takes to reach its end (default: max epochs)"
    )
    ema: float = option(
        0.0,
        "validate, keep and save an exponential moving average of the weights with this decay per step, "
        "e.g. 0.98 (0: off, the weights as trained)",
    )
    grad_clip_norm: float | None = option(
        None, "scale gradients to at most this global L2 norm (default: off)"
    )
    balance: str = option(
        "none",
        "a BALANCERS name: how training keeps every modality learning (none; aux: unimodal heads; "
        "ogm_ge: on-the-fly gradient modulation; gblend: gradient blending on held-out training rows; "
        "pmr: prototypical modal rebalance, class prototypes per modality; umt: uni-modal teacher, each "
        "encoder starts from and is distilled toward its single-modality model)",
        search=("registry", "BALANCERS"),
    )
    loss_weighting: str = option(
        "sum",
        "a LOSS_WEIGHTINGS name: how several labels' losses combine (sum; uncertainty: learned "
        "uncertainty weights; dwa: dynamic weight average; gradnorm: gradient normalisation; pcgrad: "
        "projecting conflicting gradients); no effect with one label",
    )
    fit_modality_weights: bool = option(
        False, "late fusion: fit its modality weights on the validation split after training"
    )
    val_fraction: float = option(0.15, "validation share of the rows when the table has no split column")
    test_fraction: float = option(0.15, "test share of the rows when the table has no split column")
    baselines: bool = option(True, "also train one single-modality model per modality")
    ensemble: str = option(
        "auto",
        "auto: the final model is the validation-chosen weighted ensemble of the fused and single-modality "
        "models (or the best one of them); off: the fused model",
    )
    feature_gates: str = option(
        "none",
        "dynamic feature selection by per-sample hard-concrete gates: none, tabular (one gate per "
        "tabular column), embeddings (one per dimension of every modality's embedding, before the "
        "fusion) or both",
    )
    feature_gate_l0: float = option(
        0.001, "weight of the gates' expected L0 norm (open gates per row) in the training loss"
    )
    select_features: int | None = option(
        None,
        "keep only the K tabular columns that tell the most about the labels (select_features_by), "
        "ranked on the training rows (default: every column)",
    )
    select_features_by: str = option(
        "mutual_info",
        "how select_features ranks the tabular columns: mutual_info (each column's mutual information "
        "with the labels) or permutation (permutation importance for a quick tree model; seconds)",
    )
    time_limit_s: float | None = option(None, "wall-clock cap per model in seconds (default: none)")
    progress: bool = option(True, "show Lightning's progress bar")
    callbacks: list[str] = option(
        list, "a CALLBACKS name to add to the trainer, e.g. lr_monitor (repeatable)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # written before augment named its augmentations
            self.augment = "default" if self.augment else "off"


@dataclass
class CompareOptions:
    """How ``compare`` searches, besides what it trains. Each field is a ``polyfuse compare`` option and
    a ``polyfuse.compare`` keyword."""

    max_modalities: int | None = option(None, "largest modality subset (default: every subset)")
    budget_s: float | None = option(
        None,
        "wall-clock budget in seconds: no run starts after it, a running one is cut",
        flags=("--budget-s", "--budget"),
    )
    search: str = option(
        "grid", "grid (every run) or optuna (TPE over subsets, fusions and training options, with pruning)"
    )
    trials: int = option(20, "optuna trials")
    explain: bool = option(
        True, "explain the best model into OUT/explain (needs the explain extra), for polyfuse report"
    )


@dataclass
class PretrainOptions:
    """What ``pretrain`` aligns, besides how it trains. Each field is a ``polyfuse pretrain`` option
    and a ``polyfuse.pretrain`` keyword."""

    pairs: str | None = option(
        None, "pairs of modalities to align, e.g. image:caption,audio:caption (default: every pair)"
    )
    anchor: str | None = option(None, "bind every other modality to this one instead (ImageBind)")
    dim: int = option(128, "width of the shared embedding space")
    masked_weight: float = option(
        0.0, "weight of masked-modality reconstruction beside the contrastive loss (0: contrastive only)"
    )
    relevant_by: str | None = option(
        None, "a column: test rows sharing its value count as matches in the retrieval scores"
    )


@dataclass
class GenerateOptions:
    """What ``fit-text`` writes and from what, besides how it trains. Each field is a ``polyfuse
    fit-text`` option and a ``polyfuse.fit_text`` keyword."""

    target: str = option("", "the text column to write (a caption, an answer)")
    inputs: str | None = option(
        None, "columns to condition on, comma-separated (default: every column but the target and split)"
    )
    max_words: int = option(32, "longest text written, in words")
    min_word_count: int = option(1, "training occurrences a word needs to be written (else unknown)")
    d_model: int = option(128, "width of the decoder")
    layers: int = option(2, "decoder layers")
    heads: int = option(4, "attention heads")
    prefix_length: int = option(4, "memory tokens made from each input's pooled embedding (ClipCap's prefix)")
    memory: str = option("tokens", "tokens (encoder tokens + prefix: attend to image parts) or prefix")
    beam: int = option(3, "beam width when writing (1: greedy)")
    references_by: str | None = option(
        None, "a column (not an input): test rows sharing its value lend each other their texts as references"
    )


def parse_columns(columns: str | list[str] | None) -> list[str] | None:
    """``"a,b"`` (or a list) -> ``["a", "b"]``; None stays None."""
    if columns is None or isinstance(columns, list):
        return columns
    return [c for c in (part.strip() for part in columns.split(",")) if c]


def parse_pairs(pairs: str | list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
    """``"a:b,c:d"`` (or a list of pairs) -> ``[("a", "b"), ("c", "d")]``; None stays None."""
    if pairs is None or isinstance(pairs, list):
        return None if pairs is None else [(str(a), str(b)) for a, b in pairs]
    out = []
    for item in filter(None, (p.strip() for p in pairs.split(","))):
        a, colon, b = item.partition(":")
        if not colon or not a or not b:
            raise ValueError(f"a pair is MODALITY:MODALITY, got {item!r}")
        out.append((a, b))
    return out


def without_modality_dropout(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` for a single-modality model: no modality dropout (there is nothing to drop it for)."""
    return dataclasses.replace(cfg, modality_dropout=0.0, modality_dropout_rates={})


COMPARE_DEFAULTS: dict[str, Any] = {"max_epochs": 20, "patience": 5, "modality_dropout": 0.2}
"""``compare``'s defaults where they differ from ``fit``'s (its API and CLI both apply them).

Many runs share one budget, so fewer epochs; modality dropout on multi-modality runs makes a model
usable (and its masking-based Shapley values meaningful) when a modality is missing at inference.
Single-modality runs never use dropout."""


def to_dict(cfg: Any) -> Any:
    """Dataclass (possibly nested) -> JSON-ready dict."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a (nested) config dataclass from ``to_dict`` output."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in hints:
            continue
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


_NESTED: dict[str, Any] = {}


def _convert(hint: Any, value: Any) -> Any:
    # Annotations are strings (postponed evaluation); nested configs are recognised by name.
    hint = str(hint)
    for name, cls in _NESTED.items():
        if hint == name:
            return from_dict(cls, value)
        if hint == f"list[{name}]":
            return [from_dict(cls, v) for v in value]
        if hint == f"dict[str, {name}]":
            return {k: from_dict(cls, v) for k, v in value.items()}
    return value


_NESTED.update(
    {
        c.__name__: c
        for c in (InputSpec, LabelSpec, Schema, EncoderConfig, FusionConfig, HeadConfig)
        + (ModelConfig, MemberConfig, TrainConfig)
    }
)


def save_json(obj: Any, path: str | Path) -> None:
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def plain(value: Any) -> Any:
    """A numpy / torch scalar as the Python number it holds; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return plain(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
