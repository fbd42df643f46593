"""The runs of a comparison: modality subsets x fusions x balancing strategies x encoder choices x
seeds, as data."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

# Fusions of the default grid: one early, one gated, one attention-based. With 3 modalities that is
# 3 + 4 x 3 = 15 runs, which fit in 10 minutes on digits-av on 2 CPU cores; name more with ``fusions``.
DEFAULT_FUSIONS = ("concat", "gmu", "attention")
# A single modality needs no fusion; its runs use this one (a projection of the one embedding).
SINGLE_FUSION = "concat"
# Balancing needs two or more modalities; single-modality runs (and the default grid) train plainly.
NO_BALANCE = "none"


@dataclass(frozen=True)
class RunSpec:
    """One model to train in a comparison."""

    modalities: tuple[str, ...]  # the subset, in schema order
    fusion: str
    encoders: tuple[tuple[str, str], ...]  # (modality, encoder name) for the subset's modalities
    seed: int
    fusion_params: tuple[tuple[str, Any], ...] = field(default=())  # e.g. (("hidden_dim", 64),)
    train_params: tuple[tuple[str, Any], ...] = field(default=())  # TrainConfig overrides, e.g. lr
    name: str = ""  # overrides the derived run id (search trials are named "trial-0003")
    balance: str = NO_BALANCE  # the BALANCERS strategy (TrainConfig.balance) the run trains with

    @property
    def run_id(self) -> str:
        """A stable, file-name-safe key: what makes a comparison resumable (a run without balancing
        keeps the key it had before balancing was a grid axis)."""
        if self.name:
            return self.name
        encoders = "+".join(e for _, e in self.encoders)
        params = "-".join(f"{k}={v}" for k, v in self.fusion_params + self.train_params)
        balance = "" if self.balance == NO_BALANCE else f"balance={self.balance}"
        parts = ["+".join(self.modalities), self.fusion, encoders, params, balance, f"s{self.seed}"]
        return "__".join(p for p in parts if p).replace("/", "_")

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "modalities": "+".join(self.modalities),
            "n_modalities": len(self.modalities),
            "fusion": self.fusion,
            "balance": self.balance,
            "encoders": ";".join(f"{m}={e}" for m, e in self.encoders),
            "seed": self.seed,
            "params_json": json.dumps(dict(self.fusion_params + self.train_params)),
        }


def modality_subsets(
    modalities: list[str], min_size: int = 1, max_size: int | None = None
) -> list[tuple[str, ...]]:
    """Every non-empty subset (within the size bounds), singles first, each in schema order."""
    top = len(modalities) if max_size is None else min(max_size, len(modalities))
    return [s for k in range(max(1, min_size), top + 1) for s in itertools.combinations(modalities, k)]


def build_grid(
    subsets: list[tuple[str, ...]],
    fusions: list[str],
    encoder_choices: dict[str, list[str]],
    seeds: list[int],
    balances: list[str] | None = None,
) -> list[RunSpec]:
    """All runs, seed-major (every configuration once before any is repeated), duplicates removed.

    Args:
        subsets: Modality subsets to train on.
        fusions: Fusion names for subsets of two or more modalities (single ones use ``SINGLE_FUSION``).
        encoder_choices: Modality -> encoder names to try; every modality must have at least one.
        seeds: Seeds; each configuration is trained once per seed.
        balances: Balancing strategies (``BALANCERS``) for subsets of two or more modalities (single
            ones use ``NO_BALANCE``); default: none.
    """
    runs: dict[str, RunSpec] = {}
    for seed in seeds:
        for subset in subsets:
            options = [[(m, e) for e in encoder_choices[m]] for m in subset]
            multi = len(subset) > 1
            strategies = (balances or [NO_BALANCE]) if multi else [NO_BALANCE]
            for encoders in itertools.product(*options):
                for fusion, balance in itertools.product(fusions if multi else [SINGLE_FUSION], strategies):
                    spec = RunSpec(subset, fusion, tuple(encoders), seed, balance=balance)
                    runs.setdefault(spec.run_id, spec)
    return list(runs.values())
