"""Where a training step of an AV-MNIST benchmark model spends its time (torch.profiler, CPU).

    python -m benchmarks.avmnist.profile --model multibench_late_fusion --steps 40

Times forward + backward + optimizer steps over batches gathered in memory first (the bare compute
of ``run.bare_epoch``), then profiles the same steps and writes the operators by self CPU time,
also split by input shape, to ``benchmarks/results/avmnist_profile.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.avmnist.models import MODELS

RESULTS = Path(__file__).resolve().parents[1] / "results"


def steps(bench: Any, cfg: Any, batches: list[Any], reuse: bool = True) -> None:
    """``run.train_steps`` on a fresh model; ``reuse``: within ``reuse_freed_memory`` as in training."""
    from benchmarks.avmnist.run import train_steps
    from polyfuse.train.allocator import reuse_freed_memory
    from polyfuse.train.module import make_optimizer

    model = bench.build().train()
    opt = make_optimizer(cfg.optimizer, list(model.parameters()), cfg.lr, cfg.weight_decay)
    with reuse_freed_memory() if reuse else contextlib.nullcontext():
        train_steps(model, opt, batches)


def profile(model_name: str, table: Any, n_steps: int) -> tuple[dict[bool, tuple[float, float]], str, str]:
    """Per-step milliseconds and minor page faults without the profiler, with and without
    ``reuse_freed_memory`` (keys True / False), and the profiler's operator tables (by operator, and
    by operator and input shape), over ``n_steps`` batches cycled from ``table``.

    Without comes first, after a warm-up without: glibc's own (dynamic) thresholds, not the ones a
    ``reuse_freed_memory`` block leaves behind."""
    from polyfuse.config import TrainConfig

    bench = MODELS[model_name]
    cfg = TrainConfig(**bench.train)
    size = cfg.batch_size
    batches = [table.take(list(range(i, i + size))) for i in range(0, len(table) - size + 1, size)]
    batches = (batches * (n_steps // len(batches) + 1))[:n_steps]
    steps(bench, cfg, batches[:5], reuse=False)  # warm-up: oneDNN primitives
    timings = {}
    for reuse in (False, True):
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        steps(bench, cfg, batches, reuse)
        seconds, faults = (
            time.perf_counter() - start,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        )
        timings[reuse] = (seconds / n_steps * 1000, faults / n_steps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        steps(bench, cfg, batches)
    ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    shapes = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=36, max_shapes_column_width=60
    )
    return timings, ops, shapes


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
    timings, ops, shapes = profile(args.model, val.subset(list(range(min(args.rows, len(val))))), args.steps)
    (ms, faults), (ms_default, faults_default) = timings[True], timings[False]
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
            f"batches in memory, no profiler): **{ms:.1f} ms per step**, i.e. "
            f"{ms * 55_000 / cfg.batch_size / 1000:.0f} s for the 55,000 training rows of an epoch, "
            f"{faults:,.0f} minor page faults per step. Without `train.allocator.reuse_freed_memory` "
            f"(glibc's default malloc, which returns freed activations to the kernel): {ms_default:.1f} ms "
            f"and {faults_default:,.0f} minor page faults per step, measured first in the same process.",
            "",
            "Operators by self CPU time under torch.profiler (the profiler adds its own overhead;",
            "`forward` / `backward` / `optimizer` are the step's phases, totals include children):",
            "",
            "```",
            ops,
            "```",
            "",
            "The same profile by operator and input shape (which layer the time goes to):",
            "",
            "```",
            shapes,
            "```",
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "avmnist_profile.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
