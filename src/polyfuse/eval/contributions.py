"""Modality Shapley values of a trained model, by masking modalities at inference.

v(S) is the model's metric (``probe.value_metric``: higher is better) when only the modalities in S
may be present; rows where a modality is absent in the data keep it absent. v(empty) masks every
modality (fusions give finite outputs with all absent). Per sample, the same game is played with
the probability of the true class (the predicted value for regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.eval.probe import Probe, value_metric
from polyfuse.eval.shapley import coalitions, shapley_from_values


@dataclass
class ModalityShapley:
    values: dict[str, float]  # modality -> Shapley value of the metric
    coalition_metric: dict[frozenset[str], float]  # v(S) for all 2^M coalitions
    outputs: dict[frozenset[str], np.ndarray]  # model outputs under each coalition
    per_sample: pd.DataFrame  # row_id, then a column per modality


def modality_shapley(probe: Probe) -> ModalityShapley:
    """Exact Shapley values over all 2^M coalitions (one fusion pass each)."""
    players = probe.modalities
    outputs = {c: probe.outputs(probe.coalition_mask(c)) for c in coalitions(players)}
    metric = {c: probe.metric(o) for c, o in outputs.items()}
    per = shapley_from_values({c: probe.scores(o) for c, o in outputs.items()}, players)
    ids = probe.table.row_ids or list(range(len(probe)))
    frame = pd.DataFrame({"row_id": ids, **{m: per[m] for m in players}})
    return ModalityShapley(shapley_from_values(metric, players), metric, outputs, frame)


def shapley_record(result: ModalityShapley, probe: Probe) -> dict[str, Any]:
    """shapley.json: values, metric, metric_all, metric_none and every coalition's metric."""
    players = probe.modalities
    return {
        "values": {m: float(v) for m, v in result.values.items()},
        "metric": value_metric(probe.task),
        "metric_all": result.coalition_metric[frozenset(players)],
        "metric_none": result.coalition_metric[frozenset()],
        "coalitions": [
            {"modalities": [m for m in players if m in c], "metric": v}
            for c, v in result.coalition_metric.items()
        ],
    }
