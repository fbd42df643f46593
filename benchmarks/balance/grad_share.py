"""How much of the encoders' gradient the dominated modality gets, with and without balancing.

    python -m benchmarks.balance.grad_share [--seeds 5] [--epochs 6]

On ``tables.dominated`` (the note names the class, the numbers only hint at it), each balancing
strategy trains the concat model for a fixed number of epochs per seed (table and weights both
follow the seed) with the ``modality_grad_share`` callback; a row records the tabular modality's
share averaged over the epochs. Writes ``results/balance_grad_share.{csv,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.balance.tables import dominated
from benchmarks.common import code_version, machine_line

RESULTS = Path(__file__).resolve().parents[1] / "results"


def share(balance: str, seed: int, epochs: int) -> float:
    """The tabular encoder's mean share of the encoders' gradient norm over ``epochs`` epochs."""
    from polyfuse.config import FusionConfig, ModelConfig, TrainConfig
    from polyfuse.fitting import FitRequest, prepare
    from polyfuse.losses import default_loss
    from polyfuse.models.build import build_model
    from polyfuse.registry import LOSSES
    from polyfuse.train.loop import train_model

    request = FitRequest(label=["kind"], encoders={"text": "text_bag"})
    request.train.seed = seed
    prep = prepare(dominated(seed=seed), Path.cwd(), request)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(prep.encoders, FusionConfig(), prep.heads), prep.pre)
    losses = {h.label: LOSSES.build(default_loss(h.task)) for h in prep.heads}
    cfg = TrainConfig(
        max_epochs=epochs,
        patience=epochs,
        seed=seed,
        balance=balance,
        progress=False,
        accelerator="cpu",
        callbacks=["modality_grad_share"],
    )
    history = train_model(model, prep.heads, losses, prep.tables["train"], prep.tables["val"], cfg).history
    return float(np.mean([row["grad_share_tabular"] for row in history]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    import polyfuse.train  # noqa: F401  (registers the strategies)
    from polyfuse.registry import BALANCERS

    commit = code_version()
    rows = [
        {
            "strategy": name,
            "seed": seed,
            "epochs": args.epochs,
            "tabular_share": share(name, seed, args.epochs),
            "commit": commit,
        }
        for name in BALANCERS.names()
        for seed in range(args.seeds)
    ]
    frame = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    frame.to_csv(RESULTS / "balance_grad_share.csv", index=False)
    summary = frame.groupby("strategy")["tabular_share"].agg(["mean", "std", "count"])
    lines = [
        "# Gradient share of the dominated modality",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.balance.grad_share --seeds {args.seeds} "
        f"--epochs {args.epochs}` at {commit} (rows: balance_grad_share.csv).",
        "",
        "Table `benchmarks.balance.tables.dominated` (300 rows: the note names the class every time, the",
        "numbers only hint at it), concat fusion, `text_bag` and `tabular_mlp` encoders, a fixed number of",
        "epochs. Value: the tabular encoder's share of the encoders' gradient norm, averaged over the",
        "epochs (`modality_grad_share`), mean ± std over seeds. With no imbalance at all the two",
        "encoders would not split evenly either: the share is a diagnostic to compare strategies by.",
        "",
        "| strategy | seeds | tabular share |",
        "|---|---|---|",
        *[
            f"| {name} | {int(r['count'])} | {r['mean']:.3f} ± {r['std']:.3f} |"
            for name, r in summary.iterrows()
        ],
    ]
    (RESULTS / "balance_grad_share.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
