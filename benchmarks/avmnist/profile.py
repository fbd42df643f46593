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
    from benchmarks.avmnist.run import train_steps, trainable
    from polyfuse.train.allocator import reuse_freed_memory

    model, opt = trainable(bench, cfg)
    with reuse_freed_memory() if reuse else contextlib.nullcontext():
        train_steps(model, opt, batches)


def cycled_batches(table: Any, size: int, n_steps: int) -> list[Any]:
    """``n_steps`` batches of ``size`` consecutive rows of ``table``, cycled."""
    batches = [table.take(list(range(i, i + size))) for i in range(0, len(table) - size + 1, size)]
    return (batches * (n_steps // len(batches) + 1))[:n_steps]


def profile(model_name: str, batches: list[Any]) -> tuple[dict[bool, tuple[float, float]], str, str]:
    """Per-step milliseconds and minor page faults without the profiler, with and without
    ``reuse_freed_memory`` (keys True / False), and the profiler's operator tables (by operator, and
    by operator and input shape), over ``batches``.

    Without comes first, after a warm-up without: glibc's own (dynamic) thresholds, not the ones a
    ``reuse_freed_memory`` block leaves behind."""
    from polyfuse.config import TrainConfig

    bench = MODELS[model_name]
    cfg = TrainConfig(**bench.train)
    steps(bench, cfg, batches[:5], reuse=False)  # warm-up: oneDNN primitives
    timings = {}
    for reuse in (False, True):
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        steps(bench, cfg, batches, reuse)
        seconds, faults = (
            time.perf_counter() - start,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        )
        timings[reuse] = (seconds / len(batches) * 1000, faults / len(batches))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        steps(bench, cfg, batches)
    ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    shapes = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=36, max_shapes_column_width=60
    )
    return timings, ops, shapes


def interleaved(runs: dict[str, Any], rounds: int = 5) -> dict[str, float]:
    """Median seconds of each ``runs`` callable, called in turns (round robin) after one warm-up
    call each, inside ``reuse_freed_memory`` as in training."""
    from polyfuse.train.allocator import reuse_freed_memory

    times: dict[str, list[float]] = {name: [] for name in runs}
    with reuse_freed_memory():
        for name in runs:
            runs[name]()
        for _ in range(rounds):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def kernel_choices(model_name: str, batches: list[Any]) -> list[str]:
    """Timings behind two choices in ``polyfuse.encoders.lenet``, as markdown bullets: the training
    step with and without ``SingleChannelConv`` for one-channel first convs, and a 112 px LeNet's
    forward + backward in NCHW vs channels-last."""
    from unittest import mock

    from benchmarks.avmnist.run import train_steps, trainable
    from polyfuse.config import TrainConfig
    from polyfuse.encoders import lenet

    bench, cfg = MODELS[model_name], TrainConfig(**MODELS[model_name].train)

    def stepper(conv: Any) -> Any:
        model, opt = trainable(bench, cfg)

        def run() -> None:
            with mock.patch.object(lenet, "_conv", conv):
                train_steps(model, opt, batches)

        return run

    per_step = interleaved({"ours": stepper(lenet._conv), "torch": stepper(lambda layer, x: layer(x))})
    ms = {name: seconds / len(batches) * 1000 for name, seconds in per_step.items()}
    lines = [
        f"- Training step of {model_name}, {len(batches)} steps per round, median of 5 interleaved rounds: "
        f"{ms['ours']:.1f} ms with `SingleChannelConv` for the one-channel first convs, {ms['torch']:.1f} ms "
        "with torch's convolution throughout."
    ]
    for channels in (1, 3):
        inputs = torch.rand(cfg.batch_size, channels, 112, 112)
        runs = {}
        for layout in ("NCHW", "channels-last"):
            net = lenet.LeNet(channels, 6, 5, channels_last=layout == "channels-last")
            runs[layout] = lambda n=net, x=inputs: n(x).sum().backward()
        ms = {layout: seconds * 1000 for layout, seconds in interleaved(runs).items()}
        lines.append(
            f"- LeNet at 112 px with {channels} input channel(s), forward + backward of batch "
            f"{cfg.batch_size}: NCHW {ms['NCHW']:.1f} ms, channels-last {ms['channels-last']:.1f} ms."
        )
    return lines


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
    cfg = TrainConfig(**MODELS[args.model].train)
    batches = cycled_batches(val.subset(list(range(min(args.rows, len(val))))), cfg.batch_size, args.steps)
    timings, ops, shapes = profile(args.model, batches)
    (ms, faults), (ms_default, faults_default) = timings[True], timings[False]
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
            "Timings behind two choices in `polyfuse.encoders.lenet` (same machine; the training",
            "steps on the batches above, the LeNet passes on random inputs):",
            "",
            *kernel_choices(args.model, batches),
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "avmnist_profile.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
