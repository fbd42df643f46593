"""Where a training step of an AV-MNIST benchmark model spends its time (torch.profiler, CPU).

    python -m benchmarks.avmnist.profile --model multibench_late_fusion --steps 40

Times forward + backward + optimizer steps over batches gathered in memory first (the bare compute
of ``run.bare_epoch``), then profiles the same steps and writes the operators by self CPU time to
``benchmarks/results/avmnist_profile.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.avmnist.models import MODELS

RESULTS = Path(__file__).resolve().parents[1] / "results"


def steps(bench: Any, cfg: Any, batches: list[Any]) -> None:
    """Forward, backward and optimizer step over each batch (training mode)."""
    from polyfuse.train.module import make_optimizer

    model = bench.build().train()
    opt = make_optimizer(cfg.optimizer, list(model.parameters()), cfg.lr, cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    for batch in batches:
        opt.zero_grad()
        with torch.profiler.record_function("forward"):
            logits = model(batch)["digit"]
        with torch.profiler.record_function("backward"):
            loss_fn(logits, batch.targets["digit"]).backward()
        with torch.profiler.record_function("optimizer"):
            opt.step()


def profile(model_name: str, table: Any, n_steps: int) -> tuple[float, str]:
    """Milliseconds per step without the profiler, and the profiler's operator table, over
    ``n_steps`` batches cycled from ``table``."""
    from polyfuse.config import TrainConfig

    bench = MODELS[model_name]
    cfg = TrainConfig(**bench.train)
    size = cfg.batch_size
    batches = [table.take(list(range(i, i + size))) for i in range(0, len(table) - size + 1, size)]
    batches = (batches * (n_steps // len(batches) + 1))[:n_steps]
    steps(bench, cfg, batches[:5])  # warm-up: oneDNN primitives, allocator
    start = time.perf_counter()
    steps(bench, cfg, batches)
    per_step = (time.perf_counter() - start) / n_steps * 1000
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        steps(bench, cfg, batches)
    return per_step, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)


def main() -> None:
    from benchmarks.common import machine_line
    from polyfuse.config import TrainConfig
    from polyfuse.data.datasets.avmnist import load_splits

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="multibench_late_fusion", choices=sorted(MODELS))
    parser.add_argument("--variant", default="avmnist")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2000, help="validation rows the batches come from")
    args = parser.parse_args()
    val = load_splits(args.variant, splits=("val",), modalities=MODELS[args.model].modalities)["val"]
    per_step, ops = profile(args.model, val.subset(list(range(min(args.rows, len(val))))), args.steps)
    cfg = TrainConfig(**MODELS[args.model].train)
    text = "\n".join(
        [
            f"# AV-MNIST training step profile: {args.model} on {args.variant}",
            "",
            f"Machine: {machine_line()}.",
            f"Command: `python -m benchmarks.avmnist.profile --model {args.model} --variant {args.variant} "
            f"--steps {args.steps}`.",
            "",
            f"{args.steps} steps of batch {cfg.batch_size} (forward + backward + {cfg.optimizer} step, "
            f"batches in memory, no profiler): **{per_step:.1f} ms per step**, i.e. "
            f"{per_step * 55_000 / cfg.batch_size / 1000:.0f} s for the 55,000 training rows of an epoch.",
            "",
            "Operators by self CPU time under torch.profiler (the profiler adds its own overhead;",
            "`forward` / `backward` / `optimizer` are the step's phases, totals include children):",
            "",
            "```",
            ops,
            "```",
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "avmnist_profile.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
