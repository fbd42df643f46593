"""``search="optuna"``: TPE over modality subsets, fusions, balancing strategies and hyper-parameters,
with pruning.

Every trial is a run on the same board as the grid's (``trial-0007``, its choices in ``params_json``).
The study lives in ``optuna.log`` (a journal file, no database server), so a killed search resumes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from polyfuse.config import TrainConfig
from polyfuse.eval.metrics import LOWER_IS_BETTER
from polyfuse.extras import require
from polyfuse.sweep.grid import NO_BALANCE, SINGLE_FUSION, RunSpec, modality_subsets
from polyfuse.sweep.session import Session


def _choices(kind: str, arg: Any) -> tuple[str, Any]:
    """A ``search=`` declaration as searched: a registry's name becomes a choice over its entries."""
    if kind != "registry":
        return kind, arg
    import polyfuse.registry
    import polyfuse.train  # noqa: F401  (registers the training strategies)

    return "choice", getattr(polyfuse.registry, arg).names()


# The training options searched, and their ranges, are declared on ``TrainConfig`` (``option(search=)``).
TRAIN_SPACE: dict[str, tuple[str, Any]] = {
    f.name: _choices(*f.metadata["search"]) for f in dataclasses.fields(TrainConfig) if "search" in f.metadata
}
# Options only runs of two or more modalities search, and their value on a single modality.
MULTIMODAL_ONLY: dict[str, Any] = {"balance": NO_BALANCE}
TRAIN_KEYS = tuple(k for k in TRAIN_SPACE if k not in MULTIMODAL_ONLY)  # a run's train_params
# The search space besides subsets and fusions: name -> (kind, choices or bounds).
SPACE: dict[str, tuple[str, Any]] = {
    "width": ("choice", [64, 128, 256]),  # the fusion's hidden_dim (or output_dim if it has none)
    "dropout": ("float", (0.0, 0.3)),  # the fusion's dropout
    **TRAIN_SPACE,
}


def run_search(session: Session) -> bool:
    """Run the remaining trials of the study; True when all ``trials`` are done."""
    optuna = _optuna()
    req, ws = session.req, session.ws
    study = optuna.create_study(
        study_name="polyfuse-compare",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(session.out / "optuna.log"))
        ),
        load_if_exists=True,
        direction="minimize" if ws.val_metric in LOWER_IS_BETTER else "maximize",
        sampler=optuna.samplers.TPESampler(seed=req.seeds[0]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    done = len(study.get_trials(deepcopy=False, states=states))
    subsets = (
        [tuple(m for m in ws.schema.modalities if m in s) for s in req.subsets]
        if req.subsets
        else modality_subsets(ws.schema.modalities, max_size=req.max_modalities)
    )
    session.rep.line(f"optuna search: {done} of {req.trials} trials done")
    left = session.time_left()
    study.optimize(
        lambda trial: _objective(trial, session, subsets),
        n_trials=max(0, req.trials - done),
        timeout=max(1.0, left) if left is not None else None,
        catch=(),
    )
    return len(study.get_trials(deepcopy=False, states=states)) >= req.trials


def _objective(trial: Any, session: Session, subsets: list[tuple[str, ...]]) -> float:
    optuna = _optuna()
    spec = suggest(trial, session, subsets)
    monitor = "val_" + session.ws.val_metric

    def report(epoch: int, score: float) -> bool:
        trial.report(score, epoch)
        return bool(trial.should_prune())

    from polyfuse.train.callbacks import EpochReporter

    row = session.run(spec, callbacks=[EpochReporter(monitor, report)])
    if row is None:  # on the board already (a resumed study): reuse its score
        row = next(r for r in session.rows if r["run_id"] == spec.run_id)
    if row.get("status") == "pruned":
        raise optuna.TrialPruned()
    score = row.get("val_score")
    return float(score) if score is not None else math.nan


def suggest(trial: Any, session: Session, subsets: list[tuple[str, ...]]) -> RunSpec:
    """One trial's run: a subset, a fusion and a balancing strategy (for two or more modalities) and
    hyper-parameters."""
    ws, req = session.ws, session.req
    names = ["+".join(s) for s in subsets]
    subset = subsets[names.index(trial.suggest_categorical("modalities", names))]
    multi = len(subset) > 1
    fusion = trial.suggest_categorical("fusion", req.fusions) if multi else SINGLE_FUSION
    searched = {k: v for k, v in SPACE.items() if multi or k not in MULTIMODAL_ONLY}
    values = {**MULTIMODAL_ONLY, **{k: _suggest(trial, k, kind, arg) for k, (kind, arg) in searched.items()}}
    encoders = tuple((m, trial.suggest_categorical(f"encoder_{m}", ws.choices[m])) for m in subset)
    return RunSpec(
        modalities=subset,
        fusion=fusion,
        encoders=encoders,
        seed=req.seeds[0],
        fusion_params=fusion_params(fusion, values["width"], values["dropout"]),
        train_params=tuple((k, values[k]) for k in TRAIN_KEYS),
        name=f"trial-{trial.number:04d}",
        balance=values["balance"],
    )


def fusion_params(fusion: str, width: int, dropout: float) -> tuple[tuple[str, Any], ...]:
    """The width and dropout as the keyword arguments this fusion takes."""
    import inspect

    import polyfuse.fusions  # noqa: F401  (registers the fusions)
    from polyfuse.registry import FUSIONS

    accepted = inspect.signature(FUSIONS.get(fusion)).parameters
    size = "hidden_dim" if "hidden_dim" in accepted else "output_dim"
    params = {size: width, "dropout": round(dropout, 4)}
    return tuple((k, v) for k, v in params.items() if k in accepted)


def _suggest(trial: Any, name: str, kind: str, arg: Any) -> Any:
    if kind == "choice":
        return trial.suggest_categorical(name, arg)
    if kind == "log":
        return trial.suggest_float(name, *arg, log=True)
    return trial.suggest_float(name, *arg)


def _optuna() -> Any:
    optuna = require("optuna", "tune", "search='optuna'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
