"""How often MultiBench's gradient clipping would act on an AV-MNIST benchmark model.

    python -m benchmarks.avmnist.gradnorm [--model multibench_late_fusion] [--variants avmnist,avmnist-hard]

MultiBench's training loop (``training_structures/Supervised_Learning.train``) clips the global
gradient norm to ``clip_val=8`` before every SGD step; the benchmark's recipe does not
(``TrainConfig.grad_clip_norm`` is None). This trains a fresh model for one epoch (training rows
in a seeded random order, the model's recipe, no clipping) and records each step's global
gradient norm, to tell how many steps clipping at 8 would have changed. Written to
``benchmarks/results/avmnist_gradnorm.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.avmnist.models import MODELS

RESULTS = Path(__file__).resolve().parents[1] / "results"
MULTIBENCH_CLIP = 8.0


def epoch_grad_norms(model_name: str, train: Any, seed: int = 0) -> np.ndarray:
    """The global gradient norm of each training step of one epoch of ``model_name`` over ``train``:
    ``run.train_steps`` with a hook reading the gradients as each optimizer step begins."""
    from benchmarks.avmnist.run import shuffled_batches, train_steps, trainable
    from polyfuse.config import TrainConfig

    bench = MODELS[model_name]
    cfg = TrainConfig(**bench.train)
    torch.manual_seed(seed)
    model, opt = trainable(bench, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    norms: list[float] = []

    def record(*_: Any) -> None:
        norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])))

    opt.register_step_pre_hook(record)
    train_steps(model, opt, shuffled_batches(train, cfg.batch_size, seed))  # one batch in memory at a time
    return np.array(norms)


def summary_line(variant: str, norms: np.ndarray, clip: float = MULTIBENCH_CLIP) -> str:
    """One markdown table row: steps, norm quantiles and the steps a clip at ``clip`` would scale."""
    over = np.flatnonzero(norms > clip)
    steps = ", ".join(str(int(i)) for i in over[:10]) or "–"
    cells = [variant, str(len(norms)), *(f"{np.percentile(norms, q):.2f}" for q in (50, 99))]
    cells += [f"{norms.max():.2f}", str(len(over)), steps]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    from benchmarks.common import machine_line
    from polyfuse.data.datasets.avmnist import load_splits

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="multibench_late_fusion", choices=sorted(MODELS))
    parser.add_argument("--variants", default="avmnist,avmnist-hard")
    args = parser.parse_args()
    lines = []
    for variant in args.variants.split(","):
        train = load_splits(variant, splits=("train",), modalities=MODELS[args.model].modalities)["train"]
        lines.append(summary_line(variant, epoch_grad_norms(args.model, train)))
        print(lines[-1], flush=True)
    text = [
        f"# Gradient norms of {args.model}, first epoch",
        "",
        f"Machine: {machine_line()}.",
        f"Command: `python -m benchmarks.avmnist.gradnorm --model {args.model} --variants {args.variants}`.",
        "",
        "Global L2 norm of each step's gradient over one epoch of the model's recipe, without",
        f"clipping; MultiBench clips it to {MULTIBENCH_CLIP:g} before every step.",
        "",
        f"| variant | steps | median | 99th percentile | max | steps over {MULTIBENCH_CLIP:g} "
        "| those steps (from 0) |",
        "|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]
    (RESULTS / "avmnist_gradnorm.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
