"""The public verbs: ``fit``, ``load``, ``compare``, ``explain``, ``report`` and the ``list_*`` helpers.

Each is a thin front over the layer that does the work (``fitting``, ``predictor``, ``sweep``,
``htmlreport``); nothing below this module imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfuse.config import COMPARE_DEFAULTS, FusionConfig
from polyfuse.predictor import Predictor, load
from polyfuse.reporting import Reporter


def fit(
    data: Any = None,
    label: str | list[str] | None = None,
    *,
    out: str | Path | None = None,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    fusion: str = "concat",
    fusion_params: dict[str, Any] | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    head_params: dict[str, Any] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    verbose: bool = True,
    init_from: str | Path | None = None,
    **train_options: Any,
) -> Predictor:
    """Train a multimodal model on a table and evaluate it on its test split.

    Args:
        data: CSV / Parquet / JSONL path or DataFrame; ``None`` uses the built-in ``digits-av``.
        label: Label column(s); one head is trained per label.
        out: Save the model directory here (with ``logs/metrics.csv``).
        roles: Column -> role ("text", "image", "audio", "numeric", "categorical", "ignore"),
            overriding inference.
        split_column: Column with train / val / test values; default: a seeded stratified split.
        fusion: Registered fusion name (``list_fusions()``).
        fusion_params: Keyword options of the fusion (``output_dim``, ``hidden_dim``, ...).
        encoders: Modality -> registered encoder name; default: its modality's ``default_encoder``.
        encoder_params: Modality -> encoder keyword options (``output_dim``, ``pretrained``, ``dropout``).
        head_params: Keyword options of every label's head (``hidden_dim``, ``dropout``, ...).
        freeze: Modality -> keep pretrained encoder weights fixed.
        processor_options: Modality -> processor options (``image_size``, ``duration``, ...).
        on_error: "raise" stops at the first bad cell; "skip" drops bad rows and reports them.
        verbose: Print the schema, progress and results.
        init_from: A pre-trained model directory (``polyfuse.pretrain(out=...)``) or a text generator
            (``polyfuse.fit_text(out=...)``): the modalities it shares with the table start from its
            encoders' weights and keep its processors (their encoders are its encoders); the others
            train from scratch.
        **train_options: Fields of ``TrainConfig`` (``max_epochs``, ``batch_size``, ``lr``, ``seed``,
            ``precision``, ``modality_dropout``, ``baselines``, ...); ``optimizer``, ``scheduler`` and
            ``callbacks`` name entries of the ``OPTIMIZERS``, ``SCHEDULERS`` and ``CALLBACKS`` registries.
    """
    from polyfuse.fitting import fit_inputs, run_fit

    frame, base_dir, request, source = fit_inputs(
        data,
        label,
        roles=roles,
        split_column=split_column,
        fusion=FusionConfig(fusion, dict(fusion_params or {})),
        encoders=encoders,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options=train_options,
        init_from=init_from,
        head_params=head_params,
    )
    log_dir = Path(out) / "logs" if out is not None else None  # per-epoch CSV only beside a saved model
    predictor = run_fit(frame, base_dir, request, Reporter(verbose), log_dir=log_dir)
    predictor.metrics["data"] = source
    if out is not None:
        predictor.save(out)
        Reporter(verbose).saved(Path(out))
    return predictor


def compare(
    data: Any = None,
    label: str | list[str] | None = None,
    *,
    out: str | Path = "runs/compare",
    fusions: list[str] | None = None,
    subsets: list[list[str]] | None = None,
    max_modalities: int | None = None,
    encoder_choices: dict[str, list[str]] | None = None,
    balances: list[str] | None = None,
    seeds: int | list[int] = 1,
    budget_s: float | None = None,
    search: str = "grid",
    trials: int = 20,
    explain: bool = True,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    verbose: bool = True,
    **train_options: Any,
) -> Any:
    """Train every modality subset x fusion (x balancing strategy x encoder choice) x seed and write a
    leaderboard.

    Args:
        data: Table path or DataFrame; ``None`` uses the built-in ``digits-av`` (as ``fit`` does).
        label: Label column(s).
        out: The comparison directory: ``leaderboard.csv``, ``summary.csv``, ``compare.json``,
            ``runs/<run_id>/history.csv`` and ``best/`` (a normal model directory). Running again with
            the same ``out`` resumes: runs already on the board are not trained again.
        fusions: Fusions tried on subsets of two or more modalities (default ``DEFAULT_FUSIONS``).
        subsets: Modality subsets to train; default: every non-empty subset.
        max_modalities: Largest subset size when ``subsets`` is not given.
        encoder_choices: Modality -> encoder names to try, e.g. ``{"text": ["hf_text", "text_bag"]}``.
        balances: Balancing strategies (``BALANCERS``: none, aux, ogm_ge, gblend, pmr, umt) tried on
            subsets of two or more modalities; single modalities train with "none". Default:
            ``[balance]``, the training option (itself "none" by default).
        seeds: Number of seeds (0, 1, ...) or the seeds themselves.
        budget_s: Wall-clock budget in seconds; runs left when it is spent are not started.
        search: ``"grid"`` (every run) or ``"optuna"`` (TPE over fusions, subsets and hyper-parameters,
            with pruning of weak trials).
        trials: Number of optuna trials.
        explain: Explain the best model into ``out/explain`` (modality Shapley values, including over
            the retrained subsets, attributions, robustness), ready for ``polyfuse report``.
        **train_options: ``TrainConfig`` fields. ``config.COMPARE_DEFAULTS`` replaces a few of
            ``fit``'s defaults (fewer epochs; modality dropout, which single-modality runs never use).

    Returns:
        A ``CompareResult`` (rows, summary frame, metric, whether every run finished).
    """
    from polyfuse.fitting import fit_inputs
    from polyfuse.sweep.engine import CompareRequest, check_balances
    from polyfuse.sweep.grid import DEFAULT_FUSIONS
    from polyfuse.sweep.runner import run_compare

    check_balances(balances or [])
    train_options = {**COMPARE_DEFAULTS, **train_options}
    frame, base_dir, fit_request, source = fit_inputs(
        data,
        label,
        roles=roles,
        split_column=split_column,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options=train_options,
    )
    request = CompareRequest(
        fit=fit_request,
        fusions=list(fusions or DEFAULT_FUSIONS),
        encoder_choices={k: list(v) for k, v in (encoder_choices or {}).items()},
        balances=list(balances or [fit_request.train.balance]),
        subsets=[list(s) for s in subsets] if subsets else None,
        max_modalities=max_modalities,
        seeds=list(range(seeds)) if isinstance(seeds, int) else list(seeds),
        budget_s=budget_s,
        search=search,
        trials=trials,
        explain=explain,
    )
    return run_compare(frame, base_dir, request, Path(out), Reporter(verbose), data=source)


def pretrain(
    data: Any,
    *,
    out: str | Path | None = None,
    pairs: str | list[tuple[str, str]] | None = None,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    **options: Any,
) -> Any:
    """Align a table's modalities in one embedding space without labels, and score retrieval on its
    test split.

    Args:
        data: CSV / Parquet / JSONL path or DataFrame. Every column is an input unless ``roles`` says
            ``"ignore"`` (or ``"split"``); a label column would be read as an input.
        out: Save the pre-trained model directory here (``polyfuse.load_pretrained`` reads it).
        pairs: Pairs of modalities to align, ``[("image", "caption")]`` or ``"image:caption,..."``;
            default: every pair.
        roles: Column -> role, as in ``fit``.
        split_column: Column with train / val / test values, as in ``fit``.
        encoders: Modality -> registered encoder name, as in ``fit``.
        encoder_params: Modality -> encoder keyword options, as in ``fit``.
        freeze: Modality -> keep its pretrained encoder fixed (LiT: only its projection head trains).
        processor_options: Modality -> processor options, as in ``fit``.
        on_error: "raise" or "skip", as in ``fit``.
        **options: Fields of ``PretrainOptions`` (``anchor``: bind every modality to this one;
            ``dim``; ``masked_weight``: masked-modality reconstruction; ``relevant_by``: a column whose
            equal values count as matches in the retrieval scores) and of ``TrainConfig``
            (``max_epochs``, ``batch_size``, ``lr``, ``seed`` ...).

    Returns:
        A ``Pretrained``: ``model`` (an ``AlignedModel``), ``pairs``, ``summary`` (epochs, the kept
        epoch's validation Recall@1) and ``test`` (``"<query>-><gallery>"`` -> Recall@1/5/10, MRR, mAP).
    """
    import dataclasses

    from polyfuse.config import PretrainOptions
    from polyfuse.errors import PolyfuseError
    from polyfuse.fitting import fit_inputs
    from polyfuse.pretraining import PretrainRequest, run_pretrain

    if data is None:
        raise PolyfuseError("pretrain needs a table (data=...)")
    own = {f.name for f in dataclasses.fields(PretrainOptions)}
    chosen = {k: options.pop(k) for k in list(options) if k in own}
    if pairs is not None:
        chosen["pairs"] = pairs if isinstance(pairs, str) else ",".join(f"{a}:{b}" for a, b in pairs)
    frame, base_dir, request, _ = fit_inputs(
        data,
        [],
        roles=roles,
        split_column=split_column,
        encoders=encoders,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options={"progress": False, **options},
    )
    done = run_pretrain(frame, base_dir, PretrainRequest(request, PretrainOptions(**chosen)))
    if out is not None:
        done.save(out)
    return done


def index(
    model: str | Path,
    data: Any,
    modality: str,
    *,
    out: str | Path | None = None,
    kind: str = "flat",
    id_column: str | None = None,
    on_error: str = "raise",
    **params: int,
) -> Any:
    """A search index of one modality's embeddings of a table's rows, from a pre-trained model.

    Args:
        model: A pre-trained model directory (``polyfuse.pretrain(out=...)``).
        data: The table (path or DataFrame); only ``modality``'s columns are read, rows without it
            are left out.
        modality: The modality to index (one the model aligns, e.g. ``"image"``).
        out: Save the index to this folder (``index.faiss`` + ``index.json``).
        kind: ``"flat"`` (exact), ``"hnsw"`` or ``"ivf"`` (approximate, for large tables).
        id_column: A column naming the rows in results; default: the table's index.
        on_error: "raise" or "skip" bad rows, as in ``fit``.
        **params: The kind's options: hnsw ``m``, ``ef_search``; ivf ``nlist``, ``nprobe``.

    Returns:
        A ``SearchIndex`` (``search``, ``add``, ``remove``, ``save``).
    """
    from polyfuse.data.table import read_table
    from polyfuse.pretrained import load_pretrained
    from polyfuse.retrieval import SearchIndex, row_ids

    source = load_pretrained(model)
    frame, base_dir = read_table(data)
    embeddings, rows = source.embed((frame, base_dir), modality, on_error=on_error)
    made = SearchIndex.build(embeddings, row_ids(rows, id_column), modality, kind, **params)
    made.model = str(Path(model).resolve())
    if out is not None:
        made.save(out)
    return made


QUERY_KINDS = ("text", "image", "audio")


def search(
    index: Any,
    *,
    text: str | None = None,
    image: str | Path | None = None,
    audio: str | Path | None = None,
    modality: str | None = None,
    k: int = 10,
) -> list[tuple[str, float]]:
    """The ``k`` indexed rows nearest to one query: a text, or a picture or recording file.

    Args:
        index: A ``SearchIndex`` or its folder.
        text: A text query (read by the model's text modality).
        image: An image file to query with.
        audio: An audio file to query with.
        modality: The model's modality that reads the query, when it has several of that kind.
        k: How many rows.

    Returns:
        ``(row id, cosine similarity)`` pairs, most similar first.
    """
    from polyfuse.errors import PolyfuseError
    from polyfuse.pretrained import load_pretrained
    from polyfuse.retrieval import SearchIndex

    found = index if isinstance(index, SearchIndex) else SearchIndex.load(index)
    given = {
        kind: value
        for kind, value in zip(QUERY_KINDS, (text, image, audio), strict=True)
        if value is not None
    }
    if len(given) != 1:
        raise PolyfuseError("give one query: text=..., image=... or audio=...")
    ((kind, value),) = given.items()
    if found.model is None:
        raise PolyfuseError("the index does not name the pre-trained model that made it")
    embeddings = load_pretrained(found.model).embed_query(kind, value, modality)
    return found.search(embeddings, k)[0]


def zero_shot(
    model: str | Path,
    data: Any,
    modality: str,
    classes: list[Any] | None = None,
    *,
    template: str | list[str] = "{}",
    label: str | None = None,
    text_modality: str | None = None,
    on_error: str = "raise",
) -> Any:
    """Classify one modality of a table's rows by the names of the classes, with a pre-trained model
    and no labelled rows: each class becomes the text ``template.format(name)`` and each row takes the
    class whose text is nearest to it in the shared space.

    Args:
        model: A pre-trained model directory that aligns ``modality`` with a text modality.
        data: The table (path or DataFrame).
        modality: The modality to classify (e.g. ``"image"``).
        classes: The class names; default: the distinct values of ``label``.
        template: The text each class becomes, with ``{}`` for its name, e.g. ``"a picture of a {}"``;
            several templates make a prompt ensemble (each class: the mean of its texts' points).
        label: A column holding the true class: ``accuracy`` is then measured on it.
        text_modality: The model's text modality that reads the class texts, when it has several.
        on_error: "raise" or "skip" bad rows.

    Returns:
        A ``ZeroShot``: ``predictions`` (a frame: ``prediction`` and each class's probability, indexed
        like the table) and ``accuracy`` (None without ``label``).
    """
    from polyfuse.data.table import read_table
    from polyfuse.errors import PolyfuseError
    from polyfuse.pretrained import ZeroShot, load_pretrained

    frame, base_dir = read_table(data)
    if classes is None:
        if label is None:
            raise PolyfuseError("name the classes (classes=...) or a label column to take them from")
        classes = sorted(frame[label].dropna().unique().tolist())
    source = load_pretrained(model)
    predictions = source.zero_shot(
        (frame, base_dir), modality, list(classes), template, text_modality, on_error
    )
    accuracy = None
    if label is not None:
        truth = frame.loc[predictions.index, label].astype(str)
        accuracy = float((predictions["prediction"].astype(str) == truth).mean())
    return ZeroShot(predictions, accuracy)


def fit_text(
    data: Any,
    target: str,
    *,
    inputs: str | list[str] | None = None,
    out: str | Path | None = None,
    roles: dict[str, str] | None = None,
    split_column: str | None = None,
    encoders: dict[str, str] | None = None,
    encoder_params: dict[str, dict[str, Any]] | None = None,
    freeze: dict[str, bool] | None = None,
    processor_options: dict[str, dict[str, Any]] | None = None,
    on_error: str = "raise",
    init_from: str | Path | None = None,
    **options: Any,
) -> Any:
    """Train a model that writes a text column from other columns: captions from images or audio,
    answers from an image and a question; then write and score the test split.

    Args:
        data: CSV / Parquet / JSONL path or DataFrame.
        target: The text column to write.
        inputs: Columns to condition on (a list or ``"image,question"``); default every column but
            the target and the split column.
        out: Save the model directory here (``polyfuse.caption`` / ``polyfuse.ask`` read it).
        roles, split_column, encoders, encoder_params, freeze, processor_options, on_error,
            init_from: As in ``fit`` (``init_from``: start the inputs' encoders from ``pretrain``'s
            or another generator's, e.g. a captioner's for question answering).
        **options: Fields of ``GenerateOptions`` (``max_words``, ``d_model``, ``layers``, ``memory``,
            ``beam``, ``references_by`` ...) and of ``TrainConfig`` (``max_epochs``, ``lr`` ...).

    Returns:
        A ``Generator``: ``summary`` (epochs, rows, vocabulary), ``test`` (BLEU-1..4, CIDEr, ROUGE-L,
        exact match on the test split), ``examples`` (test rows: written next to the truth), and
        ``write(data)`` / ``caption(file)`` / ``ask(image, question)`` for new rows.
    """
    import dataclasses

    from polyfuse.config import GenerateOptions
    from polyfuse.fitting import fit_inputs
    from polyfuse.generation import GenerateRequest, run_generator

    own = {f.name for f in dataclasses.fields(GenerateOptions)}
    chosen = {k: options.pop(k) for k in list(options) if k in own}
    if isinstance(inputs, list):
        inputs = ",".join(inputs)
    frame, base_dir, request, _ = fit_inputs(
        data,
        [],
        roles=roles,
        split_column=split_column,
        encoders=encoders,
        encoder_params=encoder_params,
        freeze=freeze,
        processor_options=processor_options,
        on_error=on_error,
        train_options={"progress": False, **options},
        init_from=init_from,
    )
    done = run_generator(
        frame, base_dir, GenerateRequest(request, GenerateOptions(target=target, inputs=inputs, **chosen))
    )
    if out is not None:
        done.save(out)
    return done


def caption(model: str | Path, value: Any, *, column: str | None = None, beam: int | None = None) -> str:
    """The text a generator (``fit_text``) writes for one input: an image or audio file, or a value of
    ``column`` (the generator's one input column unless named); ``beam`` overrides its beam width."""
    from polyfuse.generator import load_generator

    return str(load_generator(model).caption(value, column, beam))


def ask(model: Predictor | str | Path, image: Any, question: str, *, beam: int | None = None) -> str:
    """The answer to ``question`` about ``image`` (a file), from a model of one question column and one
    other input: a generator (``fit_text(target="answer")``: the answer is written word by word) or a
    classifier (``fit(label="answer")``: the answer is the most probable class)."""
    import pandas as pd

    from polyfuse.generator import is_generator, load_generator, question_row

    if not isinstance(model, Predictor) and is_generator(model):
        return str(load_generator(model).ask(image, question, beam))
    predictor = model if isinstance(model, Predictor) else load(model)
    answer = predictor.predict(question_row(predictor.preprocessor, image, question))
    return str(answer.iloc[0] if isinstance(answer, pd.Series) else answer.iloc[0, 0])


def explain(
    model: Predictor | str | Path,
    data: Any = None,
    out: str | Path | None = None,
    compare_dir: str | Path | None = None,
    *,
    seed: int = 0,
    samples: int = 8,
    steps: int = 24,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Who contributes what, and where fusion fails: modality Shapley values (by masking),
    feature attributions, errors by presence pattern, fixes / breaks, robustness, embedding
    similarity, fusion weights. Needs ``pip install polyfuse[explain]``.

    Args:
        model: A Predictor or a saved model directory.
        data: Labelled rows to explain (path, DataFrame or ``(frame, folder)``); default the
            model's own test split (``data_split``).
        out: Write the explain directory here (shapley.json, shapley_per_sample.csv,
            explain.json, PNG figures).
        compare_dir: A ``polyfuse compare`` directory: also Shapley values over its retrained subsets.
        seed: Seeds the sampled rows, drops, noise and permutations.
        samples: Rows per modality explained by integrated gradients.
        steps: Integration steps of integrated gradients.
        on_error: "raise" or "skip" bad rows of ``data``.

    Returns:
        explain.json's content, with shapley.json's under "shapley".
    """
    predictor = model if isinstance(model, Predictor) else load(model)
    return predictor.explain(
        data, out, compare_dir, seed=seed, samples=samples, steps=steps, on_error=on_error
    )


def report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML report of a compare, model or explain directory.

    Args:
        run_dir: A ``polyfuse compare`` output, a saved model directory (with an optional
            ``explain/`` folder) or a ``polyfuse explain`` output.
        out: The HTML file to write; default ``run_dir/report.html``.

    Returns:
        The path of the written file. Needs matplotlib (``pip install polyfuse[explain]``).
    """
    from polyfuse.htmlreport import build_report

    return build_report(run_dir, out)


def list_encoders() -> list[dict[str, str]]:
    """Registered encoders with the modality each accepts."""
    import polyfuse.encoders  # noqa: F401
    from polyfuse.registry import ENCODERS

    return [
        {"name": n, "modality": ENCODERS.get(n).modality, "doc": _first_line(ENCODERS.get(n))}
        for n in ENCODERS
    ]


def list_fusions() -> list[dict[str, str]]:
    import polyfuse.fusions  # noqa: F401
    from polyfuse.registry import FUSIONS

    return [{"name": n, "doc": _first_line(FUSIONS.get(n))} for n in FUSIONS]


def list_heads() -> list[dict[str, str]]:
    import polyfuse.heads  # noqa: F401
    from polyfuse.registry import HEADS

    return [{"name": n, "doc": _first_line(HEADS.get(n))} for n in HEADS]


def _first_line(obj: Any) -> str:
    return (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""


__all__ = [
    "Predictor",
    "compare",
    "explain",
    "fit",
    "load",
    "report",
    "list_encoders",
    "list_fusions",
    "list_heads",
]
