"""The default ``polyfuse compare`` grid on digits-av, timed end to end.

    python -m benchmarks.compare_digits_av [--out runs/bench-compare]

Equivalent to ``polyfuse compare --out DIR``; writes benchmarks/results/compare_digits_av.md with the
wall-clock time, the leaderboard and the best fused vs best single-modality gap.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import polyfuse
    from benchmarks.common import machine_line, summary_markdown

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-compare"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # a timing of the whole grid, not of a resume
    polyfuse.load_dataset("digits-av")  # built before the clock starts (cached after the first build)
    start = time.perf_counter()
    result = polyfuse.compare(out=args.out)
    wall = time.perf_counter() - start
    rows = result.summary
    fused = rows[rows["n_modalities"] > 1].iloc[0]
    single = rows[rows["n_modalities"] == 1].iloc[0]
    gap = fused["accuracy_mean"] - single["accuracy_mean"]
    lines = [
        "# `polyfuse compare` default grid on digits-av",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.compare_digits_av`",
        f"(= `polyfuse compare --out {args.out}`).",
        "",
        f"Wall-clock time of the whole grid ({len(result.rows)} runs): **{wall:.0f} s**.",
        f"Best fused: {fused['modalities']} with {fused['fusion']}, {fused['accuracy_mean']:.4f}; "
        f"best single modality: {single['modalities']}, {single['accuracy_mean']:.4f}; "
        f"gap **{100 * gap:.1f} points**.",
        "",
        *summary_markdown(rows, result.metric),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare_digits_av.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
